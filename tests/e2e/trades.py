"""Sample trade files for end-to-end tests, and an independent computation of their results."""

from __future__ import annotations

import gzip
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

HEADER = "timestamp,symbol,price,size"
ROWS = [
    # deliberately out of time order: open/close follow timestamps, not rows
    ("2026-11-27T14:30:05Z", "AAPL", "190.10", "200"),
    ("2026-11-27T14:30:01Z", "AAPL", "189.50", "100"),
    ("2026-11-27T15:30:03+01:00", "MSFT", "410.25", "10"),  # = 14:30:03Z
    ("2026-11-27T14:30:09Z", "AAPL", "188.00", "50"),
    ("2026-11-27T14:30:02Z", "MSFT", "411.00", "30"),
    ("2026-11-27T14:30:07.250Z", "BRK.B", "455.5", "7"),
]


def trades_csv(rows: list[tuple[str, str, str, str]] = ROWS) -> bytes:
    return ("\n".join([HEADER, *(",".join(row) for row in rows)]) + "\n").encode()


def trades_csv_gz(rows: list[tuple[str, str, str, str]] = ROWS) -> bytes:
    return gzip.compress(trades_csv(rows))


def expected_symbols(rows: list[tuple[str, str, str, str]] = ROWS) -> dict[str, dict[str, Any]]:
    by_symbol: dict[str, list[tuple[datetime, Decimal, int]]] = defaultdict(list)
    for ts, symbol, price, size in rows:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        by_symbol[symbol].append((moment, Decimal(price), int(size)))
    result = {}
    for symbol, trades in by_symbol.items():
        ordered = sorted(trades, key=lambda trade: trade[0])
        volume = sum(size for _, _, size in trades)
        notional = sum(Fraction(price) * size for _, price, size in trades)
        result[symbol] = {
            "open": float(ordered[0][1]),
            "high": float(max(price for _, price, _ in trades)),
            "low": float(min(price for _, price, _ in trades)),
            "close": float(ordered[-1][1]),
            "volume": volume,
            "vwap": float(notional / volume),
            "trades": len(trades),
            "firstTs": ordered[0][0],
            "lastTs": ordered[-1][0],
        }
    return result
