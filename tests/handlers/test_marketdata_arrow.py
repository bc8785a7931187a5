"""Edges of the Arrow core: exact decimal paths, batches, timestamps outside int64 ns, order.

The reference model (tests.handlers.reference) is the oracle throughout.
"""

from __future__ import annotations

import gzip
import random
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.core.errors import InvalidFileError
from tests.handlers import reference
from tests.handlers.test_marketdata import HEADER, assert_matches_reference, run


def _exact_vwap(rows: list[tuple[str, int]]) -> float:
    volume = sum(size for _, size in rows)
    return float(sum((Fraction(p) * s for p, s in rows), Fraction(0)) / volume)


def test_int64_overflowing_notional_falls_back_to_exact_decimals() -> None:
    # 12 digits of price at scale 2 times 18-digit sizes: far beyond int64 per row
    rows = [("9999999999.99", 999_999_999_999_999_999), ("0.01", 7), ("123.45", 10**17)]
    text = HEADER + "".join(
        f"2024-03-01T09:00:0{i}Z,BIG,{p},{s}\n" for i, (p, s) in enumerate(rows)
    )
    stats = run(text).symbols["BIG"]
    assert stats.vwap == _exact_vwap(rows)
    assert stats.volume == sum(s for _, s in rows)
    assert_matches_reference(text, run(text))


def test_sum_that_would_overflow_int64_is_exact() -> None:
    # each product fits int64, their sum over the batch does not
    rows = [("9.99", 900_000_000_000_000_000)] * 20
    text = HEADER + "".join(
        f"2024-03-01T09:00:{i:02d}Z,S,{p},{s}\n" for i, (p, s) in enumerate(rows)
    )
    stats = run(text).symbols["S"]
    assert stats.volume == 20 * 900_000_000_000_000_000
    assert stats.vwap == 9.99


def test_prices_beyond_int64_at_the_batch_scale_use_decimal128() -> None:
    # 18 integer digits and 18 decimals in one batch: 36 digits, decimal128(38, 18)
    rows = [("999999999999999999", 1), ("0.000000000000000001", 1), ("5.5", 2)]
    text = HEADER + "".join(f"2024-03-01T09:00:0{i}Z,D,{p},{s}\n" for i, (p, s) in enumerate(rows))
    stats = run(text).symbols["D"]
    assert stats.high == 999999999999999999.0
    assert stats.low == 1e-18
    assert stats.vwap == _exact_vwap(rows)
    assert_matches_reference(text, run(text))


def test_timestamps_outside_the_int64_nanosecond_range_are_exact() -> None:
    text = HEADER + (
        "0001-01-02T00:00:00.000000001Z,OLD,1,1\n"
        "1500-06-01T12:00:00+01:00,OLD,2,1\n"
        "9999-12-30T23:59:59.999999999Z,OLD,3,1\n"
        "2024-03-01T09:00:00Z,NEW,4,1\n"
    )
    result = run(text)
    old = result.symbols["OLD"]
    assert (old.first_ts, old.last_ts) == (
        "0001-01-02T00:00:00.000000001Z",
        "9999-12-30T23:59:59.999999999Z",
    )
    assert (old.open, old.close) == (1.0, 3.0)
    assert (old.trades, old.volume, old.vwap) == (3, 3, 2.0)
    # (not against reference.iso: strftime does not zero-pad the year 1 on every platform)


def test_calendar_errors_the_pattern_accepts_are_bad_rows() -> None:
    text = HEADER + (
        "2024-02-30T09:00:00Z,X,1,1\n2023-02-29T09:00:00Z,X,1,1\n2024-02-29T09:00:00Z,X,2,1\n"
    )
    result = run(text, ratio=None)
    assert (result.rows, result.rejected_rows) == (1, 2)
    assert result.first_rejected == (2, "timestamp")


def test_blank_lines_and_empty_rows_are_skipped_not_counted() -> None:
    text = HEADER + "\n,,,\n2024-03-01T09:00:00Z,X,1,1\n\r\n"
    result = run(text)
    assert (result.rows, result.rejected_rows) == (1, 0)


def test_record_numbers_count_blank_and_dropped_rows_across_blocks() -> None:
    lines = (
        ["2024-03-01T09:00:00Z,X,1,1"] * 30
        + [""] * 3
        + ["short,row"]
        + ["2024-03-01T09:00:00Z,x,1,1"]
    )
    text = HEADER + "\n".join(lines) + "\n"
    for block in (1 << 20, 100):
        result = run(text, ratio=None, block_size=block)
        assert result.rejected_rows == 2
        assert result.first_rejected == (35, "column count")
        only_symbol = run(
            HEADER + "\n".join(lines[:33] + lines[34:]) + "\n", ratio=None, block_size=block
        )
        assert only_symbol.first_rejected == (35, "symbol")


def test_gzip_of_a_multi_block_file_with_crlf_and_bom() -> None:
    rnd = random.Random(2)
    rows = [
        f"2024-03-01T09:{i // 60 % 60:02d}:{i % 60:02d}Z,"
        f"S{rnd.randint(1, 5)},{rnd.randint(1, 99)}.5,{i + 1}"
        for i in range(3000)
    ]
    text = HEADER + "\n".join(rows) + "\n"
    packed = gzip.compress(("\ufeff" + text.replace("\n", "\r\n")).encode())
    assert run(packed, block_size=4096, chunk=333) == run(text)
    assert_matches_reference(text, run(packed, block_size=4096))


def test_unbalanced_quote_in_a_big_file_is_not_csv() -> None:
    text = (
        HEADER
        + "2024-03-01T09:00:00Z,AB,1.25,4\n" * 50
        + '2024-03-01T09:00:01Z,"AB,1.75,4\n'
        + "2024-03-01T09:00:00Z,AB,1.25,4\n" * 50
    )
    with pytest.raises(InvalidFileError, match="malformed CSV|unbalanced quotes"):
        run(text, block_size=256)


@pytest.mark.parametrize("ratio", [0.0, 0.02, 0.5])
def test_threshold_is_a_ratio_of_all_rows(ratio: float) -> None:
    good, bad = 98, 2  # exactly 2 %
    rows = ["2024-03-01T09:00:00Z,AB,1,1"] * good + ["2024-03-01T09:00:00Z,AB,0,1"] * bad
    text = HEADER + "\n".join(rows) + "\n"
    if ratio < 0.02:
        with pytest.raises(InvalidFileError, match=r"too many bad rows: 2 of 100"):
            run(text, ratio=ratio)
    else:
        assert run(text, ratio=ratio).rejected_rows == 2


_SYMBOLS = st.sampled_from(["AA", "BB.L", "C1"])
_TRADE = st.tuples(
    st.integers(0, 3),  # a few seconds only: many ties at one instant
    st.sampled_from(["", ".5", ".500", ".25"]),
    st.sampled_from(["Z", "+01:00", "-0030"]),
    _SYMBOLS,
    st.sampled_from(["1", "1.5", "2.25", "0.001", "10"]),
    st.integers(1, 5),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TRADE, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_results_are_independent_of_row_order_and_match_the_reference(
    trades: list[tuple[int, str, str, str, str, int]], rnd: random.Random
) -> None:
    lines = [f"2024-03-01T09:00:0{s}{f}{z},{sym},{p},{size}" for s, f, z, sym, p, size in trades]
    text = HEADER + "\n".join(lines) + "\n"
    first = run(text)
    rnd.shuffle(lines)
    shuffled = HEADER + "\n".join(lines) + "\n"
    assert run(shuffled, block_size=128) == first
    assert {sym: s.as_json() for sym, s in first.symbols.items()} == reference.results_symbols(text)
