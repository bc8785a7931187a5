"""An environment's `health` as the API shows it (docs/architecture.md §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from provisioner.monitoring.models import EnvironmentHealthRow
from provisioner.schemas import ApiModel

HealthStatus = Literal["OK", "ALARM", "UNKNOWN"]


class AlarmPublic(ApiModel):
    name: str
    state: str = Field(description="CloudWatch's state: OK, ALARM or INSUFFICIENT_DATA")


class DlqDepths(ApiModel):
    ingest: int
    validator: int
    processor: int
    aggregator: int


class HealthPublic(ApiModel):
    status: HealthStatus = Field(
        description="ALARM if any alarm is in ALARM, OK if all are OK, UNKNOWN otherwise "
        "(not sampled yet, or an alarm without data)"
    )
    alarms: list[AlarmPublic]
    dlq_depths: DlqDepths | None
    completed_last_hour: int | None
    failed_last_hour: int | None
    checked_at: datetime | None = Field(description="When the sample was taken")


UNSAMPLED: HealthPublic = HealthPublic(
    status="UNKNOWN",
    alarms=[],
    dlq_depths=None,
    completed_last_hour=None,
    failed_last_hour=None,
    checked_at=None,
)


def health_public(row: EnvironmentHealthRow | None) -> HealthPublic:
    if row is None:
        return UNSAMPLED
    return HealthPublic.model_validate({**row.health, "checkedAt": row.checked_at})
