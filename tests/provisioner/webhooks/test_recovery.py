"""The outbox survives a crash of the service, and replicas sharing a registry send each
delivery once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from provisioner.app import create_app
from provisioner.db import Database, utcnow
from provisioner.webhooks.dispatcher import WebhookDispatcher
from provisioner.webhooks.models import WebhookRow
from provisioner.webhooks.repository import WebhookRepository
from provisioner.webhooks.service import enqueue_event
from provisioner.webhooks.signing import verify
from tests.e2e.service import free_port
from tests.factories import ADMIN_KEY, auth, environment_body
from tests.provisioner.conftest import SCRIPTED_ENGINE
from tests.provisioner.webhooks.conftest import hook_settings, wait_for_deliveries
from tests.provisioner.webhooks.receiver import running_receiver


def _wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.1)


def test_a_service_killed_between_the_event_and_its_delivery_delivers_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    environment = {
        **os.environ,
        "PROVISIONER_DATA_DIR": str(data_dir),
        "PROVISIONER_DATABASE_URL": database_url,
        "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
        "PROVISIONER_HEARTBEAT_INTERVAL_S": "0.2",
        "PROVISIONER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        # The dispatcher looks once, at start (nothing is pending then), and not again before
        # the kill: the event is in the outbox, not yet delivered, when the service dies.
        "PROVISIONER_WEBHOOK_POLL_INTERVAL_S": "3600",
    }
    with running_receiver() as receiver:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.provisioner.scripted_app:create",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(base)
            webhook = httpx.post(
                f"{base}/admin/webhooks",
                json={"url": receiver.url(), "events": ["operation.succeeded"]},
                headers=auth(),
            ).json()
            operation = httpx.post(
                f"{base}/environments", json=environment_body(), headers=auth()
            ).json()
            deadline = time.monotonic() + 30
            while True:
                state = httpx.get(f"{base}/operations/{operation['id']}", headers=auth()).json()
                if state["state"] == "SUCCEEDED":
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.05)
            [pending] = httpx.get(
                f"{base}/admin/webhooks/{webhook['id']}/deliveries", headers=auth()
            ).json()["items"]
            assert pending["state"] == "PENDING"
            assert pending["attempts"] == 0
            server.send_signal(signal.SIGKILL)  # a crash: no shutdown, no clean-up
            server.wait(timeout=10)
        finally:
            if server.poll() is None:
                server.kill()
        assert receiver.snapshot() == []

        settings = hook_settings(tmp_path, database_url)
        with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
            [request] = receiver.wait_for(1)
            [delivered] = wait_for_deliveries(client, webhook["id"])
    assert request.headers["x-provisioner-delivery"] == pending["id"] == delivered["id"]
    assert request.json["data"]["operationId"] == operation["id"]
    assert verify(webhook["secret"], request.body, request.headers["x-provisioner-signature"])
    assert delivered["attempts"] == 1


def test_two_replicas_deliver_each_event_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both replicas poll the one registry every 50 ms; each delivery reaches the healthy
    receiver exactly once, and each webhook's in order."""
    senders: list[str] = []
    record = WebhookDispatcher._record

    def recording(self: WebhookDispatcher, *args: Any) -> None:
        senders.append(self.owner)
        record(self, *args)

    monkeypatch.setattr(WebhookDispatcher, "_record", recording)
    first = hook_settings(tmp_path / "a", database_url)
    second = hook_settings(tmp_path / "b", database_url)
    with (
        running_receiver() as receiver,
        TestClient(create_app(first, engine_reference=SCRIPTED_ENGINE)) as one,
        TestClient(create_app(second, engine_reference=SCRIPTED_ENGINE)) as two,
    ):
        webhooks = [
            one.post(
                "/admin/webhooks",
                json={"url": receiver.url(f"/{index}"), "events": ["files.failed"]},
                headers=auth(),
            ).json()["id"]
            for index in range(3)
        ]
        database: Database = two.app.state.database  # type: ignore[attr-defined]
        for number in range(20):
            with database.session() as session:
                enqueue_event(session, "files.failed", "acme", {"n": number})
            time.sleep(0.01)
        requests = receiver.wait_for(60, timeout=60)
        for webhook_id in webhooks:
            logged = wait_for_deliveries(one, webhook_id, count=20)
            assert all(d["attempts"] == 1 for d in logged), logged
        time.sleep(0.5)  # nothing more arrives
        requests = receiver.snapshot()
    ids = Counter(r.headers["x-provisioner-delivery"] for r in requests)
    assert len(ids) == 60
    assert set(ids.values()) == {1}
    for index in range(3):
        numbers = [r.json["data"]["n"] for r in requests if r.path == f"/{index}"]
        assert numbers == list(range(20))
    # Both replicas took part (so their claims really competed).
    assert len(senders) == 60
    assert len(set(senders)) == 2, Counter(senders)


def test_of_two_concurrent_claims_exactly_one_wins(tmp_path: Path, database_url: str) -> None:
    database = Database(database_url)
    database.create_schema()
    try:
        with database.session() as session:
            session.add(
                WebhookRow(
                    id="w1",
                    url="http://127.0.0.1/",
                    events=["files.failed"],
                    secret="s" * 20,
                    tenant=None,
                    created_by="test",
                )
            )
            session.flush()
            [delivery] = enqueue_event(session, "files.failed", None, {})
        for _round in range(10):
            barrier = threading.Barrier(2)
            wins: list[bool] = []

            def claim(owner: str, barrier: threading.Barrier, wins: list[bool]) -> None:
                with database.session() as session:
                    barrier.wait()
                    now = utcnow()
                    wins.append(
                        WebhookRepository(session).claim(
                            delivery.id, owner, now, now + timedelta(seconds=30)
                        )
                    )

            threads = [
                threading.Thread(target=claim, args=(f"r{n}", barrier, wins)) for n in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(wins) == [False, True]
            with database.session() as session:  # released by its holder for the next round
                repository = WebhookRepository(session)
                assert repository.settle_attempt(delivery.id, "r0") or repository.settle_attempt(
                    delivery.id, "r1"
                )
    finally:
        database.dispose()
