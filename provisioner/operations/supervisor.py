"""One running operation's supervisor: a thread that starts its worker process and watches it.

It persists the worker's events in order, keeps the heartbeat, enforces the timeout, relays a
cancel (SIGINT to the worker's process group, then SIGKILL after the grace period) and settles
the outcome.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import structlog

from provisioner.db import utcnow
from provisioner.engines.base import (
    EngineEvent,
    EventType,
    OperationKind,
    OperationRequest,
)
from provisioner.environments.approvals import hold_for_approval, is_preview_run
from provisioner.environments.lifecycle import settle
from provisioner.operations.models import OperationRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.operations.worker import CANCEL, ERROR, EVENT, EXPECT, RESULT, run_worker
from stacks.config import PipelineConfig

if TYPE_CHECKING:
    from provisioner.operations.runner import OperationRunner

log = structlog.get_logger(__name__)

_PROGRESS_TYPES: Final = (EventType.RESOURCE_FINISHED, EventType.RESOURCE_FAILED)


class Supervisor(threading.Thread):
    """Runs and watches one operation's worker process."""

    def __init__(self, runner: OperationRunner, operation: OperationRow) -> None:
        super().__init__(name=f"operation-{operation.id[:8]}", daemon=True)
        self.runner = runner
        self.settings = runner.settings
        self.operation_id = operation.id
        self.kind = OperationKind(operation.kind)
        # A protected environment's update or destroy first runs as a preview, then waits for
        # its approval (provisioner.environments.approvals).
        self.preview_run = is_preview_run(operation)
        self.request = OperationRequest(
            operation_id=operation.id,
            kind=OperationKind.PREVIEW if self.preview_run else self.kind,
            config=PipelineConfig.model_validate(operation.request),
            recover=operation.recover,
        )
        self.timeout_s = operation.timeout_s
        self._cancel = threading.Event()
        self._interrupt_reason: str | None = None
        self._done = 0
        self._total = 0
        self._steps: list[dict[str, str | None]] = []

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
            self.runner.forget(self.operation_id)

    def _supervise(self) -> None:
        runner = self.runner
        started = time.monotonic()
        self._record(
            EngineEvent(
                EventType.STARTED,
                f"{'preview of the ' if self.preview_run else ''}{self.kind} of "
                f"{self.request.config.tenant}/{self.request.config.environment} started",
                data={"runner": runner.runner_id, "recover": self.request.recover},
            )
        )
        runner.host.before_operation(self.request)
        receive, send = runner.mp_context.Pipe(duplex=False)
        lifeline_receive, lifeline_send = runner.mp_context.Pipe(duplex=False)
        process = runner.mp_context.Process(
            target=run_worker,
            args=(
                runner.engine_reference,
                runner.host.worker_settings(self.settings),
                self.request,
                send,
                lifeline_receive,
            ),
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
            if event.type == EventType.RESOURCE_FINISHED and event.resource:
                self._steps.append(
                    {
                        "resource": event.resource,
                        "type": event.resource_type,
                        "step": event.step or "same",
                    }
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
        drift: list[dict[str, Any]] | None = None
        if outcome is not None and outcome[0] == RESULT:
            outputs = dict(outcome[1].get("outputs") or {})
            changes = dict(outcome[1].get("changes") or {})
            drift = outcome[1].get("drift")
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
        self._finish(
            state, error_code=code, error=error, outputs=outputs, changes=changes, drift=drift
        )

    def _finish(
        self,
        state: OperationState,
        *,
        error_code: str | None,
        error: str | None,
        outputs: Mapping[str, str] | None = None,
        changes: Mapping[str, int] | None = None,
        drift: list[dict[str, Any]] | None = None,
    ) -> None:
        runner = self.runner
        with runner.database.session() as session:
            operation = OperationRepository(session).get(self.operation_id)
            if operation is None:
                return
            started_at = operation.started_at
            if self.preview_run and state == OperationState.SUCCEEDED:
                if hold_for_approval(session, operation, changes or {}, self._steps):
                    log.info("runner.operation_awaiting_approval")
                    runner.notifier.notify(self.operation_id)
                return
            if not settle(
                session,
                operation,
                state,
                error_code=error_code,
                error=error,
                outputs=outputs,
                changes=changes,
                code_version=runner.code_version,
                drift=drift,
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
