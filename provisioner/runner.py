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
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from provisioner.engines.base import (
    EngineEvent,
    EngineHost,
    EventType,
    OperationKind,
    OperationRequest,
)
from provisioner.environments import settle
from provisioner.metrics import Metrics
from provisioner.notifier import OperationNotifier
from provisioner.registry.database import Database
from provisioner.registry.operations import OperationRepository
from provisioner.registry.tables import OperationRow, OperationState, utcnow
from provisioner.settings import Settings
from provisioner.worker import CANCEL, ERROR, EVENT, EXPECT, RESULT, run_worker
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

_DISPATCH_INTERVAL_S: Final = 0.5
# Serialises claims across replicas on PostgreSQL (an arbitrary, fixed advisory-lock key).
_CLAIM_LOCK_KEY: Final = 0x6D64705F
_PROGRESS_TYPES: Final = (EventType.RESOURCE_FINISHED, EventType.RESOURCE_FAILED)


class OperationRunner:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        engine_reference: str,
        host: EngineHost,
        metrics: Metrics,
        notifier: OperationNotifier,
    ) -> None:
        self.settings = settings
        self.database = database
        self.engine_reference = engine_reference
        self.host = host
        self.metrics = metrics
        self.notifier = notifier
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # forkserver: workers start from a clean single-threaded server process, not from this
        # multi-threaded one (fork would copy held locks), and faster than spawn.
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(["provisioner.worker"])
        self._supervisors: dict[str, _Supervisor] = {}
        self._supervisors_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._last_reap = 0.0

    # --- lifecycle ---

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

    @property
    def running_here(self) -> int:
        with self._supervisors_lock:
            return len(self._supervisors)

    # --- dispatch ---

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
        supervisor = _Supervisor(self, operation)
        with self._supervisors_lock:
            self._supervisors[operation.id] = supervisor
        supervisor.start()

    def _forget(self, operation_id: str) -> None:
        with self._supervisors_lock:
            self._supervisors.pop(operation_id, None)
        self.wake()

    # --- crash recovery ---

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

    # --- events ---


