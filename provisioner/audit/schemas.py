"""Audit-log and summary responses, and rows → responses."""

from __future__ import annotations

from datetime import datetime

from provisioner.audit.models import AuditRow
from provisioner.schemas import ApiModel


class AuditEntry(ApiModel):
    id: int
    at: datetime
    actor: str
    scope: str | None
    tenant: str | None
    action: str
    target: str | None
    status_code: int
    result: str
    detail: str | None


class Summary(ApiModel):
    environments_by_state: dict[str, int]
    active_operations_by_kind: dict[str, int]
    operations_queued: int
    operations_running: int
    engine: str
    code_version: str


def audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry.model_validate(row, from_attributes=True)
