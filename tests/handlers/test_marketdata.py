"""The market-data core: parsing, validation rules, file rejections and exact statistics."""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from fractions import Fraction

import pytest

from handlers.core.errors import InvalidFileError
from handlers.core.marketdata import ScanResult, scan
from tests.handlers import reference

HEADER = "timestamp,symbol,price,size\n"


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def run(
    data: str | bytes,
    *,
    chunk: int = 1 << 20,
    block_size: int = 1 << 20,
    ratio: float | None = 0.01,
    aggregate: bool = True,
) -> ScanResult:
    raw = data.encode() if isinstance(data, str) else data
    return scan(
        chunked(raw, chunk), max_bad_row_ratio=ratio, aggregate=aggregate, block_size=block_size
    )


def assert_matches_reference(text: str, result: ScanResult) -> None:
    rows, bad, expected = reference.summarise(text)
    assert (result.rows, result.rejected_rows) == (rows, bad)
    assert list(result.symbols) == sorted(expected)
    for sym, want in expected.items():
        got = result.symbols[sym]
        # every figure is the exact value correctly rounded once
        assert got.open == float(want.open)
        assert got.high == float(want.high)
        assert got.low == float(want.low)
        assert got.close == float(want.close)
        assert got.volume == want.volume
        assert got.trades == want.trades
        assert abs(got.vwap - float(want.vwap)) <= 1e-9 * float(want.vwap)
        assert got.first_ts == reference.iso(want.first_ts)
        assert got.last_ts == reference.iso(want.last_ts)


def random_trades(rnd: random.Random, count: int, symbols: list[str]) -> list[str]:
    offsets = ["Z", "+05:30", "-04:00", "+0100", "+09"]
    lines = []
    for _ in range(count):
        second = rnd.randint(0, 7200)
        fraction = rnd.choice(["", f".{rnd.randint(0, 999):03d}", f".{rnd.randint(0, 10**9 - 1)}"])
        ts = f"2024-03-01T{9 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        price = rnd.choice(
            [f"{rnd.randint(1, 500)}.{rnd.randint(0, 99):02d}", f"{rnd.randint(1, 9)}"]
            + [f"0.{rnd.randint(1, 9999):04d}"]
        )
        lines.append(
            f"{ts}{fraction}{rnd.choice(offsets)},{rnd.choice(symbols)},{price},"
            f"{rnd.randint(1, 10_000)}"
        )
    return lines


# --- good files -------------------------------------------------------------------------------


def test_computes_every_figure_of_a_small_file() -> None:
    result = run(
        HEADER + "2024-03-01T09:30:00Z,ACME,10.50,100\n"
        "2024-03-01T09:30:01Z,ACME,11.00,300\n"
        "2024-03-01T09:30:02Z,ACME,10.00,100\n"
        "2024-03-01T09:30:00.5Z,BOLT.L,2,7\n"
    )
    assert (result.rows, result.rejected_rows) == (4, 0)
    acme = result.symbols["ACME"].as_json()
    assert acme == {
        "open": 10.5,
        "high": 11.0,
        "low": 10.0,
        "close": 10.0,
        "volume": 500,
        "vwap": (10.5 * 100 + 11 * 300 + 10 * 100) / 500,
        "trades": 3,
        "firstTs": "2024-03-01T09:30:00Z",
        "lastTs": "2024-03-01T09:30:02Z",
    }
    assert result.symbols["BOLT.L"].first_ts == "2024-03-01T09:30:00.5Z"


def test_matches_the_reference_on_a_random_file_with_mixed_shapes() -> None:
    rnd = random.Random(11)
    text = HEADER + "\n".join(random_trades(rnd, 3000, ["AA", "BB.L", "C1", "DDDD"])) + "\n"
    assert_matches_reference(text, run(text, block_size=4096))