class _Supervisor(threading.Thread):
    """Runs and watches one operation's worker process."""

    def __init__(self, runner: OperationRunner, operation: OperationRow) -> None:
        super().__init__(name=f"operation-{operation.id[:8]}", daemon=True)
        self.runner = runner
        self.settings = runner.settings
        self.operation_id = operation.id
        self.kind = OperationKind(operation.kind)
        self.request = OperationRequest(
            operation_id=operation.id,
            kind=self.kind,
            config=PipelineConfig.model_validate(operation.request),
            recover=operation.recover,
        )
        self.timeout_s = operation.timeout_s
        self._cancel = threading.Event()
        self._interrupt_reason: str | None = None
        self._done = 0
        self._total = 0

    def cancel(self) -> None:
        self._cancel.set()

    def interrupt(self, reason: str) -> None:
        self._interrupt_reason = reason
        self._cancel.set()

    def run(self) -> None:
        structlog.contextvars.bind_contextvars(operation_id=self.operation_id)
        try:
            self._supervise()
        except Exception as error:  # the operation must never stay RUNNING behind our back
            log.exception("runner.supervisor_failed")
            self._finish(
                OperationState.FAILED,
                error_code="internal_error",
                error=f"the runner failed while supervising ({type(error).__name__})",
            )
        finally:
            self.runner._forget(self.operation_id)

    def _supervise(self) -> None:
        runner = self.runner
        started = time.monotonic()
        self._record(
            EngineEvent(
                EventType.STARTED,
                f"{self.kind} of {self.request.config.tenant}/{self.request.config.environment} "
                f"started",
                data={"runner": runner.runner_id, "recover": self.request.recover},
            )
        )
        runner.host.before_operation(self.request)
        receive, send = runner._mp.Pipe(duplex=False)
        lifeline_receive, lifeline_send = runner._mp.Pipe(duplex=False)
        process = runner._mp.Process(
            target=run_worker,
            args=(runner.engine_reference, self.settings, self.request, send, lifeline_receive),
            name=f"worker-{self.operation_id[:8]}",
        )
        process.start()
        send.close()
        lifeline_receive.close()
        log.info("runner.worker_started", pid=process.pid, kind=self.kind)

        outcome: tuple[str, dict[str, Any]] | None = None
        signalled_at: float | None = None
        killed = False
        timed_out = False
        last_beat = time.monotonic()
        while True:
            now = time.monotonic()
            if signalled_at is None:
                if now - started > self.timeout_s:
                    timed_out = True
                if timed_out or self._cancel.is_set() or self._cancel_flag_set(now, last_beat):
                    self._record(
                        EngineEvent(
                            EventType.DIAGNOSTIC,
                            self._stop_message(timed_out),
                            severity="warning",
                        )
                    )
                    _signal_group(process.pid, signal.SIGINT)
                    try:
                        lifeline_send.send(CANCEL)
                    except (BrokenPipeError, OSError):
                        pass  # the worker already exited
                    signalled_at = now
            elif not killed and now - signalled_at > self.settings.cancel_grace_s:
                log.warning("runner.worker_killed", pid=process.pid)
                _signal_group(process.pid, signal.SIGKILL)
                killed = True
            if now - last_beat >= self.settings.heartbeat_interval_s:
                with runner.database.session() as session:
                    OperationRepository(session).heartbeat(self.operation_id, runner.runner_id)
                last_beat = now
            try:
                if receive.poll(0.1):
                    kind, payload = receive.recv()
                    if kind in (RESULT, ERROR):
                        outcome = (kind, payload)
                    else:
                        self._on_message(kind, payload)
                    continue
            except (EOFError, OSError):
                break  # the worker exited (after its result, or killed)
            if not process.is_alive() and not receive.poll(0):
                break
        process.join(timeout=5)
        lifeline_send.close()
        receive.close()
        self._settle_outcome(outcome, process.exitcode, timed_out, signalled_at is not None)

    def _cancel_flag_set(self, now: float, last_beat: float) -> bool:
        """A cancel requested through another replica only reaches us via the registry."""
        if now - last_beat < self.settings.heartbeat_interval_s:
            return False
        with self.runner.database.session(readonly=True) as session:
            row = OperationRepository(session).get(self.operation_id)
            return bool(row and row.cancel_requested)

    def _stop_message(self, timed_out: bool) -> str:
        if timed_out:
            return f"timed out after {self.timeout_s:g} s: stopping gracefully"
        if self._interrupt_reason:
            return f"{self._interrupt_reason}: stopping gracefully"
        return "cancel requested: stopping gracefully"

    def _on_message(self, kind: str, payload: Any) -> None:
        if kind == EXPECT:
            self._total = max(int(payload), self._done)
            with self.runner.database.session() as session:
                OperationRepository(session).set_progress(
                    self.operation_id, self._done, self._total
                )
            return
        if kind == EVENT:
            event = EngineEvent(
                type=EventType(payload["type"]),
                message=payload["message"],
                resource=payload.get("resource"),
                resource_type=payload.get("resource_type"),
                step=payload.get("step"),
                severity=payload.get("severity"),
                data=payload.get("data") or {},
            )
            if event.type in _PROGRESS_TYPES:
                self._done += 1
                self._total = max(self._total, self._done)
            self._record(event)

    def _record(self, event: EngineEvent) -> None:
        with self.runner.database.session() as session:
            OperationRepository(session).append_event(
                self.operation_id, event, self._done, self._total
            )
            OperationRepository(session).set_progress(self.operation_id, self._done, self._total)
        self.runner.notifier.notify(self.operation_id)

    def _settle_outcome(
        self,
        outcome: tuple[str, dict[str, Any]] | None,
        exitcode: int | None,
        timed_out: bool,
        stop_requested: bool,
    ) -> None:
        outputs: dict[str, str] = {}
        changes: dict[str, int] = {}
        if outcome is not None and outcome[0] == RESULT:
            outputs = dict(outcome[1].get("outputs") or {})
            changes = dict(outcome[1].get("changes") or {})
            state, code, error = OperationState.SUCCEEDED, None, None
            # The host first (e.g. the local runtime restarts with the new configuration), so
            # that nothing reports SUCCEEDED before the environment really works that way.
            try:
                self.runner.host.after_operation(self.request, True, outputs)
            except Exception as failure:  # recorded as the operation's failure, with the reason
                log.exception("runner.host_after_operation_failed")
                state, code = OperationState.FAILED, "engine_error"
                error = f"applied, but the environment could not start ({type(failure).__name__})"
        elif timed_out:
            detail = outcome[1]["detail"] if outcome else None
            state, code = OperationState.FAILED, "timeout"
            error = f"timed out after {self.timeout_s:g} s" + (f" ({detail})" if detail else "")
        elif self._interrupt_reason is not None:
            state, code, error = OperationState.INTERRUPTED, "interrupted", self._interrupt_reason
        elif outcome is not None and outcome[1].get("cancelled"):
            state, code, error = OperationState.CANCELLED, "cancelled", outcome[1]["detail"]
        elif outcome is not None:
            state = OperationState.FAILED
            code, error = outcome[1]["code"], outcome[1]["detail"]
        elif stop_requested:
            state, code = OperationState.CANCELLED, "cancelled"
            error = f"stopped forcefully after the {self.settings.cancel_grace_s:g} s grace period"
        else:
            state, code = OperationState.INTERRUPTED, "interrupted"
            error = f"the worker process exited unexpectedly (exit code {exitcode}); retry it"
        self._finish(state, error_code=code, error=error, outputs=outputs, changes=changes)

    def _finish(
        self,
        state: OperationState,
        *,
        error_code: str | None,
        error: str | None,
        outputs: Mapping[str, str] | None = None,
        changes: Mapping[str, int] | None = None,
    ) -> None:
        runner = self.runner
        with runner.database.session() as session:
            operation = OperationRepository(session).get(self.operation_id)
            if operation is None:
                return
            started_at = operation.started_at
            if not settle(
                session,
                operation,
                state,
                error_code=error_code,
                error=error,
                outputs=outputs,
                changes=changes,
            ):
                return
        runner.metrics.operations_finished.labels(self.kind, state).inc()
        if started_at is not None:
            runner.metrics.operation_duration.labels(self.kind).observe(
                (utcnow() - started_at).total_seconds()
            )
        log.info("runner.operation_finished", state=state, error_code=error_code)
        runner.notifier.notify(self.operation_id)
        if state != OperationState.SUCCEEDED:
            try:
                runner.host.after_operation(self.request, False, {})
            except Exception:  # the operation's own outcome stands; the host logs its trouble
                log.exception("runner.host_after_operation_failed")


def _signal_group(pid: int | None, signum: signal.Signals) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _join_all(threads: list[_Supervisor], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
