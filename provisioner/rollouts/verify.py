"""Verified waves (`verify: true`, docs/architecture.md §7): after a target's operation
succeeded, its data-plane smoke test decides whether the target succeeded.

Each replica claims VERIFYING targets by a compare-and-set of `verify_claimed_at` and runs
their verifier in a thread of its own; it renews its claims while they run, so a claim that
stops being renewed (its replica died) is taken over by another replica, and a verification
cut short by a shutdown is released and run again after the restart. The result is recorded
only while the claim is still this replica's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import update

from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.engines.base import EngineHost
from provisioner.environments.repository import EnvironmentRepository
from provisioner.errors import ProvisionerError
from provisioner.files.canary import run_canary
from provisioner.files.service import EnvironmentDataPlane
from provisioner.rollouts.models import RolloutTargetRow, TargetState
from provisioner.rollouts.repository import RolloutRepository
from provisioner.rollouts.schemas import Strategy
from provisioner.rollouts.waves import VerificationOutcome, record_verification

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class VerifyTarget:
    """What a verifier needs of the environment (no ORM row crosses into its thread)."""

    tenant: str
    name: str
    region: str
    outputs: dict[str, str]
    status_ttl_days: int


# Runs one smoke test within the timeout: returns the canary file's final status item, or
# raises `CanaryFailed` (any ProvisionerError counts as a failure). `cancel` is set when the
# service shuts down.
Verifier = Callable[[VerifyTarget, float, threading.Event], dict[str, Any]]


def data_plane_verifier(host: EngineHost) -> Verifier:
    """The real smoke test: a canary file through the environment's data plane
    (`provisioner.files.canary`), the same on both engines."""

    def verify(target: VerifyTarget, timeout_s: float, cancel: threading.Event) -> dict[str, Any]:
        access = host.data_plane(target.tenant, target.region)
        plane = EnvironmentDataPlane(access, target.outputs, target.status_ttl_days)
        return run_canary(plane, timeout_s, cancel)

    return verify


@dataclass(frozen=True)
class _Job:
    rollout_id: str
    target_id: int
    target: VerifyTarget
    timeout_s: float


class Verifications:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        verifier: Verifier,
        owner: str,
        on_recorded: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.database = database
        self.verifier = verifier
        self.owner = owner
        self.on_recorded = on_recorded
        self._stopping = threading.Event()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=settings.rollout_max_verifications, thread_name_prefix="rollout-verify"
        )

    def claim_and_start(self) -> int:
        """Claim the targets waiting for a verifier (also those of dead replicas) and start them."""
        if self._stopping.is_set():
            return 0
        with self._lock:
            free = self.settings.rollout_max_verifications - len(self._running)
        if free <= 0:
            return 0
        now = utcnow()
        stale = now - timedelta(seconds=self.settings.heartbeat_timeout_s)
        jobs: list[_Job] = []
        with self.database.session() as session:
            rollouts = RolloutRepository(session)
            environments = EnvironmentRepository(session)
            for target in rollouts.unclaimed_verifications(stale)[:free]:
                rollout = rollouts.get(target.rollout_id)
                environment = environments.get_by_id(target.environment_id)
                if rollout is None or environment is None:
                    continue
                if not rollouts.claim_verification(
                    target.id, target.verify_claimed_at, self.owner, now
                ):
                    continue  # another replica claimed it first
                strategy = Strategy.model_validate(rollout.strategy)
                jobs.append(
                    _Job(
                        rollout.id,
                        target.id,
                        VerifyTarget(
                            tenant=environment.tenant,
                            name=environment.name,
                            region=environment.region,
                            outputs=dict(environment.outputs or {}),
                            status_ttl_days=int(environment.config.get("status_ttl_days", 30)),
                        ),
                        strategy.verify_timeout_seconds,
                    )
                )
        for job in jobs:
            with self._lock:
                self._running.add(job.target_id)
            self._pool.submit(self._run, job)
        return len(jobs)

    def renew(self) -> None:
        """Keep this replica's claims fresh while their verifications run."""
        with self._lock:
            running = list(self._running)
        if not running:
            return
        with self.database.session() as session:
            session.execute(
                update(RolloutTargetRow)
                .where(
                    RolloutTargetRow.id.in_(running),
                    RolloutTargetRow.verify_claimed_by == self.owner,
                    RolloutTargetRow.state == TargetState.VERIFYING,
                )
                .values(verify_claimed_at=utcnow())
            )

    def stop(self) -> None:
        """Cut running verifications short and release their claims (run again after a restart)."""
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            running = list(self._running)
        if running:
            with self.database.session() as session:
                session.execute(
                    update(RolloutTargetRow)
                    .where(
                        RolloutTargetRow.id.in_(running),
                        RolloutTargetRow.verify_claimed_by == self.owner,
                    )
                    .values(verify_claimed_by=None, verify_claimed_at=None)
                )

    def _run(self, job: _Job) -> None:
        structlog.contextvars.bind_contextvars(rollout_id=job.rollout_id)
        outcome: VerificationOutcome
        try:
            item = self.verifier(job.target, job.timeout_s, self._stopping)
            outcome = (TargetState.SUCCEEDED, None, item)
        except ProvisionerError as error:
            outcome = (TargetState.FAILED, f"verification failed: {error.detail}", None)
        except Exception as error:  # a broken verifier fails the target, with its cause logged
            log.exception("rollouts.verifier_failed")
            outcome = (
                TargetState.FAILED,
                f"verification failed: the verifier raised {type(error).__name__}",
                None,
            )
        try:
            if self._stopping.is_set():
                return  # cut short by the shutdown: stop() releases the claim
            with self.database.session() as session:
                recorded = record_verification(
                    session, job.rollout_id, job.target_id, self.owner, outcome
                )
            log.info(
                "rollouts.target_verified",
                tenant=job.target.tenant,
                name=job.target.name,
                state=outcome[0],
                recorded=recorded,
            )
            if recorded:
                self.on_recorded(job.rollout_id)
        finally:
            if not self._stopping.is_set():
                with self._lock:
                    self._running.discard(job.target_id)
