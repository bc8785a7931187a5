"""The scheduler: a loop in the app's lifespan that runs a tick every `schedule_interval_s`,
and one that samples environments' health every `health_interval_s`.

Each tick is one registry transaction (`provisioner.schedules.service.run_tick`); each health
sample reads the data plane, then records per environment (`provisioner.monitoring.service`).
"Now" comes from an injectable clock, so tests can move time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.monitoring.service import HealthSampler
from provisioner.schedules.service import TickResult, run_tick

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        engine: str,
        wake_runner: Callable[[], None],
        clock: Clock | None = None,
        code_version: str = "",
        health: HealthSampler | None = None,
    ) -> None:
        self.settings = settings
        self.health = health
        self.database = database
        self.engine = engine
        self.wake_runner = wake_runner
        self.clock = clock or utcnow
        # The fleet samples count outdated environments against it.
        self.code_version = code_version
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    def tick(self, now: datetime | None = None) -> TickResult:
        """Blocking: one round of due work."""
        with self.database.session() as session:
            result = run_tick(
                session, self.settings, self.engine, now or self.clock(), self.code_version
            )
        if result.queued:
            self.wake_runner()
        return result

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(
            self._loop(self.tick, self.settings.schedule_interval_s, "schedules.tick_failed"),
            name="scheduler",
        )
        if self.health is not None:
            health = self.health
            self._health_task = asyncio.create_task(
                self._loop(
                    lambda: health.sample(self.clock()),
                    self.settings.health_interval_s,
                    "schedules.health_sample_failed",
                ),
                name="health-sampler",
            )

    async def stop(self) -> None:
        if self._stopping is not None and self._task is not None:
            # The loops end by themselves: work already in its thread finishes first.
            self._stopping.set()
            await self._task
            if self._health_task is not None:
                await self._health_task

    async def _loop(self, work: Callable[[], object], interval_s: float, failed: str) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(work)
            except Exception:  # the next round retries; the failure is logged with its cause
                log.exception(failed)
            try:
                await asyncio.wait_for(self._stopping.wait(), interval_s)
            except TimeoutError:
                pass
