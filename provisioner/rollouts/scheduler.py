"""The rollout scheduler: a loop in the app's lifespan that advances every active rollout each
`rollout_interval_s` (or sooner, when woken), and runs verifications.

Each rollout advances in a transaction of its own under its row lock; on PostgreSQL a rollout
that another replica is advancing is skipped (`SKIP LOCKED`) rather than waited for, so
replicas share the work and never change one rollout at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable

import structlog

from provisioner.config import Settings
from provisioner.db import Database
from provisioner.operations.events import OperationNotifier
from provisioner.rollouts.models import FINAL_ROLLOUT_STATES
from provisioner.rollouts.repository import RolloutRepository
from provisioner.rollouts.verify import Verifications, Verifier
from provisioner.rollouts.waves import Step, WaveContext, Waves

log = structlog.get_logger(__name__)


def stream_key(rollout_id: str) -> str:
    """The notifier key that wakes a rollout's event streams."""
    return f"rollout:{rollout_id}"


class RolloutScheduler:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        engine: str,
        wake_runner: Callable[[], None],
        notifier: OperationNotifier,
        verifier: Verifier,
    ) -> None:
        self.settings = settings
        self.database = database
        self.context = WaveContext(settings, engine)
        self.wake_runner = wake_runner
        self.notifier = notifier
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.verifications = Verifications(settings, database, verifier, self.owner, self._recorded)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> dict[str, Step]:
        """Blocking: advance every active rollout once; claim due verifications."""
        with self.database.session(readonly=True) as session:
            active = RolloutRepository(session).active_ids()
        steps: dict[str, Step] = {}
        for rollout_id in active:
            try:
                with self.database.session() as session:
                    rollout = RolloutRepository(session).lock(rollout_id, skip_locked=True)
                    if rollout is None or rollout.state in FINAL_ROLLOUT_STATES:
                        continue  # another replica is advancing it, or it just ended
                    steps[rollout_id] = Waves(session, rollout, self.context).advance()
            except Exception:  # one broken rollout does not stop the others; retried next tick
                log.exception("rollouts.advance_failed", rollout_id=rollout_id)
        if any(step.started for step in steps.values()):
            self.wake_runner()
        for rollout_id, step in steps.items():
            if step.changed:
                self.notifier.notify(stream_key(rollout_id))
        self.verifications.renew()
        self.verifications.claim_and_start()
        return steps

    def wake(self) -> None:
        """Thread-safe: advance now rather than at the next interval."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _recorded(self, rollout_id: str) -> None:
        self.notifier.notify(stream_key(rollout_id))
        self.wake()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="rollout-scheduler")

    async def stop(self) -> None:
        if self._stopping is not None and self._task is not None and self._wake is not None:
            self._stopping.set()
            self._wake.set()
            await self._task  # a tick already in its thread finishes first
        await asyncio.to_thread(self.verifications.stop)

    async def _run(self) -> None:
        assert self._stopping is not None
        assert self._wake is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # the next tick retries; the failure is logged with its cause
                log.exception("rollouts.tick_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.rollout_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
