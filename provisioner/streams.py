"""Server-Sent Event streams of recorded events (an operation's, a rollout's): replay after an
id, follow until the subject ends, and end within `KEY_CHECK_S` once the key that opened the
stream is revoked (docs/architecture.md §9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import structlog
from fastapi import Request
from sse_starlette import ServerSentEvent

from provisioner.auth.repository import ApiKeyRepository
from provisioner.db import Database
from provisioner.operations.events import OperationNotifier

log = structlog.get_logger(__name__)

EVENT_BATCH: Final = 500
# Streams re-check the registry at least this often (events from other replicas).
POLL_S: Final = 1.0
# A stream ends this soon after the key that opened it is revoked.
KEY_CHECK_S: Final = 2.0

# Reads the events after a sequence number (at most EVENT_BATCH, as (seq, event) in order) and
# whether the subject had ended before they were read; blocking, run in a thread.
Reader = Callable[[int], tuple[bool, Sequence[tuple[int, ServerSentEvent]]]]


def parse_event_id(value: str | None) -> int:
    """A Last-Event-ID header as the sequence number to resume after (0 if unusable)."""
    try:
        return min(max(0, int(value)), 2**31 - 1) if value else 0
    except ValueError:
        return 0


def key_active(database: Database, key_id: str) -> bool:
    with database.session(readonly=True) as session:
        row = ApiKeyRepository(session).get(key_id)
        return row is not None and row.revoked_at is None


async def follow(
    *,
    request: Request,
    database: Database,
    notifier: OperationNotifier,
    channel: str,
    key_id: str,
    read: Reader,
    after: int,
) -> AsyncIterator[ServerSentEvent]:
    """The events after `after`, then each new one as it is recorded. The subject's final event
    is written with its final state, so once it has ended and nothing is left to read, the
    stream is complete."""
    seq = after
    key_checked = time.monotonic()
    while True:
        if time.monotonic() - key_checked >= KEY_CHECK_S:
            if not await asyncio.to_thread(key_active, database, key_id):
                log.info("streams.key_revoked", channel=channel)
                return
            key_checked = time.monotonic()
        finished, events = await asyncio.to_thread(read, seq)
        for number, event in events:
            seq = number
            yield event
        if finished and len(events) < EVENT_BATCH:
            return
        if events:
            continue
        if await request.is_disconnected():
            return
        await notifier.wait(channel, POLL_S)
