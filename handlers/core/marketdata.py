"""Market-data CSV core (docs/architecture.md §4): validation and per-symbol statistics, on
Apache Arrow.

The validator and processor feed it S3 byte chunks, the benchmark a file. `csvstream` turns the
bytes into Arrow record batches of string columns; here each batch is checked and converted
with pyarrow compute kernels, and summarised per symbol into exact partial aggregates that are
combined across batches, so memory does not grow with the file.

Input rules, beyond docs/architecture.md §4:
- gzip is detected by its magic bytes (multi-member streams too); UTF-8 with an optional BOM;
  lines end in LF or CRLF; blank lines are skipped and count as neither good nor bad rows.
  Arrow reads a blank line as a row of empty fields, so a row whose four named fields are all
  empty is skipped the same way.
- The header must name `timestamp`, `symbol`, `price` and `size` (case and surrounding spaces
  ignored) exactly once each, in any order, among any number of extra columns, which are
  ignored. Every data row must have as many fields as the header. Quoting follows RFC 4180.
- `timestamp`: `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]` then `Z` or `±HH[[:]MM]`; a naive timestamp
  is a bad row. Dates run from 0001-01-02 to 9999-12-30 so that every offset stays in range.
- `symbol`: `[A-Z][A-Z0-9.]{0,9}`; `price`: `d{1,18}[.d{1,18}]`, > 0 (no sign, exponent, nan or
  inf); `size`: `d{1,18}`, > 0. The digit limits keep every figure exact in a DynamoDB number;
  exact arithmetic did not need them narrowed (a price fits decimal128(38, 18), a notional
  price·size and its sums decimal256).
- Bad rows are reported by record number (the header's line is 1); it is the line number unless
  a quoted field holds line breaks.

Statistics are exact. A batch whose prices fit 18 digits at one scale (the usual case) is
summed in int64 with overflow checks; otherwise in decimal128/decimal256. Timestamps are UTC
nanoseconds since the epoch (int64, or decimal128 for dates outside 1678-2261). Per symbol the
partial aggregates are Python integers at a fixed scale of 18 decimals, so VWAP is one correctly
rounded division. Open/close go by timestamp, not row order; trades at the same instant are
ordered by (price, size), so open is the smallest of the earliest and close the largest of the
latest. Results therefore do not depend on row order or on how the file is cut into batches.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from handlers.core.csvstream import BLOCK_SIZE, REQUIRED_COLUMNS, Block, read_blocks
from handlers.core.errors import InvalidFileError
from handlers.core.symbol_stats import SymbolStats

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_MAX_BAD_ROW_RATIO",
    "REQUIRED_COLUMNS",
    "ScanResult",
    "SymbolStats",
    "format_ns",
    "scan",
]

DEFAULT_MAX_BAD_ROW_RATIO: Final = 0.01
SCALE: Final = 18  # decimals of every price and notional in the accumulators
_UNIT: Final = 10**SCALE
_INT64_MAX: Final = 2**63 - 1
_TS_RE: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_SYMBOL_RE: Final = r"^[A-Z][A-Z0-9.]{0,9}$"
_TS_PARTS: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
)
_TS_PLACEHOLDER: Final = "2000-01-01T00:00:00Z"
# Nanoseconds since the epoch fit int64 from 1677-09-21 to 2262-04-11: the fast cast is used
# only when every year of the batch is inside, offsets included.
_NS_YEARS: Final = ("1678", "2261")
_MIN_DAY: Final = date(1, 1, 2)
_MAX_DAY: Final = date(9999, 12, 30)
_NS: Final = 1_000_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EXACT: Final = Context(prec=100)  # wide enough for every decimal here: no rounding
_TS_TYPE: Final = pa.timestamp("ns", "UTC")
# Blocks converted at once besides the one being merged: two cores, and memory a few blocks.
_CONVERTERS: Final = 1


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of a scan: accepted and rejected row counts, and (when aggregating) the stats."""

    rows: int
    rejected_rows: int
    symbols: dict[str, SymbolStats]
    first_rejected: tuple[int, str] | None  # (record number, column) of the first bad row


