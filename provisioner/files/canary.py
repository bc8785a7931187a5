"""Canary files: proof that an environment's data plane still turns an upload into a result.

A verified rollout (docs/architecture.md §7) updates a target, then puts a small generated,
valid market-data file under `incoming/.canary/` and waits for its status item to reach
COMPLETED. It uses only the environment's data plane, so it works the same on both engines;
ingest marks canary items (`canary: true`), which keeps them out of listings and counts.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from handlers.core.status_model import CANARY_PREFIX, FileStatus
from provisioner.errors import ProvisionerError
from provisioner.files.service import EnvironmentDataPlane

log = structlog.get_logger(__name__)

HEADER: Final = "timestamp,symbol,price,size"
CANARY_SYMBOL: Final = "CANARY"
POLL_INTERVAL_S: Final = 0.25


class CanaryFailed(ProvisionerError):
    """The canary did not reach COMPLETED; `detail` says where it stopped and why."""

    status_code = 502
    code = "canary_failed"

    def __init__(self, reason: str, *, file_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.file_id = file_id


def canary_key(now: datetime | None = None) -> str:
    """A fresh key under the canary prefix: time-ordered, never reused."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{CANARY_PREFIX}{moment:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.csv"


def canary_csv(now: datetime | None = None) -> bytes:
    """A valid file of three trades (docs/architecture.md §4), no bad rows."""
    start = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    rows = [
        f"{(start + timedelta(seconds=offset)).isoformat().replace('+00:00', 'Z')},"
        f"{CANARY_SYMBOL},{price},{size}"
        for offset, price, size in ((0, "100.00", 10), (1, "100.50", 20), (2, "99.75", 5))
    ]
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def run_canary(
    plane: EnvironmentDataPlane,
    timeout_seconds: float,
    cancel: threading.Event | None = None,
    *,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> dict[str, Any]:
    """Upload a canary and wait for it; its COMPLETED status item, or `CanaryFailed`.

    Read errors while polling are retried until the deadline (a data plane that has just been
    updated may answer late); the last one is named if time runs out.
    """
    cancel = cancel or threading.Event()
    key = canary_key()
    try:
        file_id = plane.upload(key, canary_csv())
    except ProvisionerError as error:
        raise CanaryFailed(f"the canary could not be uploaded: {error.detail}") from None
    log.info("canary.uploaded", file_id=file_id, object_key=key)
    deadline = time.monotonic() + timeout_seconds
    last: dict[str, Any] | None = None
    last_error: str | None = None
    while True:
        try:
            last, last_error = plane.status_item(file_id), None
        except ProvisionerError as error:
            last_error = error.detail
        if last is not None and last.get("status") == FileStatus.COMPLETED:
            log.info("canary.completed", file_id=file_id)
            return last
        if last is not None and last.get("status") == FileStatus.FAILED:
            raise _failed(file_id, _failure(last))
        if cancel.is_set():
            raise _failed(file_id, f"cancelled while the canary was {_where(last)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = f"not COMPLETED within {timeout_seconds:g}s, last status {_where(last)}"
            if last_error is not None:
                reason += f" (last read: {last_error})"
            raise _failed(file_id, reason)
        cancel.wait(min(poll_interval_s, remaining))


def _failed(file_id: str, reason: str) -> CanaryFailed:
    log.warning("canary.failed", file_id=file_id, reason=reason)
    return CanaryFailed(f"canary {file_id}: {reason}", file_id=file_id)


def _where(item: dict[str, Any] | None) -> str:
    if item is None:
        return "none (ingest has not recorded it)"
    return f"{item.get('status')} at stage {item.get('stage')}"


def _failure(item: dict[str, Any]) -> str:
    error = item.get("error")
    if not isinstance(error, dict):
        return f"FAILED at stage {item.get('stage')}"
    return f"FAILED at stage {error.get('stage')}: {error.get('type')}: {error.get('message')}"
