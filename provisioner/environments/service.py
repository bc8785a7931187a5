"""Environment requests → queued operations, under the registry's constraints and the lifecycle
(`provisioner.environments.lifecycle`); and the re-creation of in-memory environments after a
restart."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.auth.service import Principal
from provisioner.config import Settings
from provisioner.db import utcnow
from provisioner.engines.base import EngineEvent, EventType, OperationKind
from provisioner.environments.lifecycle import LIFECYCLE, settle
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.schemas import EnvironmentCreate, EnvironmentUpdate, ExpiryFields
from provisioner.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailed,
)
from provisioner.operations.models import OperationRow, OperationState
from provisioner.operations.repository import OperationRepository
from provisioner.templates.models import TemplateVersionRow
from provisioner.templates.service import DEFAULT_TEMPLATE, TemplateService, validated_config
from provisioner.tenants.service import TenantService
from stacks.config import PipelineConfig

_FIELD_LOCATION = {"environment": "name", "tenant": "tenant", "region": "region", "tags": "tags"}


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


def _effective(
    version: TemplateVersionRow, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The effective config (the template version's, overlaid with `overrides`) and the
    overrides as validated; errors name `config.<field>`."""
    settings = validated_config({**version.config, **overrides}, "config")
    return settings, {key: settings[key] for key in overrides}


def environment_config(row: EnvironmentRow) -> PipelineConfig:
    return PipelineConfig(
        tenant=row.tenant, environment=row.name, region=row.region, tags=row.tags, **row.config
    )