def test_results_do_not_depend_on_row_order_or_block_size() -> None:
    rnd = random.Random(5)
    lines = random_trades(rnd, 2000, [f"S{i}" for i in range(40)])
    # same instant, different prices and sizes: the tie-break must decide, not the order
    lines += ["2024-02-28T08:00:00Z,S1,5.00,10", "2024-02-28T08:00:00Z,S1,4.00,20"]
    lines += ["2024-03-05T12:00:00Z,S1,5.00,10", "2024-03-05T12:00:00Z,S1,6.00,1"]
    results = []
    for seed, block in ((1, 1 << 20), (2, 512), (3, 64)):
        random.Random(seed).shuffle(lines)
        results.append(run(HEADER + "\n".join(lines) + "\n", block_size=block, chunk=97))
    assert results[0] == results[1] == results[2]
    assert results[0].symbols["S1"].open == 4.0
    assert results[0].symbols["S1"].close == 6.0


def test_open_and_close_follow_timestamps_not_row_order() -> None:
    result = run(
        HEADER + "2024-03-01T10:00:00Z,X,3,1\n"
        "2024-03-01T09:00:00Z,X,1,1\n"
        "2024-03-01T11:00:00Z,X,5,1\n"
        "2024-03-01T09:30:00Z,X,2,1\n"
    )
    stats = result.symbols["X"]
    assert (stats.open, stats.close) == (1.0, 5.0)
    assert (stats.first_ts, stats.last_ts) == ("2024-03-01T09:00:00Z", "2024-03-01T11:00:00Z")


def test_ties_at_one_instant_go_by_price_then_size() -> None:
    # the same instant written three ways
    result = run(
        HEADER + "2024-03-01T09:00:00.500Z,X,7,5\n"
        "2024-03-01T10:00:00.5+01:00,X,7,2\n"
        "2024-03-01T09:00:00.50Z,X,9,1\n"
    )
    stats = result.symbols["X"]
    assert (stats.open, stats.close) == (7.0, 9.0)
    assert stats.first_ts == stats.last_ts == "2024-03-01T09:00:00.5Z"


def test_offsets_are_normalised_to_utc() -> None:
    result = run(
        HEADER + "2024-03-01T15:00:00+05:30,IN,1,1\n"
        "2024-03-01T05:29:59.999-04:00,IN,2,1\n"
        "2024-03-02 00:15:00+0100,IN,3,1\n"
    )
    stats = result.symbols["IN"]
    assert stats.first_ts == "2024-03-01T09:29:59.999Z"
    assert stats.last_ts == "2024-03-01T23:15:00Z"
    assert (stats.open, stats.close) == (2.0, 3.0)


def test_vwap_is_exact_with_huge_sizes_and_tiny_prices() -> None:
    rows = [
        ("0.000000000000000001", 999_999_999_999_999_999),
        ("0.000000000000000003", 999_999_999_999_999_998),
        ("123456789012345678.123456789012345678", 1),
        ("0.5", 3),
    ]
    text = HEADER + "".join(
        f"2024-03-01T09:00:0{i}Z,BIG,{price},{size}\n" for i, (price, size) in enumerate(rows)
    )
    stats = run(text).symbols["BIG"]
    volume = sum(size for _, size in rows)
    exact = sum((Fraction(price) * size for price, size in rows), Fraction(0)) / volume
    assert stats.volume == volume
    assert abs(stats.vwap - float(exact)) <= 1e-9 * float(exact)
    assert stats.vwap == float(exact)  # in fact correctly rounded
    assert stats.high == float(Fraction(rows[2][0]))
    assert stats.low == 1e-18


def test_one_symbol_and_many_symbols() -> None:
    one = run(HEADER + "".join(f"2024-03-01T09:00:{i:02d}Z,ONE,{i + 1},1\n" for i in range(50)))
    assert list(one.symbols) == ["ONE"]
    assert one.symbols["ONE"].trades == 50
    names = [f"S{i:04d}" for i in range(1500)]
    many = run(HEADER + "".join(f"2024-03-01T09:00:00Z,{n},1.5,2\n" for n in names))
    assert list(many.symbols) == names
    assert all(s.trades == 1 and s.vwap == 1.5 for s in many.symbols.values())


