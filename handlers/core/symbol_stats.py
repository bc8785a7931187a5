"""One symbol's published figures (docs/architecture.md §4), kept apart from the Arrow core so
that the aggregator, which only reads and writes them, does not load pyarrow (its function has no
AWS SDK for pandas layer: stacks.spec.ARROW_FUNCTIONS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SymbolStats:
    """One symbol's figures, as published in the results JSON (docs/architecture.md §4)."""

    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float
    trades: int
    first_ts: str
    last_ts: str

    def as_json(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "vwap": self.vwap,
            "trades": self.trades,
            "firstTs": self.first_ts,
            "lastTs": self.last_ts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SymbolStats:
        return cls(
            open=float(data["open"]),
            high=float(data["high"]),
            low=float(data["low"]),
            close=float(data["close"]),
            volume=int(data["volume"]),
            vwap=float(data["vwap"]),
            trades=int(data["trades"]),
            first_ts=str(data["firstTs"]),
            last_ts=str(data["lastTs"]),
        )
