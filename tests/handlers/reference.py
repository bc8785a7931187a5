"""A slow, obviously-correct model of docs/architecture.md §4, which the market-data core is
checked against.

It shares no code with `handlers.core.marketdata`: rows come from the csv module, instants from
`datetime`, prices from `Fraction`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

_TS = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)",
    re.ASCII,
)
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,9}")
_PRICE = re.compile(r"\d{1,18}(\.\d{1,18})?", re.ASCII)
_SIZE = re.compile(r"\d{1,18}", re.ASCII)


@dataclass(frozen=True)
class Expected:
    open: Fraction
    high: Fraction
    low: Fraction
    close: Fraction
    volume: int
    vwap: Fraction
    trades: int
    first_ts: tuple[datetime, int]  # (UTC second, nanoseconds)
    last_ts: tuple[datetime, int]


def instant(text: str) -> tuple[datetime, int] | None:
    match = _TS.fullmatch(text)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}")
    except ValueError:
        return None
    if offset != "Z":
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        shift = timedelta(hours=hours, minutes=minutes)
        moment = moment - shift if offset[0] == "+" else moment + shift
    return moment.replace(tzinfo=UTC), int((fraction or "").ljust(9, "0"))


def summarise(text: str) -> tuple[int, int, dict[str, Expected]]:
    """(good rows, bad rows, per-symbol figures) of a CSV text with a valid header."""
    reader = csv.reader(io.StringIO(text))
    header = [name.strip().lower() for name in next(reader)]
    ti, si, pi, zi = (header.index(c) for c in ("timestamp", "symbol", "price", "size"))
    trades: dict[str, list[tuple[tuple[datetime, int], Fraction, int]]] = {}
    bad = 0
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            bad += 1
            continue
        when = instant(row[ti])
        price, size, sym = row[pi], row[zi], row[si]
        if (
            when is None
            or not _SYMBOL.fullmatch(sym)
            or not _PRICE.fullmatch(price)
            or Fraction(price) == 0
            or not _SIZE.fullmatch(size)
            or int(size) == 0
        ):
            bad += 1
            continue
        trades.setdefault(sym, []).append((when, Fraction(price), int(size)))
    result = {}
    for sym, rows in trades.items():
        first, last = min(rows), max(rows)
        volume = sum(size for _, _, size in rows)
        result[sym] = Expected(
            open=first[1],
            high=max(price for _, price, _ in rows),
            low=min(price for _, price, _ in rows),
            close=last[1],
            volume=volume,
            vwap=sum((price * size for _, price, size in rows), Fraction(0)) / volume,
            trades=len(rows),
            first_ts=first[0],
            last_ts=last[0],
        )
    return sum(len(rows) for rows in trades.values()), bad, result


def iso(moment: tuple[datetime, int]) -> str:
    """The results' timestamp format: UTC, `Z`, significant fraction digits only."""
    second, nanos = moment
    text = second.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def results_symbols(text: str) -> dict[str, dict[str, object]]:
    """The `symbols` map of a results JSON (docs/architecture.md §4) for this CSV text, as the
    aggregator must write it: prices and VWAP as floats (one rounding of the exact value), times
    in `iso`."""
    return {
        symbol: {
            "open": float(figures.open),
            "high": float(figures.high),
            "low": float(figures.low),
            "close": float(figures.close),
            "volume": figures.volume,
            "vwap": float(figures.vwap),
            "trades": figures.trades,
            "firstTs": iso(figures.first_ts),
            "lastTs": iso(figures.last_ts),
        }
        for symbol, figures in summarise(text)[2].items()
    }