def scan(
    chunks: Iterable[bytes],
    *,
    max_bad_row_ratio: float | None = DEFAULT_MAX_BAD_ROW_RATIO,
    aggregate: bool = True,
    block_size: int = BLOCK_SIZE,
) -> ScanResult:
    """Validate (and with `aggregate`, summarise) a market-data file given as byte chunks.

    Raises InvalidFileError for a file-level rejection. With `max_bad_row_ratio=None` bad rows
    are only counted (the processor's case: the validator already applied the threshold).
    """
    scanner = _Scanner(aggregate=aggregate)
    # Conversion is compute kernels, which release the GIL: the next blocks convert in the
    # pool while this thread merges one, and the reader thread parses ahead (csvstream).
    # Blocks are merged in file order; the results would not depend on it anyway.
    with ThreadPoolExecutor(_CONVERTERS, thread_name_prefix="csv-convert") as pool:
        pending: deque[tuple[Block, Future[_Columns | None]]] = deque()
        for block in read_blocks(chunks, block_size=block_size):
            pending.append((block, pool.submit(_convert_block, block)))
            if len(pending) > _CONVERTERS:
                scanner.feed(*_done(pending.popleft()))
        while pending:
            scanner.feed(*_done(pending.popleft()))
    return scanner.result(max_bad_row_ratio)


def _convert_block(block: Block) -> _Columns | None:
    return _convert(block.batch) if block.batch.num_rows else None


def _done(item: tuple[Block, Future[_Columns | None]]) -> tuple[Block, _Columns | None]:
    block, converted = item
    return block, converted.result()


class _Accumulator:
    """Running figures of one symbol; prices and notional are integers at SCALE decimals."""

    __slots__ = ("trades", "volume", "notional", "high", "low", "open", "close")

    def __init__(self, trades: int, volume: int, notional: int, high: int, low: int,
                 open_: tuple[int, int, int], close: tuple[int, int, int]) -> None:  # fmt: skip
        self.trades = trades
        self.volume = volume
        self.notional = notional  # Σ price·size
        self.high = high
        self.low = low
        self.open = open_  # (ns, price, size) of the first trade
        self.close = close  # (ns, price, size) of the last trade


@dataclass(slots=True)
class _Columns:
    """A batch's rows converted (bad rows hold placeholders), and which rows are good."""

    codes: pa.Array  # symbol dictionary indexes
    names: list[str]  # the symbol dictionary
    keys: pa.Array  # UTC ns since the epoch
    prices: pa.Array  # int64 mantissas at `scale`, or decimal128(38, 18)
    scale: int
    sizes: pa.Array  # int64
    checks: tuple[tuple[str, pa.Array], ...]  # (column, ok) in reporting order
    good: pa.Array


