"""An environment's file throughput and latency over a recent window, from its status items:
files per time bucket by final status (when they reached it), and upload→COMPLETED latency
percentiles (`receivedAt` to `updatedAt` of COMPLETED items), overall and per bucket.

Percentiles are nearest-rank (the smallest latency with at least p% of the files at or below
it), so each is a latency some file really had, and one file gives one well-defined value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from handlers.core.status_model import FileStatus

FINAL_STATUSES: Final = (FileStatus.COMPLETED, FileStatus.FAILED)
PERCENTILES: Final = (50, 90, 99)
# At most this many buckets per window: one per minute up to two hours, wider beyond.
MAX_BUCKETS: Final = 120


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: dict[str, int]
    received: int
    latency: Latency


@dataclass(frozen=True)
class FileStats:
    start: datetime
    end: datetime
    bucket_minutes: int
    totals: dict[str, int]
    received: int
    latency: Latency
    buckets: list[Bucket] = field(default_factory=list)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest rank of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_of(seconds: Iterable[float]) -> Latency:
    ordered = sorted(seconds)
    if not ordered:
        return Latency(0, None, None, None, None)
    p50, p90, p99 = (round(percentile(ordered, p), 3) for p in PERCENTILES)
    return Latency(len(ordered), p50, p90, p99, round(ordered[-1], 3))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def file_stats(items: Iterable[Mapping[str, Any]], now: datetime, minutes: int) -> FileStats:
    bucket_minutes = max(1, math.ceil(minutes / MAX_BUCKETS))
    size = timedelta(minutes=bucket_minutes)
    # Buckets end at the next whole minute, so the last one is the current minute.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    count = math.ceil(minutes / bucket_minutes)
    start = end - count * size
    counts: list[dict[str, int]] = [{} for _ in range(count)]
    received = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]

    def slot(at: datetime | None) -> int | None:
        if at is None or not start <= at < end:
            return None
        return int((at - start) / size)

    for item in items:
        received_at = _time(item.get("receivedAt"))
        if (index := slot(received_at)) is not None:
            received[index] += 1
        status = item.get("status")
        if status not in FINAL_STATUSES:
            continue
        finished_at = _time(item.get("updatedAt"))
        if (index := slot(finished_at)) is None:
            continue
        counts[index][str(status)] = counts[index].get(str(status), 0) + 1
        if status == FileStatus.COMPLETED and received_at is not None and finished_at is not None:
            latencies[index].append(max(0.0, (finished_at - received_at).total_seconds()))

    totals: dict[str, int] = {}
    for bucket_counts in counts:
        for status, n in bucket_counts.items():
            totals[status] = totals.get(status, 0) + n
    return FileStats(
        start=start,
        end=end,
        bucket_minutes=bucket_minutes,
        totals=totals,
        received=sum(received),
        latency=latency_of(s for bucket in latencies for s in bucket),
        buckets=[
            Bucket(start + i * size, counts[i], received[i], latency_of(latencies[i]))
            for i in range(count)
        ],
    )
