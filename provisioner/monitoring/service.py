"""The health sampler (docs/architecture.md §8): every `health_interval_s`, each replica reads
the data plane of every READY environment of its engine and records the sample in the
registry, where `GET /environments` serves it from; and it notifies what changed:

- `files.failed`, one event per failed file (per attempt), for files whose status item turned
  FAILED since the environment's watermark, oldest first, at most `health_max_failed_events`
  per sample (the rest follow in the next);
- `environment.alarm`, one event per alarm that went to ALARM since the previous sample.

A sample is recorded by a compare-and-set on the health row's version, in one transaction with
its events and the advanced watermark: two replicas sampling at once record and notify once,
and a restart resumes from the committed watermark, so nothing is sent twice (beyond the
outbox's at-least-once delivery) and nothing is lost. The watermark looks back
`FAILED_LOOKBACK` (status writes land out of order) and remembers what it notified within it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import select

from handlers.core.status_store import iso_now
from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.engines.base import EngineHost
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.environments.service import environment_config
from provisioner.errors import ProvisionerError
from provisioner.monitoring import probe
from provisioner.monitoring.repository import HealthRepository
from provisioner.webhooks.service import enqueue_event
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

FAILED_LOOKBACK: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class _Target:
    environment_id: str
    tenant: str
    name: str
    config: PipelineConfig
    outputs: Mapping[str, str]
    version: int | None
    watermark: str
    recent: Mapping[str, str]
    alarm_states: Mapping[str, str]


@dataclass
class SampleResult:
    recorded: list[str] = field(default_factory=list)  # environment ids
    skipped: list[str] = field(default_factory=list)  # another replica recorded first
    failed: list[str] = field(default_factory=list)  # the data plane could not be read
    files_failed: int = 0  # events enqueued
    alarms_raised: int = 0


class HealthSampler:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        host: EngineHost,
        engine: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.host = host
        self.engine = engine
        self.clock = clock or utcnow

    def sample(self, now: datetime | None = None) -> SampleResult:
        """Blocking: one sample of every READY environment (AWS is read outside any
        transaction; each environment's record is a short one of its own)."""
        now = now or self.clock()
        result = SampleResult()
        for target in self._targets():
            try:
                self.host.evaluate_alarms(target.config)
                reading = probe.read(
                    self.host.data_plane(target.tenant, target.config.region),
                    target.config,
                    target.outputs,
                    now,
                    iso_now(_parse(target.watermark) - FAILED_LOOKBACK),
                )
            except (ClientError, BotoCoreError, ProvisionerError, KeyError) as exc:
                # The previous sample stays, its checkedAt showing its age.
                log.warning(
                    "monitoring.sample_failed",
                    tenant=target.tenant,
                    name=target.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                result.failed.append(target.environment_id)
                continue
            self._record(target, reading, now, result)
        return result

    def _targets(self) -> list[_Target]:
        with self.database.session(readonly=True) as session:
            rows = session.scalars(
                select(EnvironmentRow).where(
                    EnvironmentRow.state == EnvironmentState.READY,
                    EnvironmentRow.engine == self.engine,
                )
            ).all()
            health = HealthRepository(session).by_environments(row.id for row in rows)
            targets = []
            for row in rows:
                if not (row.outputs or {}).get("statusTableName"):
                    continue
                sample = health.get(row.id)
                targets.append(
                    _Target(
                        environment_id=row.id,
                        tenant=row.tenant,
                        name=row.name,
                        config=environment_config(row),
                        outputs=dict(row.outputs),
                        version=sample.version if sample else None,
                        # Before the first sample: failures since the environment exists.
                        watermark=sample.failed_watermark if sample else iso_now(row.created_at),
                        recent=dict(sample.failed_recent or {}) if sample else {},
                        alarm_states={
                            alarm["name"]: alarm["state"] for alarm in sample.health["alarms"]
                        }
                        if sample
                        else {},
                    )
                )
            return targets

    def _record(
        self, target: _Target, reading: probe.Reading, now: datetime, result: SampleResult
    ) -> None:
        limit = self.settings.health_max_failed_events
        new = [failure for failure in reading.failures if failure.key not in target.recent]
        notified = new[:limit]
        watermark = max([target.watermark, *(f.updated_at for f in notified)])
        horizon = iso_now(_parse(watermark) - FAILED_LOOKBACK)
        recent = {
            key: updated
            for key, updated in (
                *target.recent.items(),
                *((f.key, f.updated_at) for f in notified),
            )
            if updated >= horizon
        }
        health = reading.health()
        raised = [
            alarm["name"]
            for alarm in health["alarms"]
            if alarm["state"] == "ALARM" and target.alarm_states.get(alarm["name"]) != "ALARM"
        ]
        with self.database.session() as session:
            values: dict[str, Any] = {
                "health": health,
                "checked_at": now,
                "failed_watermark": watermark,
                "failed_recent": recent,
            }
            if not HealthRepository(session).record(target.environment_id, target.version, values):
                session.rollback()
                result.skipped.append(target.environment_id)
                return
            for failure in notified:
                enqueue_event(session, "files.failed", target.tenant, _failed_data(target, failure))
            for alarm_name in raised:
                enqueue_event(
                    session,
                    "environment.alarm",
                    target.tenant,
                    {
                        "tenant": target.tenant,
                        "name": target.name,
                        "alarm": alarm_name,
                        "state": "ALARM",
                        "health": health,
                    },
                )
        result.recorded.append(target.environment_id)
        result.files_failed += len(notified)
        result.alarms_raised += len(raised)
        if notified or raised:
            log.info(
                "monitoring.notified",
                tenant=target.tenant,
                name=target.name,
                files_failed=len(notified),
                alarms=raised,
            )


def _failed_data(target: _Target, failure: probe.FailedFile) -> dict[str, Any]:
    return {
        "tenant": target.tenant,
        "name": target.name,
        "fileId": failure.file_id,
        "attempt": failure.attempt,
        "objectKey": failure.object_key,
        "stage": failure.stage,
        "error": dict(failure.error) if failure.error else None,
        "updatedAt": failure.updated_at,
    }


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))
