"""Several replicas on one PostgreSQL registry (README: they may share it): three service
processes run 60 operations across 20 environments while one of them is killed.

Shows: every operation ends terminal; no environment ever has two RUNNING operations; the
global limit holds across replicas (sampled from the registry); the dead replica's operations
become INTERRUPTED within the heartbeat timeout, and their retries succeed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.factories import FINAL_STATES, auth, environment_body
from tests.provisioner.conftest import POSTGRES_URL
from tests.provisioner.processes import services

log = logging.getLogger(__name__)

ENVIRONMENTS = 20
KINDS = ("create", "refresh", "preview")  # 3 x 20 = 60 operations, in order per environment
LIMIT = 6  # PROVISIONER_MAX_CONCURRENT_OPERATIONS, shared by the replicas
HEARTBEAT_TIMEOUT_S = 2.0
# The scripted engine's duration: resources x delay per operation.
SCRIPT = {"resources": "3", "delay": "0.05"}

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not POSTGRES_URL,
        reason="PROVISIONER_TEST_DATABASE_URL is not set: replicas need a shared PostgreSQL",
    ),
]


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    assert POSTGRES_URL is not None
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


class Sampler(threading.Thread):
    """Reads the registry every few milliseconds: RUNNING operations overall, per environment,
    and when each operation was first seen INTERRUPTED."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.stop = threading.Event()
        self.samples = 0
        self.max_running = 0
        self.max_running_per_environment = 0
        self.interrupted_at: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            with self.engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT id, environment_id, state FROM operations")
                ).all()
            now = time.monotonic()
            running = [row for row in rows if row.state == "RUNNING"]
            per_environment = Counter(row.environment_id for row in running)
            self.samples += 1
            self.max_running = max(self.max_running, len(running))
            self.max_running_per_environment = max(
                self.max_running_per_environment, max(per_environment.values(), default=0)
            )
            for row in rows:
                if row.state == "INTERRUPTED":
                    self.interrupted_at.setdefault(row.id, now)
            time.sleep(0.02)
        self.engine.dispose()


def _start(client: httpx.Client, name: str, kind: str) -> str:
    if kind == "create":
        response = client.post("/environments", json=environment_body("acme", name, script=SCRIPT))
    else:
        response = client.post(f"/environments/acme/{name}/{kind}")
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["id"]
    return operation_id


def test_three_replicas_share_one_registry_and_survive_a_kill(
    tmp_path: Path, postgres_schema: str
) -> None:
    with services(
        tmp_path,
        postgres_schema,
        count=3,
        engine="pulumi",
        max_concurrent_operations=str(LIMIT),
        heartbeat_interval_s="0.2",
        heartbeat_timeout_s=str(HEARTBEAT_TIMEOUT_S),
        cancel_grace_s="3",
    ) as replicas:
        clients = [
            httpx.Client(base_url=replica.base_url, headers=auth(), timeout=30)
            for replica in replicas
        ]
        sampler = Sampler(postgres_schema)
        sampler.start()
        started = time.monotonic()
        names = [f"env{index}" for index in range(ENVIRONMENTS)]
        next_kind = dict.fromkeys(names, 0)
        current: dict[str, str] = {}  # environment -> its latest operation
        states: dict[str, str] = {}
        kinds: dict[str, str] = {}
        retried: list[str] = []
        alive = [0, 1, 2]
        victim: int | None = None
        killed_at = 0.0
        dead_running: set[str] = set()
        turn = 0

        def client() -> httpx.Client:
            nonlocal turn
            turn += 1
            return clients[alive[turn % len(alive)]]

        for name in names:
            current[name] = _start(client(), name, "create")
            kinds[current[name]] = "create"
            next_kind[name] = 1
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, f"not finished: {Counter(states.values())}"
            listed = client().get("/operations", params={"limit": 500}).json()["items"]
            states.update({item["id"]: item["state"] for item in listed})
            if victim is None and sum(1 for s in states.values() if s == "SUCCEEDED") >= 15:
                # Kill the replica running the most operations right now, without warning.
                runners = Counter()
                with sampler.engine.connect() as connection:
                    for row in connection.execute(
                        text("SELECT id, runner_id FROM operations WHERE state = 'RUNNING'")
                    ):
                        runners[int(row.runner_id.split(":")[1])] += 1
                pid = runners.most_common(1)[0][0] if runners else replicas[0].process.pid
                victim = next(i for i, r in enumerate(replicas) if r.process.pid == pid)
                with sampler.engine.connect() as connection:
                    dead_running = {
                        row.id
                        for row in connection.execute(
                            text("SELECT id, runner_id FROM operations WHERE state = 'RUNNING'")
                        )
                        if row.runner_id.split(":")[1] == str(pid)
                    }
                replicas[victim].process.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                alive.remove(victim)
                continue
            busy = False
            for name in names:
                state = states.get(current[name], "QUEUED")
                if state not in FINAL_STATES:
                    busy = True
                    continue
                if state == "INTERRUPTED":  # retried through a live replica, as a user would
                    kind = kinds[current[name]]
                    retried.append(current[name])
                elif next_kind[name] < len(KINDS):
                    assert state == "SUCCEEDED", (name, state)
                    kind = KINDS[next_kind[name]]
                    next_kind[name] += 1
                else:
                    continue
                current[name] = _start(client(), name, kind)
                kinds[current[name]] = kind
                busy = True
            if not busy:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        time.sleep(0.2)
        sampler.stop.set()
        sampler.join()
        for each in clients:
            each.close()

    requested = len(kinds)
    final = Counter(states[operation] for operation in kinds)
    interrupted = [op for op in kinds if states[op] == "INTERRUPTED"]
    to_interrupted = [sampler.interrupted_at[op] - killed_at for op in interrupted]
    log.warning(
        "replicas: %d operations (%d planned + %d retries) in %.1f s; final %s; samples %d; "
        "max RUNNING %d (limit %d); max RUNNING per environment %d; killed replica ran %d; "
        "INTERRUPTED after %s s",
        requested, ENVIRONMENTS * len(KINDS), len(retried), elapsed, dict(final),
        sampler.samples, sampler.max_running, LIMIT, sampler.max_running_per_environment,
        len(dead_running), [round(t, 2) for t in sorted(to_interrupted)],
    )  # fmt: skip
    assert victim is not None
    assert requested == ENVIRONMENTS * len(KINDS) + len(retried)
    assert all(states[op] in FINAL_STATES for op in kinds)
    assert sampler.max_running <= LIMIT
    assert sampler.max_running_per_environment <= 1
    assert sampler.samples > 50
    # The killed replica's operations, and only those, were interrupted, and retried.
    assert dead_running
    assert set(interrupted) == dead_running
    assert set(retried) == dead_running
    assert max(to_interrupted) < HEARTBEAT_TIMEOUT_S + 2.0
    assert final["SUCCEEDED"] == ENVIRONMENTS * len(KINDS)
