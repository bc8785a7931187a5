"""The delivery loop: sends the outbox's pending deliveries, at least once, in order per webhook.

Each tick claims the due head of every webhook's queue (its oldest pending delivery) by taking
its lease with a compare-and-set, so that of several replicas sharing the registry exactly one
sends it; a replica that dies mid-send leaves a lease that expires, and the delivery is sent
again (at least once). A failed attempt — connection error, timeout, refused host, non-2xx,
redirects included (never followed) — is retried after an exponential backoff up to
`webhook_max_attempts`, then the delivery is FAILED and the next one of the webhook goes.
PENDING rows left by a stopped or crashed service are picked up when it starts again.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
import structlog

from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.logging import redactor
from provisioner.webhooks.allowlist import AllowList, HostRefusedError
from provisioner.webhooks.models import DeliveryState, WebhookRow
from provisioner.webhooks.repository import WebhookRepository
from provisioner.webhooks.service import retry_delay
from provisioner.webhooks.signing import sign

log = structlog.get_logger(__name__)

USER_AGENT: Final = "provisioner-webhooks/1"
# How long past the request timeout a claim stays ours before another replica may take it.
_LEASE_MARGIN_S: Final = 30.0
_ERROR_LIMIT: Final = 300


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    webhook_id: str
    event_type: str
    body: bytes
    url: str
    secret: str
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookDispatcher:
    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.allow_list = AllowList.parse(settings.webhook_allowed_hosts)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = timedelta(seconds=settings.webhook_timeout_s + _LEASE_MARGIN_S)
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # by webhook id
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._stopping = False
        self._wake = asyncio.Event()
        # Environment proxies are ignored: a proxy would connect to the host by name and undo
        # the address check. Redirects are never followed (each hop would need one).
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        secrets = await asyncio.to_thread(self._secrets)
        redactor.register(secrets)
        self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight finish (each is bounded by the timeout) so
        that every one is recorded before the registry closes."""
        self._stopping = True
        self.wake()
        if self._task is not None:
            await self._task
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Look at the outbox now (call on the event loop)."""
        if self._wake is not None:
            self._wake.set()

    # --- the loop ---

    async def _loop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await self._tick()
            except Exception:  # keep delivering; the next tick retries (rows stay PENDING)
                log.exception("webhooks.tick_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _tick(self) -> None:
        room = self.settings.webhook_max_in_flight - len(self._in_flight)
        if room <= 0:
            return
        claimed = await asyncio.to_thread(self._claim, room, list(self._in_flight))
        for item in claimed:
            task = asyncio.create_task(self._deliver(item), name=f"webhook-{item.delivery_id}")
            self._in_flight[item.webhook_id] = task
            task.add_done_callback(functools.partial(self._done, item.webhook_id))

    def _done(self, webhook_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(webhook_id, None)
        # The webhook's next delivery may be due already.
        if not self._stopping:
            self.wake()

    def _secrets(self) -> Sequence[str]:
        with self.database.session(readonly=True) as session:
            return WebhookRepository(session).secrets()

    def _claim(self, limit: int, busy: list[str]) -> list[_Claimed]:
        now = utcnow()
        claimed: list[_Claimed] = []
        # Looked at without the write lock first: most ticks find nothing due, and on SQLite
        # a write transaction per tick would make every other writer queue behind it. The
        # claim re-checks everything it relies on.
        with self.database.session(readonly=True) as session:
            due = [
                row.id
                for row in WebhookRepository(session).due_heads(
                    now, limit=limit, exclude_webhooks=busy
                )
            ]
        if not due:
            return claimed
        with self.database.session() as session:
            repository = WebhookRepository(session)
            for row in repository.deliveries_by_id(due):
                if not repository.claim(row.id, self.owner, now, now + self._lease):
                    continue  # another replica took it
                webhook = session.get(WebhookRow, row.webhook_id)
                if webhook is None:
                    continue
                claimed.append(
                    _Claimed(
                        delivery_id=row.id,
                        webhook_id=row.webhook_id,
                        event_type=row.type,
                        body=row.body.encode(),
                        url=webhook.url,
                        secret=webhook.secret,
                        attempts=row.attempts + 1,  # the claim counted this attempt
                    )
                )
        return claimed

    # --- one attempt ---

    async def _deliver(self, item: _Claimed) -> None:
        structlog.contextvars.bind_contextvars(
            webhook_id=item.webhook_id, delivery_id=item.delivery_id
        )
        try:
            outcome = await self._attempt(item)
        except Exception as error:  # recorded as the attempt's failure; retried later
            log.exception("webhooks.attempt_crashed")
            outcome = _Outcome(None, f"internal error ({type(error).__name__})")
        finished = utcnow()
        retry_at = await asyncio.to_thread(self._record, item, outcome, finished)
        if retry_at is not None and not self._stopping:
            # Retry on time rather than at the next poll after it.
            wait = max(0.0, (retry_at - utcnow()).total_seconds())
            asyncio.get_running_loop().call_later(wait, self.wake)

    async def _attempt(self, item: _Claimed) -> _Outcome:
        assert self._client is not None
        try:
            # Checked again now, and the connection goes to the address just checked.
            target = await asyncio.to_thread(self.allow_list.check, item.url)
        except HostRefusedError as error:
            return _Outcome(None, f"refused: {error}")
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "X-Provisioner-Event": item.event_type,
            "X-Provisioner-Delivery": item.delivery_id,
            "X-Provisioner-Signature": sign(item.secret, item.body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            # Streamed and closed unread: a receiver's answer body is of no interest, and a
            # huge one must not be loaded.
            async with self._client.stream(
                "POST",
                target.connect_url,
                content=item.body,
                headers=headers,
                extensions=extensions,
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return _Outcome(None, f"timed out after {self.settings.webhook_timeout_s:g} s")
        except httpx.HTTPError as error:
            return _Outcome(None, f"{type(error).__name__}: {error}"[:_ERROR_LIMIT])
        if 200 <= status < 300:
            return _Outcome(status, None)
        return _Outcome(status, f"HTTP {status}")

    def _record(self, item: _Claimed, outcome: _Outcome, finished: datetime) -> datetime | None:
        """Store the attempt's outcome; returns when the next attempt is due, if there is one."""
        settings = self.settings
        retry_at: datetime | None = None
        if outcome.delivered:
            values: dict[str, object] = {
                "state": DeliveryState.DELIVERED,
                "last_status": outcome.status,
                "last_error": None,
                "delivered_at": finished,
                "next_attempt_at": None,
            }
        elif item.attempts >= settings.webhook_max_attempts:
            values = {
                "state": DeliveryState.FAILED,
                "last_status": outcome.status,
                "last_error": outcome.error,
                "next_attempt_at": None,
            }
        else:
            delay = retry_delay(
                item.attempts, settings.webhook_retry_initial_s, settings.webhook_retry_max_s
            )
            retry_at = finished + delay
            values = {
                "last_status": outcome.status,
                "last_error": outcome.error,
                "next_attempt_at": retry_at,
            }
        with self.database.session() as session:
            kept = WebhookRepository(session).settle_attempt(item.delivery_id, self.owner, **values)
        event = "webhooks.delivered" if outcome.delivered else "webhooks.attempt_failed"
        log.info(
            event,
            attempts=item.attempts,
            status=outcome.status,
            error=outcome.error,
            state=values.get("state", DeliveryState.PENDING),
            replica=self.owner,
            lease_kept=kept,
        )
        return retry_at if kept else None
