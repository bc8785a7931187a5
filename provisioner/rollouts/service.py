"""Rollout requests (docs/architecture.md §7): the snapshot of targets a selector takes, and
pause, resume and cancel. The waves themselves are `provisioner.rollouts.waves`.

Tenant keys act only on their own tenant: their selector is limited to it (naming another
tenant is a 403) and they see only rollouts of their tenant (another tenant's is a 404). Every
change takes the rollout's row lock first (`RolloutRepository.lock`), like the scheduler's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog
from sqlalchemy.orm import Session

from provisioner.auth.service import Principal
from provisioner.db import utcnow
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationFailed
from provisioner.rollouts.models import (
    RolloutAction,
    RolloutRow,
    RolloutState,
    RolloutTargetRow,
    TargetState,
)
from provisioner.rollouts.repository import RolloutRepository
from provisioner.rollouts.schemas import MAX_TARGETS, RolloutCreate, Selector
from provisioner.templates.repository import TemplateRepository

log = structlog.get_logger(__name__)

# Tags and named environments are matched here, not in SQL (tag keys compare case-insensitively,
# docs/architecture.md §9): the registry is read up to this many rows for them.
_SCAN_LIMIT: Final = 50_000


def _invalid(loc: Sequence[str], message: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", *loc], "msg": message, "type": "value_error"}])


def is_current(environment: EnvironmentRow, goal_version: int | None, code_version: str) -> bool:
    """Already where an update would take it: READY on the goal template version and on the
    service's code (a FAILED one is not, whatever it records)."""
    return (
        environment.state == EnvironmentState.READY
        and environment.template_version == goal_version
        and environment.code_version == code_version
    )


def _has_tags(environment: EnvironmentRow, wanted: Mapping[str, str]) -> bool:
    tags = {key.lower(): value for key, value in (environment.tags or {}).items()}
    return all(tags.get(key.lower()) == value for key, value in wanted.items())


def event_data(rollout: RolloutRow, **extra: Any) -> dict[str, Any]:
    return {"rolloutId": rollout.id, "rolloutState": rollout.state, **extra}


