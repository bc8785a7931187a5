"""File-status and dead-letter responses of an environment's data plane."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from provisioner.schemas import ApiModel


class FileError(BaseModel):
    stage: str
    type: str
    message: str


class FileRecord(ApiModel):
    """A file's status item (docs/architecture.md §3 field names)."""

    file_id: str
    bucket: str
    object_key: str
    version_id: str
    status: str
    stage: str | None = None
    attempt: int | None = None
    received_at: str | None = None
    updated_at: str | None = None
    expiration_time: int | None = Field(default=None, description="Epoch seconds (TTL)")
    row_count: int | None = None
    rejected_rows: int | None = None
    symbol_count: int | None = None
    result_key: str | None = None
    error: FileError | None = None
    last_error: FileError | None = Field(
        default=None, description="The error of the attempt before a retry"
    )
    canary: bool | None = Field(
        default=None, description="True for a canary file (a verified rollout's upload)"
    )
    symbols: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Per-symbol results (single-file view, when stored)"
    )


class FilePagePublic(ApiModel):
    items: list[FileRecord]
    counts: dict[str, int] = Field(
        description="Files by status (all, before `status` filter; canaries only with `canary`)"
    )
    total: int = Field(description="Files matching the filters")
    limit: int
    offset: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
    truncated: bool = Field(description="The table holds more files than one listing scans")


class DeadLetterPublic(ApiModel):
    message_id: str
    file_id: str | None
    object_key: str | None
    stage: str
    reason: str
    sent_at: str | None = Field(description="Epoch milliseconds, as SQS reports it")
    receive_count: int


class DeadLetterQueuePublic(ApiModel):
    name: str
    depth: int
    messages: list[DeadLetterPublic]


class DeadLetterReport(ApiModel):
    queues: list[DeadLetterQueuePublic]


class RedriveResult(ApiModel):
    moved: int


class LatencyPublic(ApiModel):
    count: int = Field(description="COMPLETED files measured")
    p50: float | None = Field(description="Seconds from upload (receivedAt) to COMPLETED")
    p90: float | None
    p99: float | None
    max: float | None


class FileStatsBucket(ApiModel):
    at: datetime = Field(description="Start of the bucket")
    counts: dict[str, int] = Field(description="Files that reached a final status in it")
    received: int = Field(description="Files received in it")
    latency: LatencyPublic


class FileStatsPublic(ApiModel):
    minutes: int
    bucket_minutes: int
    start: datetime
    end: datetime
    totals: dict[str, int] = Field(description="Files by the final status they reached")
    received: int
    latency: LatencyPublic = Field(description="Nearest-rank percentiles over the window")
    buckets: list[FileStatsBucket]
    truncated: bool = Field(description="The table holds more files than one scan reads")