def environment_fingerprint(row: EnvironmentRow) -> str:
    """What an approval's preview was computed from: refused once this changes."""
    canonical = json.dumps(
        [
            row.config,
            row.tags,
            row.region,
            row.state,
            row.template_name,
            row.template_version,
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_fingerprint(method: str, path: str, body: Mapping[str, Any] | None) -> str:
    canonical = json.dumps([method, path, body or {}], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class OperationOrder:
    """What to queue on an environment: an operation of `kind` on `config`."""

    kind: OperationKind
    config: PipelineConfig
    # The environment's state when it was ordered: restored if the order is cancelled before it
    # starts; FAILED means the engine recovers the stack first.
    state_before: EnvironmentState | None
    fingerprint: str
    idempotency_key: str | None = None
    # The engine first reads every resource back into its record of the stack (pulumi: a
    # refresh): a remediation of drift the record does not know yet.
    refresh_first: bool = False


class EnvironmentService:
    """Turns API requests into queued operations, under the registry's constraints."""

    def __init__(self, session: Session, settings: Settings, engine: str) -> None:
        self.session = session
        self.settings = settings
        self.engine = engine
        self.environments = EnvironmentRepository(session)
        self.operations = OperationRepository(session)
        self.templates = TemplateService(session)

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
        version = self.templates.resolve(body.template or DEFAULT_TEMPLATE)
        settings, overrides = _effective(version, body.config)
        try:
            config = PipelineConfig(
                tenant=body.tenant,
                environment=body.name,
                region=body.region,
                tags=body.tags,
                **settings,
            )
        except ValidationError as error:
            raise _field_errors(error) from None
        if not principal.can_see(config.tenant):
            raise PermissionDeniedError(f"this API key may only act on tenant {principal.tenant!r}")
        _require_admin_for_protected(principal, body)
        row = self.environments.get(config.tenant, config.environment)
        TenantService(self.session).check(
            config.tenant,
            new_environment=row is None or row.state == EnvironmentState.DESTROYED,
            region=config.region,
            memory_mb=config.memory_mb,
        )
        if row is None:
            row = EnvironmentRow(
                id=str(uuid.uuid4()),
                tenant=config.tenant,
                name=config.environment,
                state=EnvironmentState.PROVISIONING,
                engine=self.engine,
                region=config.region,
                config=config.settings().model_dump(mode="json"),
                config_overrides=overrides,
                template_name=version.template_name,
                template_version=version.version,
                tags=dict(config.tags),
                outputs={},
                expiry_warnings_sent=[],
                protected=bool(body.protected),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            set_expiry(row, body, utcnow())
            set_drift_check(row, body)
            state_before: EnvironmentState | None = None
            try:
                with self.session.begin_nested():
                    self.environments.add(row)
            except IntegrityError:
                raise self._conflict(config.tenant, config.environment) from None
        else:
            self._refuse_if_active(row)
            if row.state not in LIFECYCLE[OperationKind.CREATE].allowed_from:
                raise ConflictError(
                    f"environment {row.tenant}/{row.name} already exists (state {row.state})"
                )
            state_before = EnvironmentState(row.state)
            # A create on a FAILED environment retries it; on a DESTROYED one, re-creates it.
            row.region = config.region
            row.config = config.settings().model_dump(mode="json")
            row.config_overrides = overrides
            row.template_name, row.template_version = version.template_name, version.version
            row.tags = dict(config.tags)
            row.engine = self.engine
            # A re-created environment expires as this request says, not as the old one did.
            set_expiry(row, body, utcnow())
            set_drift_check(row, body)
            if body.protected is not None:
                row.protected = body.protected
        return self.enqueue(
            principal,
            row,
            OperationOrder(
                OperationKind.CREATE, config, state_before, fingerprint, idempotency_key
            ),
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
        self.update_metadata(principal, row, body)
        if body.template is not None:
            version = self.templates.resolve(body.template)
        else:
            version = self.templates.current(row.template_name, row.template_version)
        settings, overrides = _effective(
            version, {**(row.config_overrides or {}), **(body.config or {})}
        )
        tags = row.tags if body.tags is None else body.tags
        try:
            config = PipelineConfig(
                tenant=row.tenant,
                environment=row.name,
                region=row.region,
                tags=tags,
                **settings,
            )
        except ValidationError as error:
            raise _field_errors(error) from None
        TenantService(self.session).check(
            row.tenant, new_environment=False, region=row.region, memory_mb=config.memory_mb
        )
        self._refuse_if_active(row)
        self._require_state(row, OperationKind.UPDATE)
        state_before = EnvironmentState(row.state)
        pending: dict[str, Any] | None = None
        if row.protected:
            # A protected environment takes the new configuration (and template) once the
            # update is approved: environments.approvals applies `pendingTemplate` then.
            pending = {
                "template": [version.template_name, version.version],
                "overrides": overrides,
            }
        else:
            row.config = config.settings().model_dump(mode="json")
            row.config_overrides = overrides
            row.template_name, row.template_version = version.template_name, version.version
            row.tags = dict(tags)
        operation = self.enqueue(
            principal,
            row,
            OperationOrder(
                OperationKind.UPDATE, config, state_before, fingerprint, idempotency_key
            ),
        )
        if pending is not None:
            operation.result = {**(operation.result or {}), "pendingTemplate": pending}
        return operation

    def update_metadata(
        self, principal: Principal, row: EnvironmentRow, body: EnvironmentUpdate
    ) -> None:
        """What a PATCH changes without an operation: expiry, protection, drift checks."""
        _require_admin_for_protected(principal, body)
        if body.changes_expiry:
            set_expiry(row, body, utcnow())
        set_drift_check(row, body)
        if body.protected is not None:
            row.protected = body.protected
        row.updated_at = utcnow()
        self.session.flush()

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
        order = OperationOrder(
            kind, environment_config(row), EnvironmentState(row.state), fingerprint, idempotency_key
        )
        return self.enqueue(principal, row, order)

    def cancel(self, principal: Principal, operation_id: str) -> OperationRow:
        row = self.get_operation(principal, operation_id)
        # Only from QUEUED: a runner may claim the operation between the read and this write,
        # and then it must be stopped like a running one, not declared never started.
        waiting = (OperationState.QUEUED, OperationState.AWAITING_APPROVAL)
        settled = row.state in waiting and settle(
            self.session,
            row,
            OperationState.CANCELLED,
            error_code="cancelled",
            error="cancelled before it started",
            from_states=waiting,
        )
        if not settled:
            self.session.refresh(row)
            if row.state != OperationState.RUNNING:
                raise ConflictError(f"operation {row.id} already finished ({row.state})")
            row.cancel_requested = True
        self.session.flush()
        return row

    def enqueue(
        self, principal: Principal, environment: EnvironmentRow, order: OperationOrder
    ) -> OperationRow:
        """Queue `order` on `environment` and put the environment in its state for it.

        A conflict with another active operation (or an Idempotency-Key's first use committing
        meanwhile) raises `ConflictError`; `idempotent` turns the latter into its replay.
        """
        kind, config, state_before = order.kind, order.config, order.state_before
        idempotency_key, fingerprint = order.idempotency_key, order.fingerprint
        needs_approval = environment.protected and kind in APPROVED_KINDS
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
            recover=state_before == EnvironmentState.FAILED or order.refresh_first,
            environment_state_before=state_before,
            requested_by=principal.key_id,
            idempotency_scope=principal.key_id if idempotency_key else None,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            result={},
            progress_done=0,
            progress_total=0,
            cancel_requested=False,
            approval_required=needs_approval,
            preview_fingerprint=environment_fingerprint(environment) if needs_approval else None,
            timeout_s=self.settings.operation_timeout_s,
            created_at=utcnow(),
        )
        try:
            with self.session.begin_nested():
                self.operations.add(operation)
        except IntegrityError:
            raise self._conflict(environment.tenant, environment.name) from None
        during = LIFECYCLE[kind].during
        # An operation awaiting approval leaves the environment as it is until approved.
        if during is not None and not needs_approval:
            environment.state = during
            environment.failure_reason = None
        environment.last_operation_id = operation.id
        environment.updated_at = utcnow()
        self.session.flush()
        return operation

    def _refuse_if_active(self, row: EnvironmentRow) -> None:
        active = self.operations.active_for(row.id)
        if active is not None:
            raise _active_conflict(row.tenant, row.name, active)

    def _require_state(self, row: EnvironmentRow, kind: OperationKind) -> None:
        if row.state not in LIFECYCLE[kind].allowed_from:
            raise ConflictError(
                f"cannot {kind} environment {row.tenant}/{row.name} in state {row.state}"
            )

    def _conflict(self, tenant: str, name: str) -> ConflictError:
        row = self.environments.get(tenant, name)
        active = self.operations.active_for(row.id) if row is not None else None
        if active is not None:
            return _active_conflict(tenant, name, active)
        return ConflictError(f"environment {tenant}/{name} already exists")


# The operations that wait for an approval on a protected environment.
APPROVED_KINDS = frozenset({OperationKind.UPDATE, OperationKind.DESTROY})


def set_expiry(row: EnvironmentRow, body: ExpiryFields, now: datetime) -> None:
    """`expiresAt` / `ttlMinutes` (counted from `now`, the request), or neither: no expiry.

    A new expiry gets its warnings afresh."""
    expires_at: datetime | None = None
    if body.ttl_minutes is not None:
        expires_at = now + timedelta(minutes=body.ttl_minutes)
    elif body.expires_at is not None:
        if body.expires_at <= now:
            raise ValidationFailed(
                [
                    {
                        "loc": ["body", "expiresAt"],
                        "msg": "must be in the future",
                        "type": "value_error",
                    }
                ]
            )
        expires_at = body.expires_at
    row.expires_at = expires_at
    row.expiry_warnings_sent = []
    row.expired_at = None


def set_drift_check(row: EnvironmentRow, body: ExpiryFields) -> None:
    """`driftCheck` as given: the fields it names (null: the defaults); none given, no change.

    The next check is scheduled afresh by the scheduler's next tick."""
    if "drift_check" not in body.model_fields_set:
        return
    given = body.drift_check
    if given is None:
        row.drift_check_minutes, row.drift_remediate = None, False
    else:
        if "interval_minutes" in given.model_fields_set:
            row.drift_check_minutes = given.interval_minutes
        if "remediate" in given.model_fields_set:
            row.drift_remediate = given.remediate
    row.drift_due_at = None


def _require_admin_for_protected(principal: Principal, body: ExpiryFields) -> None:
    if body.protected is not None and not principal.is_admin:
        raise PermissionDeniedError("only admin API keys may set 'protected'")


def _active_conflict(tenant: str, name: str, active: OperationRow) -> ConflictError:
    return ConflictError(
        f"environment {tenant}/{name} has an active operation {active.id} "
        f"({active.kind}, {active.state})"
    )


SYSTEM_PRINCIPAL = Principal(key_id="system", scope="admin")
RESTART_NOTE = "re-created empty after a service restart: {reason}"

# How an engine host brings its environments back after a restart: given the configurations
# of those that were READY, it returns, by stack name, why some cannot be (`EngineHost.restore`).
Restorer = Callable[[Sequence[PipelineConfig]], Mapping[str, str]]


def restore_ephemeral_environments(
    session: Session, settings: Settings, engine: str, restore: Restorer
) -> list[OperationRow]:
    """After a restart of an engine whose infrastructure lives in the service (the local
    emulator): nothing may claim READY while it does not exist.

    Operations that were running stopped with the old process: INTERRUPTED now (the environment
    becomes FAILED and can be retried). Environments that were READY come back as the engine
    kept them (`restore`); those it could not bring back get a create operation, which rebuilds
    them empty, its first event saying why; an operation queued on one of them is cancelled
    first (it was meant for resources that are gone). Other queued operations simply run.
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
    ready = environments.in_states([EnvironmentState.READY], engine=engine)
    configs = {environment.id: environment_config(environment) for environment in ready}
    lost = restore(list(configs.values()))
    service = EnvironmentService(session, settings, engine)
    recreated = []
    for environment in ready:
        reason = lost.get(configs[environment.id].stack_name)
        if reason is None:
            continue
        queued = operations.active_for(environment.id)
        if queued is not None:
            # It was queued against resources that no longer exist; the re-creation goes first.
            settle(
                session,
                queued,
                OperationState.CANCELLED,
                error_code="cancelled",
                error="the service restarted and re-creates this environment; request it again",
                from_states=(OperationState.QUEUED, OperationState.AWAITING_APPROVAL),
            )
        order = OperationOrder(
            OperationKind.CREATE,
            environment_config(environment),
            state_before=EnvironmentState.READY,
            fingerprint=request_fingerprint("RESTART", environment.id, None),
        )
        operation = service.enqueue(SYSTEM_PRINCIPAL, environment, order)
        operations.append_event(
            operation.id,
            EngineEvent(
                EventType.DIAGNOSTIC, RESTART_NOTE.format(reason=reason), severity="warning"
            ),
        )
        recreated.append(operation)
    session.flush()
    return recreated