def test_price_decimals_may_grow_mid_file() -> None:
    lines = ["2024-03-01T09:00:00Z,X,10,1", "2024-03-01T09:00:01Z,X,10.5,1"]
    lines += ["2024-03-01T09:00:02Z,X,10.123456789,1", "2024-03-01T09:00:03Z,Y,3,2"]
    text = HEADER + "\n".join(lines) + "\n"
    for block in (1 << 20, 40):  # one block, then one row per block
        assert_matches_reference(text, run(text, block_size=block))


def test_sub_millisecond_timestamps_many_distinct() -> None:
    rnd = random.Random(3)
    lines = [
        f"2024-03-01T09:00:{i % 60:02d}.{rnd.randint(0, 10**9 - 1):09d}Z,NS,1.{i % 97:02d},{i + 1}"
        for i in range(2000)
    ]
    lines.insert(700, "2024-03-01T09:00:00.1234567890Z,NS,1.00,1")  # ten digits: bad
    text = HEADER + "\n".join(lines) + "\n"
    result = run(text)
    assert result.rejected_rows == 1
    assert result.first_rejected == (702, "timestamp")
    assert_matches_reference(text, result)


# --- input forms ------------------------------------------------------------------------------


GOOD = HEADER + "2024-03-01T09:00:00Z,AB,1.25,4\n2024-03-01T09:00:01Z,AB,1.75,4\n"


def test_gzip_is_detected_by_magic_bytes_even_in_tiny_chunks() -> None:
    plain = run(GOOD)
    packed = gzip.compress(GOOD.encode())
    assert run(packed) == plain
    assert run(packed, chunk=1) == plain
    # concatenated gzip members read as one stream, like gzip(1) does
    half = len(GOOD) // 2
    members = gzip.compress(GOOD[:half].encode()) + gzip.compress(GOOD[half:].encode())
    assert run(members, chunk=7) == plain


def test_corrupt_or_truncated_gzip_is_rejected() -> None:
    packed = gzip.compress(GOOD.encode())
    with pytest.raises(InvalidFileError, match="truncated gzip"):
        run(packed[:-12])
    with pytest.raises(InvalidFileError, match="corrupt gzip"):
        run(packed[:12] + b"\x00garbage" + packed[20:])


def test_bom_crlf_and_blank_lines_are_tolerated() -> None:
    text = "\ufeff" + GOOD.replace("\n", "\r\n") + "\r\n\r\n"
    result = run(text.encode("utf-8"))
    assert result == run(GOOD)
    assert result.rejected_rows == 0


def test_extra_columns_in_any_order_are_ignored() -> None:
    text = (
        " Venue ,SIZE,price,Timestamp,note,symbol\n"
        "X,4,1.25,2024-03-01T09:00:00Z,first,AB\n"
        "Y,4,1.75,2024-03-01T09:00:01Z,,AB\n"
    )
    assert run(text).symbols == run(GOOD).symbols


def test_quoted_fields() -> None:
    text = (
        'timestamp,"symbol",price,size,note\n'
        '"2024-03-01T09:00:00Z","AB","1.25","4","plain"\n'
        '2024-03-01T09:00:01Z,AB,1.75,4,"a, comma and ""quotes"""\n'
        '2024-03-01T09:00:02Z,AB,2.00,1,"two\nlines"\n'
        '2024-03-01T09:00:03Z,"A,B",2.00,1,symbol with a comma is bad\n'
    )
    # also with records cut by block boundaries (Arrow's block must hold a whole record)
    for block in (1 << 20, 64):
        result = run(text, block_size=block, ratio=0.5)
        assert (result.rows, result.rejected_rows) == (3, 1)
        assert result.symbols["AB"].trades == 3
        assert result.symbols["AB"].last_ts == "2024-03-01T09:00:02Z"


