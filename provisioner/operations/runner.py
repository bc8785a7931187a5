"""The operation runner: claims queued operations and runs each in its own worker process.

Operations wait in the registry (QUEUED) and are claimed by a compare-and-set to RUNNING, at
most `max_concurrent_operations` at a time across every replica sharing the registry. A
supervisor thread per running operation persists its events in order, keeps its heartbeat,
enforces its timeout, relays a cancel (SIGINT to the worker's process group, then SIGKILL after
the grace period) and settles the outcome. RUNNING operations whose heartbeat stopped — their
replica crashed — become INTERRUPTED, and their environment can be retried.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Final

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.engines.base import (
    EngineHost,
)
from provisioner.environments.lifecycle import settle
from provisioner.metrics import Metrics
from provisioner.operations.events import OperationNotifier
from provisioner.operations.models import OperationRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.operations.supervisor import Supervisor
from provisioner.versions import service_code_version

log = structlog.get_logger(__name__)

_DISPATCH_INTERVAL_S: Final = 0.5
# Serialises claims across replicas on PostgreSQL (an arbitrary, fixed advisory-lock key).
_CLAIM_LOCK_KEY: Final = 0x6D64705F


class OperationRunner:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        engine_reference: str,
        host: EngineHost,
        metrics: Metrics,
        notifier: OperationNotifier,
        *,
        code_version: str | None = None,
    ) -> None:
        self.settings = settings
        # Recorded on environments by the operations this runner settles (provisioner.versions).
        self.code_version = code_version or service_code_version()
        self.database = database
        self.engine_reference = engine_reference
        self.host = host
        self.metrics = metrics
        self.notifier = notifier
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # forkserver: workers start from a clean single-threaded server process, not from this
        # multi-threaded one (fork would copy held locks), and faster than spawn.
        self.mp_context = multiprocessing.get_context("forkserver")
        self.mp_context.set_forkserver_preload(["provisioner.operations.worker"])
        self._supervisors: dict[str, Supervisor] = {}
        self._supervisors_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._last_reap = 0.0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await asyncio.to_thread(self.reap_stale_operations)
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="operation-heartbeat", daemon=True
        )
        self._heartbeat.start()
        self._task = asyncio.create_task(self._dispatch_loop(), name="operation-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; interrupt running operations gracefully (they can be retried)."""
        self._stopping.set()
        if self._task is not None:
            # Let the loop end by itself rather than cancel it: a tick already running in its
            # thread would go on using the registry after the service closed it.
            self.wake()
            await self._task
        with self._supervisors_lock:
            supervisors = list(self._supervisors.values())
        for supervisor in supervisors:
            supervisor.interrupt("the service shut down while the operation ran")
        await asyncio.to_thread(_join_all, supervisors, self.settings.cancel_grace_s + 10)
        # Joined before the service disposes of the registry: a beat in flight would otherwise
        # hold a connection past the pool's end.
        if self._heartbeat is not None:
            await asyncio.to_thread(self._heartbeat.join, self.settings.heartbeat_interval_s + 5)

    def _heartbeat_loop(self) -> None:
        """The replica's liveness, for every operation it claimed, from the moment of the claim:
        a supervisor still starting its worker (the first fork can take seconds on a busy
        machine) must not look dead to the other replicas."""
        while not self._stopping.wait(self.settings.heartbeat_interval_s):
            try:
                with self.database.session() as session:
                    OperationRepository(session).heartbeat_runner(self.runner_id)
            except SQLAlchemyError as error:  # the next beat retries; the reaper has slack
                log.warning("runner.heartbeat_failed", error_type=type(error).__name__)

    def wake(self) -> None:
        """Thread-safe: look at the queue now rather than at the next tick."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def request_cancel(self, operation_id: str) -> None:
        """Relay a cancel to a running operation supervised here (others see the DB flag)."""
        with self._supervisors_lock:
            supervisor = self._supervisors.get(operation_id)
        if supervisor is not None:
            supervisor.cancel()

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self._tick)
            except Exception:  # keep dispatching; the next tick retries
                log.exception("runner.tick_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), _DISPATCH_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_reap >= self.settings.heartbeat_interval_s:
            self._last_reap = now
            self.reap_stale_operations()
        for operation in self._claim():
            self._launch(operation)

    def _claim(self) -> list[OperationRow]:
        claimed: list[OperationRow] = []
        if self._stopping.is_set():
            return claimed
        with self.database.session() as session:
            if not self.database.is_sqlite:
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY}
                )
            operations = OperationRepository(session)
            capacity = self.settings.max_concurrent_operations - operations.count_in_state(
                OperationState.RUNNING
            )
            if capacity <= 0:
                return claimed
            for operation in operations.oldest_queued(capacity):
                now = utcnow()
                if operations.transition(
                    operation.id,
                    from_states=(OperationState.QUEUED,),
                    to_state=OperationState.RUNNING,
                    runner_id=self.runner_id,
                    started_at=now,
                    heartbeat_at=now,
                ):
                    session.refresh(operation)
                    claimed.append(operation)
        return claimed

    def _launch(self, operation: OperationRow) -> None:
        supervisor = Supervisor(self, operation)
        with self._supervisors_lock:
            self._supervisors[operation.id] = supervisor
        supervisor.start()

    def forget(self, operation_id: str) -> None:
        with self._supervisors_lock:
            self._supervisors.pop(operation_id, None)
        self.wake()

    def reap_stale_operations(self) -> int:
        """RUNNING operations nobody is heartbeating any more become INTERRUPTED."""
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout_s)
        reaped = 0
        with self.database.session() as session:
            stale = OperationRepository(session).stale_running(cutoff)
            with self._supervisors_lock:
                stale = [row for row in stale if row.id not in self._supervisors]
            for operation in stale:
                reason = "the service stopped while the operation ran (no heartbeat); retry it"
                if settle(
                    session,
                    operation,
                    OperationState.INTERRUPTED,
                    error_code="interrupted",
                    error=reason,
                ):
                    self.metrics.operations_finished.labels(
                        operation.kind, OperationState.INTERRUPTED
                    ).inc()
                    log.warning("runner.operation_interrupted", operation_id=operation.id)
                    reaped += 1
        for operation in stale:
            self.notifier.notify(operation.id)
        return reaped


def _join_all(threads: list[Supervisor], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
