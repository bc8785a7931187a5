"""Sample trade files for end-to-end tests (their expected results: tests.handlers.reference)."""

from __future__ import annotations

import gzip

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
