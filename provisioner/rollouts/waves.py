"""One step of a rollout's waves (docs/architecture.md §7), in the caller's transaction and under
the rollout's row lock: follow the targets' operations, halt when the failure budget is spent,
start the next targets, end the rollout.

Canary targets run first and alone (no other target starts before every canary ended); then
at most `maxConcurrent` targets are active (RUNNING or VERIFYING) at a time, as a sliding
window. A target starts as an ordinary operation through the environment service (an update
moves it to its goal template version, as `PATCH {template}` does), in the same transaction
that records the operation on the target: a target never has two operations, except after an
INTERRUPTED one, which is retried once. A target whose environment is busy stays PENDING and
starts later. Every state lives in the registry, so a restart (or another replica) continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy.orm import Session

from provisioner.auth.service import Principal
from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.engines.base import OperationKind
from provisioner.environments.lifecycle import LIFECYCLE, settle
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.schemas import EnvironmentUpdate
from provisioner.environments.service import EnvironmentService, request_fingerprint
from provisioner.errors import ConflictError, ProvisionerError
from provisioner.operations.models import (
    ACTIVE_OPERATION_STATES,
    OperationRow,
    OperationState,
)
from provisioner.operations.repository import OperationRepository
from provisioner.rollouts.models import (
    ACTIVE_TARGET_STATES,
    FINAL_TARGET_STATES,
    RolloutAction,
    RolloutRow,
    RolloutState,
    RolloutTargetRow,
    TargetState,
)
from provisioner.rollouts.repository import RolloutRepository
from provisioner.rollouts.schemas import Strategy, rollout_summary, target_public
from provisioner.rollouts.service import event_data, is_current
from provisioner.webhooks.service import enqueue_event

log = structlog.get_logger(__name__)

# A target gets at most this many operations: the first, and one retry after an interruption.
MAX_ATTEMPTS: Final = 2
_NOT_STARTED: Final = (OperationState.QUEUED, OperationState.AWAITING_APPROVAL)


@dataclass(frozen=True)
class WaveContext:
    settings: Settings
    engine: str


@dataclass
class Step:
    changed: bool = False
    started: int = 0


class Waves:
    """Advances one locked rollout."""

    def __init__(
        self, session: Session, rollout: RolloutRow, context: WaveContext | None = None
    ) -> None:
        self.session = session
        self.context = context
        self.rollout = rollout
        self.strategy = Strategy.model_validate(rollout.strategy)
        self.rollouts = RolloutRepository(session)
        self.operations = OperationRepository(session)
        self.environments = EnvironmentRepository(session)
        self.targets = self.rollouts.targets(rollout.id)
        self.step = Step()

    def advance(self) -> Step:
        for target in self._in(TargetState.RUNNING):
            self._follow(target)
        self._check_budget()
        if self.rollout.state == RolloutState.CANCELLING:
            self._cancel_unstarted()
        if self.rollout.state == RolloutState.RUNNING:
            self._start_next()
        self._maybe_finish()
        if self.step.changed:
            self.rollout.updated_at = utcnow()
        return self.step

    # --- following the targets' operations ---

    def _follow(self, target: RolloutTargetRow) -> None:
        operation = self.operations.get(target.operation_id) if target.operation_id else None
        if operation is not None and operation.state in ACTIVE_OPERATION_STATES:
            return
        if operation is not None and operation.state == OperationState.SUCCEEDED:
            if self.strategy.verify:
                self.move(target, TargetState.VERIFYING, "target.verifying", None)
            else:
                self.move(target, TargetState.SUCCEEDED, "target.succeeded", None)
            return
        if operation is not None and operation.state == OperationState.INTERRUPTED:
            if target.attempts < MAX_ATTEMPTS:
                self.move(
                    target,
                    TargetState.PENDING,
                    "target.retrying",
                    f"operation {operation.id} was interrupted; retried once",
                )
                return
        self.move(target, TargetState.FAILED, "target.failed", _failure(operation))

    def _check_budget(self) -> None:
        failed = [target for target in self.targets if target.state == TargetState.FAILED]
        if len(failed) <= self.strategy.max_failures:
            return
        if self.rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
            return
        last = max(failed, key=lambda target: (target.finished_at or utcnow(), target.position))
        self.rollout.state = RolloutState.HALTING
        self.rollout.reason = (
            f"{len(failed)} targets failed, more than maxFailures ({self.strategy.max_failures});"
            f" last: {last.tenant}/{last.name}: {last.reason}"
        )
        self._event("rollout.halting", self.rollout.reason)
        log.warning("rollouts.halting", rollout_id=self.rollout.id, failed=len(failed))

    def _cancel_unstarted(self) -> None:
        """A cancelled rollout's targets whose operation has not started are cancelled with it;
        running ones finish."""
        for target in self.targets:
            if target.state == TargetState.PENDING:
                self.move(
                    target,
                    TargetState.SKIPPED,
                    "target.skipped",
                    "the rollout was cancelled before it started",
                )
                continue
            if target.state != TargetState.RUNNING or target.operation_id is None:
                continue
            operation = self.operations.get(target.operation_id)
            if operation is None or operation.state not in _NOT_STARTED:
                continue
            if settle(
                self.session,
                operation,
                OperationState.CANCELLED,
                error_code="cancelled",
                error="its rollout was cancelled before it started",
                from_states=_NOT_STARTED,
            ):
                self.move(
                    target,
                    TargetState.SKIPPED,
                    "target.skipped",
                    f"the rollout was cancelled before operation {operation.id} started",
                )

    # --- starting targets ---

    def _start_next(self) -> None:
        active = len(self._in(*ACTIVE_TARGET_STATES))
        canaries_left = any(
            target.canary and target.state not in FINAL_TARGET_STATES for target in self.targets
        )
        for target in self._in(TargetState.PENDING):
            if active >= self.strategy.max_concurrent or self.rollout.state != RolloutState.RUNNING:
                return
            if canaries_left and not target.canary:
                continue  # the canaries run first and alone
            if self._start(target):
                active += 1
            elif target.state == TargetState.FAILED:
                self._check_budget()

    def _start(self, target: RolloutTargetRow) -> bool:
        """Queue the target's operation; False if it waits (busy) or ended (skipped, failed)."""
        environment = self.environments.get_by_id(target.environment_id)
        assert environment is not None  # environments are never deleted
        if environment.state == EnvironmentState.DESTROYED:
            self.move(
                target, TargetState.SKIPPED, "target.skipped", "the environment was destroyed"
            )
            return False
        kind = (
            OperationKind.UPDATE
            if self.rollout.action == RolloutAction.UPDATE
            else OperationKind.REFRESH
        )
        active = self.operations.active_for(environment.id)
        if active is not None or environment.state not in LIFECYCLE[kind].allowed_from:
            self._wait(target, environment, active)
            return False
        if (
            kind == OperationKind.UPDATE
            and not self.strategy.force
            and is_current(environment, target.template_version, self.rollout.code_version)
        ):
            self.move(
                target,
                TargetState.SKIPPED,
                "target.skipped",
                f"already on {target.template_name}@{target.template_version} and code "
                f"{self.rollout.code_version}",
            )
            return False
        try:
            with self.session.begin_nested():
                operation = self._request(target, kind)
        except ConflictError:
            self._wait(target, environment, None)
            return False
        except ProvisionerError as error:
            self.move(target, TargetState.FAILED, "target.failed", f"not started: {error.detail}")
            return False
        target.operation_id = operation.id
        target.attempts += 1
        target.started_at = target.started_at or utcnow()
        self.move(
            target,
            TargetState.RUNNING,
            "target.started",
            None,
            operationId=operation.id,
            attempt=target.attempts,
        )
        self.step.started += 1
        return True

    def _request(self, target: RolloutTargetRow, kind: OperationKind) -> OperationRow:
        """The operation, requested through the environment service in the name of the key
        that started the rollout (its quotas, protection and one-active rule hold)."""
        assert self.context is not None, "starting targets needs the wave context"
        service = EnvironmentService(self.session, self.context.settings, self.context.engine)
        principal = Principal(key_id=self.rollout.created_by, scope=self.rollout.created_scope)
        fingerprint = request_fingerprint(
            "ROLLOUT", f"{self.rollout.id}/{target.position}/{target.attempts + 1}", None
        )
        if kind == OperationKind.UPDATE:
            body = EnvironmentUpdate(template=f"{target.template_name}@{target.template_version}")
            operation = service.update(
                principal, target.tenant, target.name, body, None, fingerprint
            )
        else:
            operation = service.run(principal, target.tenant, target.name, kind, None, fingerprint)
        operation.rollout_id = self.rollout.id
        self.session.flush()
        return operation

    def _wait(
        self, target: RolloutTargetRow, environment: EnvironmentRow, active: OperationRow | None
    ) -> None:
        reason = (
            f"waiting: environment busy with operation {active.id} ({active.kind})"
            if active is not None
            else f"waiting: environment is {environment.state}"
        )
        if target.reason != reason:  # one event per distinct wait, not one per tick
            target.reason = reason
            self._event("target.waiting", reason, target=self._public(target))
            self.step.changed = True

    # --- ending ---

    def _maybe_finish(self) -> None:
        if self._in(*ACTIVE_TARGET_STATES):
            return
        state = RolloutState(self.rollout.state)
        if state == RolloutState.HALTING:
            self._finish(RolloutState.HALTED, "rollout.halted")
        elif state == RolloutState.CANCELLING:
            self._finish(RolloutState.CANCELLED, None)
        elif state == RolloutState.RUNNING and not self._in(TargetState.PENDING):
            self._finish(RolloutState.SUCCEEDED, "rollout.succeeded")

    def _finish(self, state: RolloutState, webhook: str | None) -> None:
        """The rollout's end, its event and its webhook, in this one transaction."""
        now = utcnow()
        self.rollout.state = state
        self.rollout.finished_at = now
        self.rollout.updated_at = now
        self.step.changed = True
        summary = rollout_summary(self.rollout, self._counts()).model_dump(
            mode="json", by_alias=True
        )
        message = f"rollout {state.lower()}" + (
            f": {self.rollout.reason}" if self.rollout.reason else ""
        )
        self._event(f"rollout.{state.lower()}", message, summary=summary)
        if webhook is not None:
            enqueue_event(self.session, webhook, self.rollout.tenant, summary, at=now)
        log.info("rollouts.finished", rollout_id=self.rollout.id, state=state)

    # --- helpers ---

    def _in(self, *states: TargetState) -> list[RolloutTargetRow]:
        return [target for target in self.targets if target.state in states]

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for target in self.targets:
            counts[target.state] = counts.get(target.state, 0) + 1
        return counts

    def _public(self, target: RolloutTargetRow) -> dict[str, Any]:
        return target_public(target).model_dump(mode="json", by_alias=True)

    def move(
        self,
        target: RolloutTargetRow,
        state: TargetState,
        event: str,
        reason: str | None,
        **data: Any,
    ) -> None:
        target.state = state
        target.reason = reason
        if state in FINAL_TARGET_STATES:
            target.finished_at = utcnow()
        self.session.flush()
        self.step.changed = True
        message = f"{target.tenant}/{target.name} {state.lower()}" + (
            f": {reason}" if reason else ""
        )
        self._event(event, message, target=self._public(target), **data)

    def _event(self, event_type: str, message: str, **data: Any) -> None:
        self.rollouts.append_event(
            self.rollout.id, event_type, message, event_data(self.rollout, **data)
        )


def _failure(operation: OperationRow | None) -> str:
    if operation is None:
        return "its operation is gone"
    return f"{operation.kind} {operation.state.lower()}: {operation.error or 'no reason given'}"


VerificationOutcome = tuple[TargetState, str | None, dict[str, Any] | None]


def record_verification(
    session: Session, rollout_id: str, target_id: int, owner: str, outcome: VerificationOutcome
) -> bool:
    """A verification's result (SUCCEEDED with the canary's status item, or FAILED with the
    reason), if this replica still holds the target's claim; the next step goes on from it."""
    rollout = RolloutRepository(session).lock(rollout_id)
    if rollout is None:
        return False
    waves = Waves(session, rollout)
    target = next((t for t in waves.targets if t.id == target_id), None)
    if target is None or target.state != TargetState.VERIFYING or target.verify_claimed_by != owner:
        return False
    state, reason, verification = outcome
    target.verification = verification
    event = "target.succeeded" if state == TargetState.SUCCEEDED else "target.failed"
    waves.move(target, state, event, reason)
    rollout.updated_at = utcnow()
    return True