def test_unbalanced_quote_is_not_csv() -> None:
    text = HEADER + '2024-03-01T09:00:00Z,AB,1.25,4\n"2024-03-01T09:00:01Z,AB,1.75,4\n'
    with pytest.raises(InvalidFileError, match="malformed CSV|unbalanced quotes"):
        run(text + "x" * 100, block_size=64)


# --- file-level rejections --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("time,symbol,price,size", "missing timestamp"),
        ("timestamp,symbol,price", "missing size"),
        ("timestamp,symbol,price,size,price", "repeated price"),
        ('{"timestamp": 1}', "missing"),
    ],
)
def test_wrong_header_is_rejected(header: str, problem: str) -> None:
    with pytest.raises(InvalidFileError, match=f"wrong header on line 1.*{problem}"):
        run(header + "\n2024-03-01T09:00:00Z,AB,1.25,4\n")


def test_non_utf8_is_rejected_with_its_line() -> None:
    data = GOOD.encode() + b"2024-03-01T09:00:02Z,AB,1.5,\xff\xfe\n"
    with pytest.raises(InvalidFileError, match="not UTF-8.*line 4"):
        run(data)
    with pytest.raises(InvalidFileError, match="not UTF-8"):
        run("timestamp,symbol,price,size\n".encode("utf-16"))


def test_binary_file_is_rejected() -> None:
    with pytest.raises(InvalidFileError, match="NUL byte"):
        run(GOOD.encode() + b"\x00\x01\x02")


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidFileError, match="empty file"):
        run(data)


@pytest.mark.parametrize("data", [HEADER, HEADER.rstrip("\n"), HEADER + "\n\r\n"])
def test_header_only_is_rejected(data: str) -> None:
    with pytest.raises(InvalidFileError, match="no data rows"):
        run(data)


def test_all_rows_bad_is_rejected_even_without_threshold() -> None:
    with pytest.raises(InvalidFileError, match="no valid data rows.*line 2"):
        run(HEADER + "nope,AB,1,1\n", ratio=None)


def test_line_longer_than_a_record_can_be_is_rejected() -> None:
    with pytest.raises(InvalidFileError, match="longer than"):
        run(HEADER + "x" * (1024 * 1024 + 10), block_size=4096)


def _with_bad_rows(good: int, bad: int) -> str:
    rows = [f"2024-03-01T09:00:00Z,AB,1.{i % 100:02d},{i + 1}" for i in range(good)]
    rows += ["2024-03-01T09:00:00,AB,1.00,1"] * bad  # naive timestamps
    random.Random(good).shuffle(rows)
    return HEADER + "\n".join(rows) + "\n"


def test_bad_rows_just_under_the_threshold_are_counted_and_skipped() -> None:
    result = run(_with_bad_rows(good=990, bad=10))  # exactly 1 %
    assert (result.rows, result.rejected_rows) == (990, 10)
    assert result.symbols["AB"].trades == 990


def test_bad_rows_just_over_the_threshold_reject_the_file() -> None:
    with pytest.raises(InvalidFileError, match=r"too many bad rows: 11 of 1000 \(1.10% > 1%\)"):
        run(_with_bad_rows(good=989, bad=11))


def test_threshold_is_configurable() -> None:
    text = _with_bad_rows(good=95, bad=5)
    with pytest.raises(InvalidFileError, match="too many bad rows"):
        run(text)
    assert run(text, ratio=0.05).rejected_rows == 5
    assert run(text, ratio=None).rejected_rows == 5


def test_rejection_names_the_first_bad_row() -> None:
    text = HEADER + "2024-03-01T09:00:00Z,AB,1,1\n2024-03-01T09:00:00Z,ab,1,1\n"
    with pytest.raises(InvalidFileError, match=r"first bad row on line 3 \(symbol\)"):
        run(text)


# --- row rules --------------------------------------------------------------------------------