class _Scanner:
    def __init__(self, *, aggregate: bool) -> None:
        self.aggregate = aggregate
        self.rows = 0
        self.bad = 0
        self.first_bad: tuple[int, str] | None = None
        self.stats: dict[str, _Accumulator] = {}

    def feed(self, block: Block, columns: _Columns | None) -> None:
        """Count and merge `block`, given as `_convert` made it (None if it has no rows)."""
        for number in block.skipped:
            self._reject(number, "column count")
        batch = block.batch
        if columns is None:
            return
        good = pc.sum(columns.good).as_py() or 0
        self.rows += good
        if good < batch.num_rows:
            # Arrow reads a blank line as a row of empty fields: those are skipped, not bad.
            blank = pc.and_(
                pc.and_(pc.equal(batch.column(0), ""), pc.equal(batch.column(1), "")),
                pc.and_(pc.equal(batch.column(2), ""), pc.equal(batch.column(3), "")),
            )
            bad = pc.and_(pc.invert(columns.good), pc.invert(blank))
            count = pc.sum(bad).as_py() or 0
            if count:
                self.bad += count
                self._reject_first(block, columns, bad)
        if self.aggregate and good:
            self._merge(columns, batch.num_rows == good)

    def _reject(self, number: int, column: str) -> None:
        self.bad += 1
        self._note_first(number, column)

    def _note_first(self, number: int, column: str) -> None:
        if self.first_bad is None or number < self.first_bad[0]:
            self.first_bad = (number, column)

    def _reject_first(self, block: Block, columns: _Columns, bad: pa.Array) -> None:
        index = pc.index(bad, True).as_py()
        column = next(name for name, ok in columns.checks if not ok[index].as_py())
        number = block.first_record + index
        for skipped in block.skipped:  # in file order: rows dropped before this one
            if skipped <= number:
                number += 1
            else:
                break
        self._note_first(number, column)

    def _merge(self, columns: _Columns, all_good: bool) -> None:
        codes, keys, prices, sizes = columns.codes, columns.keys, columns.prices, columns.sizes
        if not all_good:
            good = columns.good
            codes, keys, prices, sizes = (a.filter(good) for a in (codes, keys, prices, sizes))
        notional, prices, scale = _notional(prices, sizes, columns.scale)
        volumes = sizes
        if (pc.max(sizes).as_py() or 0) * len(sizes) > _INT64_MAX:
            volumes = pc.cast(sizes, pa.decimal128(38, 0))
        table = pa.table({"k": codes, "t": keys, "p": prices, "s": sizes, "v": volumes,
                          "n": notional})  # fmt: skip
        groups = table.group_by("k", use_threads=False).aggregate(
            [
                ("t", "min"),
                ("t", "max"),
                ("p", "min"),
                ("p", "max"),
                ("v", "sum"),
                ("n", "sum"),
                ("s", "count"),
            ]  # fmt: skip
        )
        factor = 10 ** (SCALE - scale)
        opens = _extreme_trades(table, groups, len(columns.names), "t_min", factor, last=False)
        closes = _extreme_trades(table, groups, len(columns.names), "t_max", factor, last=True)
        rows = zip(
            groups["k"].to_pylist(),
            groups["s_count"].to_pylist(),
            groups["v_sum"].to_pylist(),
            groups["n_sum"].to_pylist(),
            groups["p_max"].to_pylist(),
            groups["p_min"].to_pylist(),
            strict=True,
        )
        for code, trades, volume, notional_sum, high, low in rows:
            sym = columns.names[code]
            self._add(
                sym,
                _Accumulator(
                    trades,
                    int(volume),
                    _scaled(notional_sum, factor),
                    _scaled(high, factor),
                    _scaled(low, factor),
                    opens[code],
                    closes[code],
                ),
            )

    def _add(self, sym: str, part: _Accumulator) -> None:
        acc = self.stats.get(sym)
        if acc is None:
            self.stats[sym] = part
            return
        acc.trades += part.trades
        acc.volume += part.volume
        acc.notional += part.notional
        acc.high = max(acc.high, part.high)
        acc.low = min(acc.low, part.low)
        acc.open = min(acc.open, part.open)
        acc.close = max(acc.close, part.close)

    def result(self, max_bad_row_ratio: float | None) -> ScanResult:
        total = self.rows + self.bad
        if total == 0:
            raise InvalidFileError("no data rows: the file has a header only")
        if max_bad_row_ratio is not None and Fraction(self.bad, total) > Fraction(
            str(max_bad_row_ratio)
        ):
            raise InvalidFileError(
                f"too many bad rows: {self.bad} of {total} "
                f"({100 * self.bad / total:.2f}% > {100 * max_bad_row_ratio:g}%)"
                + _first_bad_text(self.first_bad)
            )
        if self.rows == 0:
            raise InvalidFileError(
                f"no valid data rows: all {total} rows are bad" + _first_bad_text(self.first_bad)
            )
        symbols = {
            sym: SymbolStats(
                open=acc.open[1] / _UNIT,
                high=acc.high / _UNIT,
                low=acc.low / _UNIT,
                close=acc.close[1] / _UNIT,
                volume=acc.volume,
                # int / int is correctly rounded in Python: exact VWAP, one rounding
                vwap=acc.notional / (acc.volume * _UNIT),
                trades=acc.trades,
                first_ts=format_ns(acc.open[0]),
                last_ts=format_ns(acc.close[0]),
            )
            for sym, acc in sorted(self.stats.items())
        }
        return ScanResult(self.rows, self.bad, symbols, self.first_bad)