class RolloutService:
    def __init__(self, session: Session, code_version: str) -> None:
        self.session = session
        self.code_version = code_version
        self.rollouts = RolloutRepository(session)
        self.templates = TemplateRepository(session)

    # --- reading ---

    def get_visible(self, principal: Principal, rollout_id: str) -> RolloutRow:
        row = self.rollouts.get(rollout_id)
        if row is None or not (principal.is_admin or row.tenant == principal.tenant):
            raise NotFoundError(f"rollout {rollout_id} not found")
        return row

    def list(
        self, principal: Principal, *, state: RolloutState | None, limit: int, offset: int
    ) -> tuple[Sequence[RolloutRow], int]:
        return self.rollouts.list(tenant=principal.tenant, state=state, limit=limit, offset=offset)

    # --- creating: the snapshot ---

    def create(self, principal: Principal, body: RolloutCreate) -> RolloutRow:
        if body.action == RolloutAction.REFRESH and body.template_version is not None:
            raise _invalid(["templateVersion"], "only an update moves to a template version")
        environments = self._select(principal, body.selector)
        goals = self._goal_versions(body, environments)
        now = utcnow()
        rollout = RolloutRow(
            id=str(uuid.uuid4()),
            tenant=principal.tenant or _single_tenant(environments),
            state=RolloutState.RUNNING,
            action=body.action,
            selector=body.selector.model_dump(mode="json", by_alias=True, exclude_none=True),
            strategy=body.strategy.model_dump(mode="json", by_alias=True),
            template_version=body.template_version,
            code_version=self.code_version,
            created_by=principal.key_id,
            created_scope=principal.scope,
            created_at=now,
            updated_at=now,
        )
        targets = self._targets(rollout, body, environments, goals)
        self.rollouts.add(rollout, targets)
        skipped = sum(1 for target in targets if target.state == TargetState.SKIPPED)
        self.rollouts.append_event(
            rollout.id,
            "rollout.created",
            f"rollout of {len(targets)} environments created ({skipped} already current)",
            event_data(rollout, targets=len(targets), skipped=skipped),
        )
        log.info(
            "rollouts.created",
            rollout_id=rollout.id,
            action=rollout.action,
            targets=len(targets),
            skipped=skipped,
        )
        return rollout

    def _select(self, principal: Principal, selector: Selector) -> Sequence[EnvironmentRow]:
        tenants = selector.tenants
        references = (
            {tuple(reference.split("/", 1)) for reference in selector.environments}
            if selector.environments is not None
            else None
        )
        if principal.tenant is not None:
            named = set(tenants or []) | {tenant for tenant, _ in references or set()}
            if named - {principal.tenant}:
                raise PermissionDeniedError(
                    f"this API key may only roll out over tenant {principal.tenant!r}"
                )
            tenants = [principal.tenant]
        if references is not None:
            in_references = sorted({tenant for tenant, _ in references})
            tenants = (
                in_references if tenants is None else sorted(set(tenants) & set(in_references))
            )
        template: tuple[str, int | None] | None = None
        if selector.template is not None:
            name, _, version = selector.template.partition("@")
            template = (name, int(version) if version else None)
            if self.templates.get(name) is None:
                raise _invalid(["selector", "template"], f"no template {name!r}")
        scanned = selector.tags is not None or references is not None
        rows = self.rollouts.matching_environments(
            tenants=tenants,
            template=template,
            outdated=selector.outdated,
            code_version=self.code_version,
            limit=_SCAN_LIMIT if scanned else MAX_TARGETS + 1,
        )
        if references is not None:
            found = {(row.tenant, row.name) for row in rows}
            missing = sorted(f"{t}/{n}" for t, n in references - found)
            if missing and selector.template is None and selector.outdated is None:
                raise _invalid(
                    ["selector", "environments"],
                    f"no such environment (or destroyed): {', '.join(missing[:10])}",
                )
            rows = [row for row in rows if (row.tenant, row.name) in references]
        if selector.tags is not None:
            rows = [row for row in rows if _has_tags(row, selector.tags)]
        if not rows:
            raise _invalid(["selector"], "matches no environment")
        if len(rows) > MAX_TARGETS:
            raise _invalid(
                ["selector"], f"matches more than {MAX_TARGETS} environments: narrow it down"
            )
        return rows

    def _goal_versions(
        self, body: RolloutCreate, environments: Sequence[EnvironmentRow]
    ) -> dict[str, int | None]:
        """Per environment id: the version of its template an update moves it to."""
        if body.action != RolloutAction.UPDATE:
            return {row.id: None for row in environments}
        names = sorted({row.template_name for row in environments})
        latest = self.templates.latest_versions(names)
        if body.template_version is not None:
            lacking = [name for name in names if latest.get(name, 0) < body.template_version]
            if lacking:
                raise _invalid(
                    ["templateVersion"],
                    f"no version {body.template_version} of template(s) {', '.join(lacking)}",
                )
            return {row.id: body.template_version for row in environments}
        return {row.id: latest.get(row.template_name, row.template_version) for row in environments}

    def _targets(
        self,
        rollout: RolloutRow,
        body: RolloutCreate,
        environments: Sequence[EnvironmentRow],
        goals: Mapping[str, int | None],
    ) -> Sequence[RolloutTargetRow]:
        strategy = body.strategy
        canaries = 0
        batch = 0  # counts the non-canary targets, for their wave number
        targets = []
        for position, environment in enumerate(environments):
            goal = goals[environment.id]
            skip = (
                body.action == RolloutAction.UPDATE
                and not strategy.force
                and is_current(environment, goal, self.code_version)
            )
            canary = not skip and canaries < strategy.canary
            if canary:
                canaries += 1
                wave = 0
            else:
                wave = 1 + batch // strategy.max_concurrent
                batch += 1
            targets.append(
                RolloutTargetRow(
                    rollout_id=rollout.id,
                    position=position,
                    canary=canary,
                    wave=wave,
                    environment_id=environment.id,
                    tenant=environment.tenant,
                    name=environment.name,
                    state=TargetState.SKIPPED if skip else TargetState.PENDING,
                    template_name=environment.template_name,
                    template_version=goal,
                    from_template_version=environment.template_version,
                    from_code_version=environment.code_version,
                    attempts=0,
                    reason=(
                        f"already on {environment.template_name}@{goal} and code "
                        f"{self.code_version}"
                        if skip
                        else None
                    ),
                    finished_at=rollout.created_at if skip else None,
                )
            )
        return targets

    # --- pause, resume, cancel ---

    def pause(self, principal: Principal, rollout_id: str) -> RolloutRow:
        rollout = self._locked(principal, rollout_id)
        self._require(rollout, RolloutState.RUNNING, "pause")
        return self._move(
            rollout, RolloutState.PAUSED, "rollout.paused", f"paused by {principal.key_id}"
        )

    def resume(self, principal: Principal, rollout_id: str) -> RolloutRow:
        rollout = self._locked(principal, rollout_id)
        self._require(rollout, RolloutState.PAUSED, "resume")
        return self._move(
            rollout, RolloutState.RUNNING, "rollout.resumed", f"resumed by {principal.key_id}"
        )

    def cancel(self, principal: Principal, rollout_id: str) -> RolloutRow:
        """Pending targets are skipped at once; a target whose operation has not started yet is
        cancelled by the next tick, and one already running finishes (its result counts)."""
        rollout = self._locked(principal, rollout_id)
        self._require(rollout, (RolloutState.RUNNING, RolloutState.PAUSED), "cancel")
        now = utcnow()
        reason = f"cancelled by {principal.key_id}"
        rollout.reason = reason
        for target in self.rollouts.targets(rollout.id):
            if target.state == TargetState.PENDING:
                target.state = TargetState.SKIPPED
                target.reason = "the rollout was cancelled before it started"
                target.finished_at = now
        return self._move(rollout, RolloutState.CANCELLING, "rollout.cancelling", reason)

    def _locked(self, principal: Principal, rollout_id: str) -> RolloutRow:
        self.get_visible(principal, rollout_id)
        rollout = self.rollouts.lock(rollout_id)
        assert rollout is not None  # rollouts are never deleted
        return rollout

    @staticmethod
    def _require(
        rollout: RolloutRow, states: RolloutState | tuple[RolloutState, ...], action: str
    ) -> None:
        allowed = states if isinstance(states, tuple) else (states,)
        if rollout.state not in allowed:
            raise ConflictError(f"cannot {action} rollout {rollout.id} in state {rollout.state}")

    def _move(
        self, rollout: RolloutRow, state: RolloutState, event: str, message: str
    ) -> RolloutRow:
        rollout.state = state
        rollout.updated_at = utcnow()
        self.session.flush()
        self.rollouts.append_event(rollout.id, event, message, event_data(rollout))
        log.info("rollouts.state_changed", rollout_id=rollout.id, state=state)
        return rollout


def _single_tenant(environments: Sequence[EnvironmentRow]) -> str | None:
    """The tenant of an admin's rollout whose targets are all one tenant's: its keys see it."""
    tenants = {row.tenant for row in environments}
    return tenants.pop() if len(tenants) == 1 else None
