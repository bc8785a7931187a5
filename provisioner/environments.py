"""The environment lifecycle: which operation may start from which state, and how an
operation's end settles its environment. Routes call this; the runner settles through it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.auth import Principal
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from provisioner.logging import redactor
from provisioner.registry.environments import EnvironmentRepository
from provisioner.registry.operations import OperationRepository
from provisioner.registry.tables import (
    ACTIVE_OPERATION_STATES,
    EnvironmentRow,
    EnvironmentState,
    OperationRow,
    OperationState,
    utcnow,
)
from provisioner.schemas import EnvironmentCreate, EnvironmentUpdate
from provisioner.settings import Settings
from stacks.config import PipelineConfig, PipelineSettings

# The environment's state while an operation of this kind is queued or running.
_STATE_DURING: dict[OperationKind, EnvironmentState | None] = {
    OperationKind.CREATE: EnvironmentState.PROVISIONING,
    OperationKind.UPDATE: EnvironmentState.UPDATING,
    OperationKind.DESTROY: EnvironmentState.DESTROYING,
    OperationKind.REFRESH: None,  # a drift check or a plan leaves the state as it is
    OperationKind.PREVIEW: None,
}
_ALLOWED_FROM: dict[OperationKind, tuple[EnvironmentState, ...]] = {
    OperationKind.UPDATE: (EnvironmentState.READY, EnvironmentState.FAILED),
    OperationKind.DESTROY: (EnvironmentState.READY, EnvironmentState.FAILED),
    OperationKind.REFRESH: (EnvironmentState.READY, EnvironmentState.FAILED),
    OperationKind.PREVIEW: (EnvironmentState.READY, EnvironmentState.FAILED),
}
# Where the fields of a PipelineConfig error are, in the API's request bodies.
_FIELD_LOCATION = {"environment": "name", "tenant": "tenant", "region": "region", "tags": "tags"}


class ValidationFailed(InvalidRequestError):
    """422 with one entry per invalid field."""

    code = "validation_error"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        )


def _field_errors(error: ValidationError, prefix: tuple[str, ...] = ()) -> ValidationFailed:
    errors = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(str(part) for part in item["loc"])
        if loc and loc[0] in _FIELD_LOCATION and not prefix:
            loc = (_FIELD_LOCATION[loc[0]], *loc[1:])
        elif not prefix and loc:
            loc = ("config", *loc)
        errors.append({"loc": ["body", *prefix, *loc], "msg": item["msg"], "type": item["type"]})
    return ValidationFailed(errors)


def environment_config(row: EnvironmentRow) -> PipelineConfig:
    return PipelineConfig(
        tenant=row.tenant, environment=row.name, region=row.region, tags=row.tags, **row.config
    )


def request_fingerprint(method: str, path: str, body: Mapping[str, Any] | None) -> str:
    canonical = json.dumps([method, path, body or {}], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class EnvironmentService:
    """Turns API requests into queued operations, under the registry's constraints."""

    def __init__(self, session: Session, settings: Settings, engine: str) -> None:
        self.session = session
        self.settings = settings
        self.engine = engine
        self.environments = EnvironmentRepository(session)
        self.operations = OperationRepository(session)

    # --- reads ---

    def get_visible(self, principal: Principal, tenant: str, name: str) -> EnvironmentRow:
        """Another tenant's environment answers exactly like a missing one."""
        row = self.environments.get(tenant, name) if principal.can_see(tenant) else None
        if row is None:
            raise NotFoundError(f"environment {tenant}/{name} not found")
        return row

    def get_operation(self, principal: Principal, operation_id: str) -> OperationRow:
        row = self.operations.get(operation_id)
        if row is None or not principal.can_see(row.tenant):
            raise NotFoundError(f"operation {operation_id} not found")
        return row

    # --- writes ---

    def replay(
        self, principal: Principal, key: str | None, fingerprint: str
    ) -> OperationRow | None:
        """The operation an earlier request with this Idempotency-Key created, if any."""
        if key is None:
            return None
        row = self.operations.by_idempotency_key(principal.key_id, key)
        if row is not None and row.request_fingerprint != fingerprint:
            raise ConflictError("Idempotency-Key was already used with a different request")
        return row

    def idempotent(
        self,
        principal: Principal,
        key: str | None,
        fingerprint: str,
        request: Callable[[], OperationRow],
    ) -> OperationRow:
        """`request()`, unless this Idempotency-Key already made its operation — also when the
        first request with the key commits while this one is under way (it then loses the
        race with a conflict, and gets the winner's operation instead)."""
        replayed = self.replay(principal, key, fingerprint)
        if replayed is not None:
            return replayed
        try:
            return request()
        except ConflictError:
            if key is None:
                raise
            self.session.rollback()
            replayed = self.replay(principal, key, fingerprint)
            if replayed is None:
                raise
            return replayed

    def create(
        self,
        principal: Principal,
        body: EnvironmentCreate,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> OperationRow:
        try:
            config = PipelineConfig(
                tenant=body.tenant,
                environment=body.name,
                region=body.region,
                tags=body.tags,
                **body.config.model_dump(),
            )
        except ValidationError as error:
            raise _field_errors(error) from None
        if not principal.can_see(config.tenant):
            raise PermissionDeniedError(f"this API key may only act on tenant {principal.tenant!r}")
        row = self.environments.get(config.tenant, config.environment)
        if row is None:
            row = EnvironmentRow(
                id=str(uuid.uuid4()),
                tenant=config.tenant,
                name=config.environment,
                state=EnvironmentState.PROVISIONING,
                engine=self.engine,
                region=config.region,
                config=config.settings().model_dump(mode="json"),
                tags=dict(config.tags),
                outputs={},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            state_before: EnvironmentState | None = None
            try:
                with self.session.begin_nested():
                    self.environments.add(row)
            except IntegrityError:
                raise self._conflict(config.tenant, config.environment) from None
        else:
            self._refuse_if_active(row)
            if row.state not in (EnvironmentState.DESTROYED, EnvironmentState.FAILED):
                raise ConflictError(
                    f"environment {row.tenant}/{row.name} already exists (state {row.state})"
                )
            state_before = EnvironmentState(row.state)
            # A create on a FAILED environment retries it; on a DESTROYED one, re-creates it.
            row.region = config.region
            row.config = config.settings().model_dump(mode="json")
            row.tags = dict(config.tags)
            row.engine = self.engine
        return self._enqueue(
            principal,
            row,
            OperationKind.CREATE,
            config,
            state_before,
            idempotency_key,
            fingerprint,
        )

    def update(
        self,
        principal: Principal,
        tenant: str,
        name: str,
        body: EnvironmentUpdate,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> OperationRow:
        row = self.get_visible(principal, tenant, name)
        merged = {**row.config, **(body.config or {})}
        try:
            settings = PipelineSettings.model_validate(merged)
        except ValidationError as error:
            raise _field_errors(error, prefix=("config",)) from None
        tags = row.tags if body.tags is None else body.tags
        try:
            config = PipelineConfig(
                tenant=row.tenant,
                environment=row.name,
                region=row.region,
                tags=tags,
                **settings.model_dump(),
            )
        except ValidationError as error:
            raise _field_errors(error) from None
        self._refuse_if_active(row)
        self._require_state(row, OperationKind.UPDATE)
        state_before = EnvironmentState(row.state)
        row.config = settings.model_dump(mode="json")
        row.tags = dict(tags)
        return self._enqueue(
            principal, row, OperationKind.UPDATE, config, state_before, idempotency_key, fingerprint
        )

    def run(
        self,
        principal: Principal,
        tenant: str,
        name: str,
        kind: OperationKind,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> OperationRow:
        """Destroy, refresh or preview: the environment's current configuration, unchanged."""
        row = self.get_visible(principal, tenant, name)
        self._refuse_if_active(row)
        self._require_state(row, kind)
        return self._enqueue(
            principal,
            row,
            kind,
            environment_config(row),
            EnvironmentState(row.state),
            idempotency_key,
            fingerprint,
        )

    def cancel(self, principal: Principal, operation_id: str) -> OperationRow:
        row = self.get_operation(principal, operation_id)
        # Only from QUEUED: a runner may claim the operation between the read and this write,
        # and then it must be stopped like a running one, not declared never started.
        if row.state == OperationState.QUEUED and settle(
            self.session,
            row,
            OperationState.CANCELLED,
            error_code="cancelled",
            error="cancelled before it started",
            from_states=(OperationState.QUEUED,),
        ):
            pass
        elif row.state in (OperationState.QUEUED, OperationState.RUNNING):
            self.session.refresh(row)
            if row.state != OperationState.RUNNING:
                raise ConflictError(f"operation {row.id} already finished ({row.state})")
            row.cancel_requested = True
        else:
            raise ConflictError(f"operation {row.id} already finished ({row.state})")
        self.session.flush()
        return row

    # --- helpers ---

    def _enqueue(
        self,
        principal: Principal,
        environment: EnvironmentRow,
        kind: OperationKind,
        config: PipelineConfig,
        state_before: EnvironmentState | None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> OperationRow:
        operation = OperationRow(
            id=str(uuid.uuid4()),
            environment_id=environment.id,
            tenant=environment.tenant,
            name=environment.name,
            kind=kind,
            state=OperationState.QUEUED,
            request=config.model_dump(mode="json"),
            # A stack whose last operation failed or was interrupted may hold pending
            # operations: the engine recovers it first.
            recover=state_before == EnvironmentState.FAILED,
            environment_state_before=state_before,
            requested_by=principal.key_id,
            idempotency_scope=principal.key_id if idempotency_key else None,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            result={},
            progress_done=0,
            progress_total=0,
            cancel_requested=False,
            timeout_s=self.settings.operation_timeout_s,
            created_at=utcnow(),
        )
        try:
            with self.session.begin_nested():
                self.operations.add(operation)
        except IntegrityError:
            if idempotency_key is not None:
                replayed = self.operations.by_idempotency_key(principal.key_id, idempotency_key)
                if replayed is not None and replayed.request_fingerprint == fingerprint:
                    return replayed
            raise self._conflict(environment.tenant, environment.name) from None
        during = _STATE_DURING[kind]
        if during is not None:
            environment.state = during
            environment.failure_reason = None
        environment.last_operation_id = operation.id
        environment.updated_at = utcnow()
        self.session.flush()
        return operation

    def _refuse_if_active(self, row: EnvironmentRow) -> None:
        active = self.operations.active_for(row.id)
        if active is not None:
            raise ConflictError(
                f"environment {row.tenant}/{row.name} has an active operation {active.id} "
                f"({active.kind}, {active.state})"
            )

    def _require_state(self, row: EnvironmentRow, kind: OperationKind) -> None:
        if row.state not in _ALLOWED_FROM[kind]:
            raise ConflictError(
                f"cannot {kind} environment {row.tenant}/{row.name} in state {row.state}"
            )

    def _conflict(self, tenant: str, name: str) -> ConflictError:
        row = self.environments.get(tenant, name)
        active = self.operations.active_for(row.id) if row is not None else None
        if active is not None:
            return ConflictError(
                f"environment {tenant}/{name} has an active operation {active.id} "
                f"({active.kind}, {active.state})"
            )
        return ConflictError(f"environment {tenant}/{name} already exists")


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
) -> bool:
    """Record an operation's end and what it means for its environment, in one transaction.

    Returns False if the operation was not in `from_states` (e.g. another path settled it, or a
    runner claimed it first).
    """
    operations = OperationRepository(session)
    was_running = operation.state == OperationState.RUNNING
    # Every recorded reason passes the one redactor (DESIGN §9), whoever produced it.
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
    environment = EnvironmentRepository(session).get_by_id(operation.environment_id)
    if environment is None:
        return True
    kind = OperationKind(operation.kind)
    before = operation.environment_state_before
    changing = kind in (OperationKind.CREATE, OperationKind.UPDATE, OperationKind.DESTROY)
    if final_state == OperationState.SUCCEEDED:
        if kind == OperationKind.DESTROY:
            environment.state = EnvironmentState.DESTROYED
            environment.outputs = {}
        elif kind in (OperationKind.CREATE, OperationKind.UPDATE):
            environment.state = EnvironmentState.READY
            environment.outputs = dict(outputs or {})
        elif kind == OperationKind.REFRESH and outputs:
            environment.outputs = dict(outputs)
        if changing:
            environment.failure_reason = None
    elif final_state == OperationState.CANCELLED and not was_running:
        # Nothing ran: the environment is as it was (a never-created one does not exist).
        environment.state = before or EnvironmentState.DESTROYED
        if environment.state == EnvironmentState.FAILED:
            # Starting the retry cleared the old reason; the environment is still broken.
            environment.failure_reason = (
                f"{kind} {error or 'cancelled'}: the environment is still FAILED from its "
                "previous operation; retry it"
            )
    elif changing:
        environment.state = EnvironmentState.FAILED
        environment.failure_reason = f"{kind} {final_state.lower()}: {error or 'no reason given'}"
    environment.updated_at = utcnow()
    return True


SYSTEM_PRINCIPAL = Principal(key_id="system", scope="admin")
RESTART_NOTE = (
    "re-created empty after a service restart: the local AWS emulator keeps its state in memory"
)


def recreate_ephemeral_environments(
    session: Session, settings: Settings, engine: str
) -> list[OperationRow]:
    """After a restart of an engine whose infrastructure lives in memory (the local emulator):
    nothing may claim READY while it does not exist.

    Operations that were running stopped with the old process: INTERRUPTED now (the environment
    becomes FAILED and can be retried). Environments that were READY get a create operation,
    which rebuilds them empty; an operation queued on one of them is cancelled first (it was
    meant for resources that are gone). Other queued operations simply run.
    """
    operations = OperationRepository(session)
    environments = EnvironmentRepository(session)
    for operation in operations.list(state=OperationState.RUNNING, limit=10_000, offset=0)[0]:
        environment = environments.get_by_id(operation.environment_id)
        if environment is not None and environment.engine == engine:
            settle(
                session,
                operation,
                OperationState.INTERRUPTED,
                error_code="interrupted",
                error="the service restarted while the operation ran; retry it",
            )
    service = EnvironmentService(session, settings, engine)
    recreated = []
    for environment in environments.in_states([EnvironmentState.READY], engine=engine):
        queued = operations.active_for(environment.id)
        if queued is not None:
            # It was queued against resources that no longer exist; the re-creation goes first.
            settle(
                session,
                queued,
                OperationState.CANCELLED,
                error_code="cancelled",
                error="the service restarted and re-creates this environment; request it again",
                from_states=(OperationState.QUEUED,),
            )
        operation = service._enqueue(
            SYSTEM_PRINCIPAL,
            environment,
            OperationKind.CREATE,
            environment_config(environment),
            EnvironmentState.READY,
            None,
            request_fingerprint("RESTART", environment.id, None),
        )
        operations.append_event(
            operation.id, EngineEvent(EventType.DIAGNOSTIC, RESTART_NOTE, severity="warning")
        )
        recreated.append(operation)
    session.flush()
    return recreated