# --- conversion -------------------------------------------------------------------------------


def _convert(batch: pa.RecordBatch) -> _Columns:
    ts, sym, price, size = batch.columns
    keys, ts_ok = _timestamps(ts)
    encoded = pc.dictionary_encode(sym)
    names = encoded.dictionary.to_pylist()
    sym_ok = pc.take(pc.match_substring_regex(encoded.dictionary, _SYMBOL_RE), encoded.indices)
    prices, scale, price_ok = _prices(price)
    sizes, size_ok = _sizes(size)
    good = pc.and_(pc.and_(ts_ok, sym_ok), pc.and_(price_ok, size_ok))
    checks = (("timestamp", ts_ok), ("symbol", sym_ok), ("price", price_ok), ("size", size_ok))
    return _Columns(encoded.indices, names, keys, prices, scale, sizes, checks, good)


def _timestamps(ts: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(UTC ns since the epoch, valid) of ISO 8601 strings (invalid ones get a placeholder).

    The pattern checks the grammar; Arrow's ISO 8601 cast then checks the calendar (days per
    month, 24:00, offsets) and converts. Measured: cheaper substring/slice pre-checks instead of
    the pattern cost more than the pattern itself.
    """
    ok = pc.match_substring_regex(ts, _TS_RE)
    keys = _cast_ns(ts, ok)
    if keys is not None:
        return keys, ok
    # a value the pattern accepts but the calendar does not, or a year outside int64 ns
    values = [_instant_ns(text) for text in ts.to_pylist()]
    valid = pa.array([value is not None for value in values])
    filled = [0 if value is None else value for value in values]
    if all(-_INT64_MAX <= value <= _INT64_MAX for value in filled):
        return pa.array(filled, pa.int64()), valid
    return pa.array([Decimal(value) for value in filled], pa.decimal128(38, 0)), valid


def _cast_ns(ts: pa.Array, ok: pa.Array) -> pa.Array | None:
    """The `ok` timestamps as int64 UTC ns (others 2000-01-01), or None if one does not parse
    or a year is outside the int64 nanosecond range."""
    clean = pc.if_else(ok, ts, _TS_PLACEHOLDER)
    bounds = pc.min_max(clean)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or low[:4] < _NS_YEARS[0] or high[:4] > _NS_YEARS[1]:
        return None
    try:
        return pc.cast(pc.cast(clean, _TS_TYPE), pa.int64())
    except pa.ArrowInvalid:
        return None


def _instant_ns(text: str) -> int | None:
    """UTC ns since the epoch of one timestamp, or None if it breaks the rules."""
    match = _TS_PARTS.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        moment = date(year, month, day)
    except ValueError:
        return None
    if not _MIN_DAY <= moment <= _MAX_DAY:
        return None
    shift = 0
    if offset != "Z":
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        # local = UTC + offset, so UTC = local - offset
        shift = (hours * 60 + minutes) * 60 * (1 if offset[0] == "+" else -1)
    days = moment.toordinal() - date(1970, 1, 1).toordinal()
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - shift
    return seconds * _NS + int((fraction or "").ljust(9, "0"))


def _prices(price: pa.Array) -> tuple[pa.Array, int, pa.Array]:
    """(exact prices, their scale, valid): int64 mantissas when the batch fits, else decimal.

    `d{1,18}[.d{1,18}]` without a regular expression: the digits around the first dot are
    ASCII decimals, and the dot is neither first nor last.
    """
    dot = pc.find_substring(price, ".")
    length = pc.binary_length(price)
    has_dot = pc.greater_equal(dot, 0)
    digits = pc.replace_substring(price, ".", "", max_replacements=1)
    whole = pc.if_else(has_dot, dot, length)
    decimals = pc.if_else(has_dot, pc.subtract(pc.subtract(length, dot), 1), 0)
    ok = pc.and_(
        pc.and_(pc.ascii_is_decimal(digits), pc.greater_equal(whole, 1)),
        pc.and_(pc.less_equal(whole, SCALE), pc.less_equal(decimals, SCALE)),
    )
    ok = pc.and_(ok, pc.or_(pc.invert(has_dot), pc.greater_equal(decimals, 1)))
    decimals = pc.if_else(ok, decimals, 0)
    scale = pc.max(decimals).as_py() or 0
    if (pc.max(pc.if_else(ok, whole, 1)).as_py() or 0) + scale <= SCALE:
        # below 10^18 at the batch's scale: an int64 mantissa
        prices = pc.cast(pc.if_else(ok, digits, "1"), pa.int64())
        if pc.min(decimals).as_py() != scale:
            pad = pc.power(10, pc.cast(pc.subtract(scale, decimals), pa.int64()))
            prices = pc.multiply(prices, pad)
        return prices, scale, pc.and_(ok, pc.greater(prices, 0))
    prices = pc.cast(pc.if_else(ok, price, "1"), pa.decimal128(38, SCALE))
    return prices, SCALE, pc.and_(ok, pc.greater(prices, pa.scalar(Decimal(0), prices.type)))


def _sizes(size: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(sizes as int64, valid): `d{1,18}` and > 0."""
    ok = pc.and_(pc.ascii_is_decimal(size), pc.less_equal(pc.binary_length(size), 18))
    sizes = pc.cast(pc.if_else(ok, size, "1"), pa.int64())
    return sizes, pc.and_(ok, pc.greater(sizes, 0))