BAD_VALUES = {
    "timestamp": [
        "2024-03-01T09:00:00",  # naive
        "2024-03-01",
        "2024-02-30T09:00:00Z",
        "2024-03-01T24:00:00Z",
        "2024-03-01T09:60:00Z",
        "2024-03-01T09:00:60Z",
        "2024-03-01T09:00:00+24:00",
        "2024-03-01T09:00:00+05:60",
        "2024-03-01T09:00:00.Z",
        "2024-03-01T09:00:00.1234567890Z",
        "2024-03-01t09:00:00Z",
        "20240301T090000Z",
        "２０２４-03-01T09:00:00Z",
        "",
    ],
    "symbol": ["ab", "1AB", "ABCDEFGHIJK", "A-B", "", "Ä", " AB"],
    "price": [
        "0",
        "0.000",
        "-1.5",
        "+1.5",
        "1e5",
        "1E-2",
        "nan",
        "inf",
        "1.",
        ".5",
        "1.2.3",
        "1,5",
        "١٢",
        "1234567890123456789",
        "1.1234567890123456789",
        "",
        " 1.5",
    ],
    "size": ["0", "000", "-1", "1.0", "1e3", "", "١٢", "1234567890123456789", " 5"],
}
GOOD_ROW = {"timestamp": "2024-03-01T09:00:00Z", "symbol": "AB", "price": "1.5", "size": "2"}


@pytest.mark.parametrize(
    ("column", "value"), [(c, v) for c, values in BAD_VALUES.items() for v in values]
)
def test_a_bad_value_makes_a_bad_row(column: str, value: str) -> None:
    row = {**GOOD_ROW, column: value}
    if "," in value:
        row[column] = f'"{value}"'
    text = HEADER + "2024-03-01T09:00:00Z,AB,1.5,2\n" + ",".join(row.values()) + "\n"
    result = run(text, ratio=None)
    assert (result.rows, result.rejected_rows) == (1, 1)
    assert result.first_rejected == (3, column)


def test_wrong_field_count_makes_a_bad_row() -> None:
    text = HEADER + "2024-03-01T09:00:00Z,AB,1.5,2\n2024-03-01T09:00:00Z,AB,1.5\nx,y,z,w,v\n"
    result = run(text, ratio=None)
    assert (result.rows, result.rejected_rows) == (1, 2)
    assert result.first_rejected == (3, "column count")


def test_good_edge_values_are_accepted() -> None:
    text = HEADER + (
        "0001-01-02T00:00:00+23:59,A,999999999999999999.999999999999999999,999999999999999999\n"
        "9999-12-30T23:59:59.999999999-23:59,Z.Z1234567,0.000000000000000001,1\n"
        "2024-02-29 12:00:00+05,A1,007.50,0010\n"
    )
    result = run(text)
    assert (result.rows, result.rejected_rows) == (3, 0)
    assert result.symbols["A1"].as_json()["volume"] == 10
    assert result.symbols["Z.Z1234567"].last_ts == "9999-12-31T23:58:59.999999999Z"
    assert result.symbols["A"].first_ts == "0001-01-01T00:01:00Z"


def test_bulk_and_per_row_checks_agree() -> None:
    """The same rows, all in one block or a couple of rows per block, give the same verdicts."""
    rnd = random.Random(17)
    lines = random_trades(rnd, 400, ["AA", "BB"])
    for column, values in BAD_VALUES.items():
        for value in values:
            row = {**GOOD_ROW, column: f'"{value}"' if "," in value else value}
            lines.insert(rnd.randrange(len(lines)), ",".join(row.values()))
    text = HEADER + "\n".join(lines) + "\n"
    whole = run(text, ratio=None)
    one_by_one = run(text, ratio=None, block_size=96)
    assert whole == one_by_one
    assert whole.rejected_rows == sum(len(v) for v in BAD_VALUES.values())
    assert_matches_reference(text, whole)


def test_validation_only_counts_rows() -> None:
    result = run(_with_bad_rows(good=99, bad=1), aggregate=False)
    assert (result.rows, result.rejected_rows, result.symbols) == (99, 1, {})
