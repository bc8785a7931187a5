"""An environment's lifecycle, described once: which operation may start from which state, the
state while it runs, and what its end means for the environment (docs/architecture.md §4).

`LIFECYCLE` is the table; `settle` records an operation's end by reading it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from provisioner.db import utcnow
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.environments.drift import forget_drift, record_drift
from provisioner.environments.models import EnvironmentState
from provisioner.environments.repository import EnvironmentRepository
from provisioner.logging import redactor
from provisioner.operations.models import ACTIVE_OPERATION_STATES, OperationRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.webhooks.service import enqueue_operation_finished


class Outputs(StrEnum):
    """What a succeeded operation does to the environment's stack outputs."""

    REPLACE = "replace"  # the stack's outputs as the engine reported them
    CLEAR = "clear"  # the stack is gone
    REFRESH = "refresh"  # replaced if the engine read any back
    KEEP = "keep"


@dataclass(frozen=True)
class Transition:
    # The states an environment must be in for this operation to start.
    allowed_from: tuple[EnvironmentState, ...]
    # The environment's state while the operation is queued or running (None: unchanged).
    during: EnvironmentState | None
    # Its state once the operation succeeded (None: unchanged).
    succeeded: EnvironmentState | None
    outputs: Outputs
    # The operation changes infrastructure: its failure (or a cancel once it ran) leaves the
    # environment FAILED, and its success clears an earlier failure's reason. A drift check or
    # a plan changes nothing, so it leaves the environment as it was.
    changes_infrastructure: bool
    # Its success records the service's code version on the environment (§7): it deployed it.
    applies_code: bool = False
    # Its success records the drift it found on the environment (§8).
    checks_drift: bool = False


_SETTLED = (EnvironmentState.READY, EnvironmentState.FAILED)

LIFECYCLE: Mapping[OperationKind, Transition] = {
    # A create on a FAILED environment retries it; on a DESTROYED one, re-creates it (a new
    # environment has no row yet, so no state to check).
    OperationKind.CREATE: Transition(
        (EnvironmentState.DESTROYED, EnvironmentState.FAILED),
        during=EnvironmentState.PROVISIONING,
        succeeded=EnvironmentState.READY,
        outputs=Outputs.REPLACE,
        changes_infrastructure=True,
        applies_code=True,
    ),
    OperationKind.UPDATE: Transition(
        _SETTLED,
        during=EnvironmentState.UPDATING,
        succeeded=EnvironmentState.READY,
        outputs=Outputs.REPLACE,
        changes_infrastructure=True,
        applies_code=True,
    ),
    OperationKind.DESTROY: Transition(
        _SETTLED,
        during=EnvironmentState.DESTROYING,
        succeeded=EnvironmentState.DESTROYED,
        outputs=Outputs.CLEAR,
        changes_infrastructure=True,
    ),
    OperationKind.REFRESH: Transition(
        _SETTLED,
        during=None,
        succeeded=None,
        outputs=Outputs.REFRESH,
        changes_infrastructure=False,
        checks_drift=True,
    ),
    OperationKind.DRIFT_CHECK: Transition(
        _SETTLED,
        during=None,
        succeeded=None,
        outputs=Outputs.KEEP,
        changes_infrastructure=False,
        checks_drift=True,
    ),
    OperationKind.PREVIEW: Transition(
        _SETTLED, during=None, succeeded=None, outputs=Outputs.KEEP, changes_infrastructure=False
    ),
}


def settle(
    session: Session,
    operation: OperationRow,
    final_state: OperationState,
    *,
    error_code: str | None = None,
    error: str | None = None,
    outputs: Mapping[str, str] | None = None,
    changes: Mapping[str, int] | None = None,
    from_states: Sequence[OperationState] = ACTIVE_OPERATION_STATES,
    code_version: str | None = None,
    drift: Sequence[Mapping[str, Any]] | None = None,
) -> bool:
    """Record an operation's end and what it means for its environment, in one transaction.

    `code_version` is that of the service that ran it (provisioner.versions): a succeeded
    create or update records it on the environment. `drift` is what a drift check found
    (`engines.base.ResourceDrift`s as dicts; None from an engine that did not report it).

    Returns False if the operation was not in `from_states` (e.g. another path settled it, or a
    runner claimed it first).
    """
    operations = OperationRepository(session)
    was_running = operation.state == OperationState.RUNNING
    # Every recorded reason passes the one redactor (docs/architecture.md §9), whoever produced it.
    error = redactor.reason(error) if error is not None else None
    if not operations.transition(
        operation.id,
        from_states=from_states,
        to_state=final_state,
        finished_at=utcnow(),
        error_code=error_code,
        error=error,
        result={"changes": dict(changes or {})},
    ):
        return False
    session.refresh(operation)
    # The final event goes with the final state, in the same transaction: a stream that sees
    # the state final and nothing left to read has seen everything.
    operations.append_event(
        operation.id,
        EngineEvent(
            EventType.FINISHED,
            f"operation {final_state.lower()}" + (f": {error}" if error else ""),
            data={"state": final_state, "changes": dict(changes or {})},
        ),
    )
    # The webhook outbox too: the event is delivered if and only if the state committed.
    enqueue_operation_finished(session, operation)
    environment = EnvironmentRepository(session).get_by_id(operation.environment_id)
    if environment is None:
        return True
    if operation.approval_required and operation.approved_by is None:
        # Only its preview ran (or nothing): the environment is as it was.
        environment.updated_at = utcnow()
        return True
    kind = OperationKind(operation.kind)
    transition = LIFECYCLE[kind]
    if final_state == OperationState.SUCCEEDED:
        if transition.succeeded is not None:
            environment.state = transition.succeeded
        if transition.outputs == Outputs.REPLACE:
            environment.outputs = dict(outputs or {})
        elif transition.outputs == Outputs.CLEAR:
            environment.outputs = {}
        elif transition.outputs == Outputs.REFRESH and outputs:
            environment.outputs = dict(outputs)
        if transition.changes_infrastructure:
            environment.failure_reason = None
            forget_drift(environment)
        if transition.checks_drift and drift is not None:
            record_drift(session, environment, operation, drift)
        if transition.applies_code and code_version is not None:
            environment.code_version = code_version
    elif final_state == OperationState.CANCELLED and not was_running:
        # Nothing ran: the environment is as it was (a never-created one does not exist).
        environment.state = operation.environment_state_before or EnvironmentState.DESTROYED
        if environment.state == EnvironmentState.FAILED:
            # Starting the retry cleared the old reason; the environment is still broken.
            environment.failure_reason = (
                f"{kind} {error or 'cancelled'}: the environment is still FAILED from its "
                "previous operation; retry it"
            )
    elif transition.changes_infrastructure:
        environment.state = EnvironmentState.FAILED
        environment.failure_reason = f"{kind} {final_state.lower()}: {error or 'no reason given'}"
    environment.updated_at = utcnow()
    return True