def _notional(prices: pa.Array, sizes: pa.Array, scale: int) -> tuple[pa.Array, pa.Array, int]:
    """(price·size per row, prices, scale) such that the group sums cannot overflow."""
    if pa.types.is_integer(prices.type):
        try:
            notional = pc.multiply_checked(prices, sizes)
        except pa.ArrowInvalid:
            pass  # a product beyond int64
        else:
            if (pc.max(notional).as_py() or 0) * len(notional) <= _INT64_MAX:
                return notional, prices, scale
        prices = _rescaled(prices, scale)
    wide = pc.multiply(
        pc.cast(prices, pa.decimal256(38, prices.type.scale)), pc.cast(sizes, pa.decimal256(19, 0))
    )
    return wide, prices, scale


def _rescaled(mantissas: pa.Array, scale: int) -> pa.Array:
    """int64 mantissas at `scale` as decimals of the same value (the bits reinterpreted)."""
    return pc.cast(mantissas, pa.decimal128(38, 0)).view(pa.decimal128(38, scale))


def _extreme_trades(
    table: pa.Table, groups: pa.Table, width: int, column: str, factor: int, *, last: bool
) -> dict[int, tuple[int, int, int]]:
    """Per symbol code, (ns, price, size) of its first (or last) trade, ties by (price, size)."""
    lookup: list[Any] = [None] * width
    for code, key in zip(groups["k"].to_pylist(), groups[column].to_pylist(), strict=True):
        lookup[code] = key
    at = pc.take(pa.array(lookup, table["t"].type), table["k"])
    tied = table.filter(pc.equal(table["t"], at)).select(["k", "t", "p", "s"]).to_pydict()
    best: dict[int, tuple[int, int, int]] = {}
    pick = max if last else min
    for code, key, price, size in zip(tied["k"], tied["t"], tied["p"], tied["s"], strict=True):
        trade = (int(key), _scaled(price, factor), int(size))
        known = best.get(code)
        best[code] = trade if known is None else pick(known, trade)
    return best


def _scaled(value: int | Decimal, factor: int) -> int:
    """An int64 mantissa (times `factor`) or a decimal, as an integer at SCALE decimals."""
    if isinstance(value, Decimal):
        return int(value.scaleb(SCALE, _EXACT))
    return value * factor


def _first_bad_text(first_bad: tuple[int, str] | None) -> str:
    if first_bad is None:
        return ""
    line, column = first_bad
    return f"; first bad row on line {line} ({column})"


def format_ns(ns: int) -> str:
    """UTC ISO 8601 with `Z`; the fraction keeps its significant digits (none if whole)."""
    seconds, frac = divmod(ns, _NS)
    t = _EPOCH + timedelta(seconds=seconds)
    # by hand: strftime("%Y") does not zero-pad years before 1000 on every platform
    stamp = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    return stamp + "Z"
