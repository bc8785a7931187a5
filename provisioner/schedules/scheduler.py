"""The scheduler: a loop in the app's lifespan that runs a tick every `schedule_interval_s`.

Each tick is one registry transaction (`provisioner.schedules.service.run_tick`); "now" comes
from an injectable clock, so tests can move time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from provisioner.config import Settings
from provisioner.db import Database, utcnow
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
    ) -> None:
        self.settings = settings
        self.database = database
        self.engine = engine
        self.wake_runner = wake_runner
        self.clock = clock or utcnow
        # The fleet samples count outdated environments against it.
        self.code_version = code_version
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

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
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._stopping is not None and self._task is not None:
            # The loop ends by itself: a tick already in its thread finishes first.
            self._stopping.set()
            await self._task

    async def _loop(self) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # the next tick retries; the failure is logged with its cause
                log.exception("schedules.tick_failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), self.settings.schedule_interval_s)
            except TimeoutError:
                pass
