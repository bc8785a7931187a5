"""Deliveries to a real HTTP receiver on loopback: signed, retried with backoff, in order,
scoped to tenants, redeliverable, and checked against the allow-list at delivery time."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.webhooks import allowlist
from provisioner.webhooks.models import DeliveryRow
from provisioner.webhooks.service import enqueue_event
from provisioner.webhooks.signing import verify
from tests.factories import auth, create_api_key, environment_body, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings
from tests.provisioner.webhooks.conftest import (
    deliveries,
    hook_settings,
    subscribe,
    wait_for_deliveries,
)
from tests.provisioner.webhooks.receiver import Receiver, running_receiver


def _emit(client: TestClient, count: int, tenant: str = "acme") -> None:
    """`count` events straight into the outbox, each in its own transaction."""
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    for index in range(count):
        with database.session() as session:
            enqueue_event(session, "files.failed", tenant, {"tenant": tenant, "n": index})


def test_an_operations_outcome_is_delivered_signed(client: TestClient, receiver: Receiver) -> None:
    webhook = subscribe(client, receiver.url())
    operation = client.post("/environments", json=environment_body(), headers=auth()).json()
    assert wait_for_operation(client, operation["id"])["state"] == "SUCCEEDED"

    [request] = receiver.wait_for(1)
    body = request.json
    assert set(body) == {"id", "type", "at", "data"}
    assert body["type"] == "operation.succeeded"
    assert body["data"]["operationId"] == operation["id"]
    assert (
        body["data"].items() >= {"kind": "create", "state": "SUCCEEDED", "tenant": "acme"}.items()
    )
    assert request.headers["x-provisioner-event"] == "operation.succeeded"
    assert request.headers["x-provisioner-delivery"] == body["id"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    signature = request.headers["x-provisioner-signature"]
    assert signature.startswith("sha256=")
    assert verify(webhook["secret"], request.body, signature)
    assert not verify("some-other-secret-value", request.body, signature)

    [logged] = wait_for_deliveries(client, webhook["id"])
    assert (
        logged.items() >= {"id": body["id"], "type": "operation.succeeded", "attempts": 1}.items()
    )
    assert logged["lastStatus"] == 200
    assert logged["deliveredAt"] is not None
    assert logged["nextAttemptAt"] is None


def test_a_failed_operation_sends_operation_failed_only_to_subscribers(
    client: TestClient, receiver: Receiver
) -> None:
    failed_only = subscribe(client, receiver.url("/failed"), ["operation.failed"])
    subscribe(client, receiver.url("/succeeded"), ["operation.succeeded"])
    body = environment_body(script={"fail-at": "2"})
    operation = client.post("/environments", json=body, headers=auth()).json()
    assert wait_for_operation(client, operation["id"])["state"] == "FAILED"
    [request] = receiver.wait_for(1)
    assert request.path == "/failed"
    assert request.json["data"]["error"]["message"] == "resource-2 failed: scripted failure"
    wait_for_deliveries(client, failed_only["id"])
    time.sleep(0.3)
    assert len(receiver.snapshot()) == 1


def test_500_twice_then_200_delivers_the_same_id_three_times(client: TestClient) -> None:
    with running_receiver([500, 500]) as receiver:
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 1)
        requests = receiver.wait_for(3)
        [logged] = wait_for_deliveries(client, webhook["id"])
    ids = {r.headers["x-provisioner-delivery"] for r in requests}
    assert ids == {logged["id"]}
    assert {r.body for r in requests} == {requests[0].body}  # the very same body each time
    assert logged["attempts"] == 3
    assert logged["lastStatus"] == 200
    assert logged["state"] == "DELIVERED"


def test_order_holds_per_webhook_across_retries(client: TestClient) -> None:
    # The first delivery fails three times: the later ones wait behind it.
    with running_receiver([503, 500, 502]) as receiver:
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 6)
        requests = receiver.wait_for(9)
        wait_for_deliveries(client, webhook["id"], count=6)
    numbers = [r.json["data"]["n"] for r in requests]
    assert numbers == [0, 0, 0, 0, 1, 2, 3, 4, 5]


def test_a_delivery_fails_after_max_attempts_and_the_next_one_goes(
    tmp_path: Path, database_url: str
) -> None:

    settings = hook_settings(tmp_path, database_url, webhook_max_attempts=3)
    with (
        running_receiver([500, 500, 500]) as receiver,
        TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client,
    ):
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 2)
        receiver.wait_for(4)
        items = wait_for_deliveries(client, webhook["id"], count=1)
        later, first = items
        wait_for_deliveries(client, webhook["id"], count=1, state="FAILED")
        items = deliveries(client, webhook["id"])
    failed = next(d for d in items if d["state"] == "FAILED")
    assert failed.items() >= {"attempts": 3, "lastStatus": 500, "lastError": "HTTP 500"}.items()
    assert failed["nextAttemptAt"] is None
    assert failed["deliveredAt"] is None
    delivered = next(d for d in items if d["state"] == "DELIVERED")
    assert delivered["createdAt"] >= failed["createdAt"]
    assert (first["id"], later["id"]) == (failed["id"], delivered["id"])


def test_backoff_doubles_between_attempts(client: TestClient) -> None:
    with running_receiver([500, 500, 500]) as receiver:
        subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 1)
        # When each attempt arrived, not when this thread saw it (late under load).
        stamps = [request.at for request in receiver.wait_for(4)]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # 0.1 s, 0.2 s, 0.4 s (the test settings), each plus up to one poll interval.
    assert gaps[0] >= 0.09, gaps
    assert gaps[1] >= 0.19, gaps
    assert gaps[2] >= 0.39, gaps
    assert gaps[2] < 2.0, gaps


def test_tenant_webhooks_get_only_their_tenants_events(client: TestClient) -> None:
    acme_key = create_api_key(client, "tenant:acme")
    with running_receiver() as receiver:
        acme = subscribe(client, receiver.url("/acme"), ["files.failed"], key=acme_key)
        everyone = subscribe(client, receiver.url("/all"), ["files.failed"])
        _emit(client, 1, tenant="globex")
        _emit(client, 1, tenant="acme")
        wait_for_deliveries(client, everyone["id"], count=2)
        wait_for_deliveries(client, acme["id"], count=1)
        requests = receiver.wait_for(3)
    by_path = sorted((r.path, r.json["data"]["tenant"]) for r in requests)
    assert by_path == [("/acme", "acme"), ("/all", "acme"), ("/all", "globex")]
    tenant_log = deliveries(client, acme["id"], key=acme_key)
    assert [d["type"] for d in tenant_log] == ["files.failed"]


def test_redeliver_sends_the_same_delivery_again(client: TestClient, receiver: Receiver) -> None:
    webhook = subscribe(client, receiver.url(), ["files.failed"])
    _emit(client, 1)
    [first] = receiver.wait_for(1)
    [logged] = wait_for_deliveries(client, webhook["id"])
    response = client.post(
        f"/admin/webhooks/{webhook['id']}/deliveries/{logged['id']}/redeliver", headers=auth()
    )
    assert response.status_code == 202, response.text
    assert (
        response.json().items() >= {"id": logged["id"], "state": "PENDING", "attempts": 0}.items()
    )
    second = receiver.wait_for(2)[1]
    assert second.headers["x-provisioner-delivery"] == logged["id"]
    assert second.body == first.body
    assert verify(webhook["secret"], second.body, second.headers["x-provisioner-signature"])
    [again] = wait_for_deliveries(client, webhook["id"])
    assert again.items() >= {"attempts": 1, "lastStatus": 200, "state": "DELIVERED"}.items()
    audit = client.get("/admin/audit", headers=auth()).json()["items"]
    assert any(e["action"].endswith("/redeliver") and e["target"] == logged["id"] for e in audit)
    assert webhook["secret"] not in json.dumps(audit)


def test_redirects_are_not_followed(client: TestClient) -> None:
    with running_receiver() as target, running_receiver([302, 302]) as receiver:
        receiver.redirect_to = target.url("/elsewhere")
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 1)
        receiver.wait_for(3)
        [logged] = wait_for_deliveries(client, webhook["id"])
        assert target.snapshot() == []
    assert logged["attempts"] == 3


def test_the_address_is_checked_again_at_delivery_time(
    client: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that passed at subscription and later resolves to a refused
    address is not called; the attempt fails with the reason, and is retried."""
    resolved = {"hooks.example.com": ["93.184.215.14"]}
    monkeypatch.setattr(allowlist, "resolve", lambda host, _port: resolved[host])
    webhook = subscribe(client, f"http://hooks.example.com:{receiver.port}/", ["files.failed"])
    resolved["hooks.example.com"] = ["10.0.0.1"]
    _emit(client, 1)
    deadline = time.monotonic() + 10
    while True:
        [logged] = deliveries(client, webhook["id"])
        if logged["attempts"] >= 2:
            break
        assert time.monotonic() < deadline, logged
        time.sleep(0.05)
    assert logged["state"] == "PENDING"
    assert logged["lastStatus"] is None
    assert "10.0.0.1 is not a public address" in logged["lastError"]
    assert receiver.snapshot() == []
    # It resolves to the (listed) receiver now: delivered, to the checked address, with the
    # name in the Host header.
    resolved["hooks.example.com"] = ["127.0.0.1"]
    [request] = receiver.wait_for(1)
    assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
    wait_for_deliveries(client, webhook["id"])


def test_a_deleted_webhook_gets_nothing_more(client: TestClient) -> None:
    with running_receiver([500] * 100) as receiver:
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 1)
        receiver.wait_for(1)
        assert client.delete(f"/admin/webhooks/{webhook['id']}", headers=auth()).status_code == 204
        time.sleep(0.3)
        seen = len(receiver.snapshot())
        time.sleep(1.0)
        assert len(receiver.snapshot()) == seen


@pytest.mark.slow
def test_with_the_default_schedule_the_first_retry_comes_5_s_later(
    tmp_path: Path, database_url: str
) -> None:

    # Only the allow-list differs from the defaults (5 s first retry, 1 s poll interval).
    settings = make_settings(tmp_path / "data", database_url, webhook_allowed_hosts="127.0.0.1")
    with (
        running_receiver([500]) as receiver,
        TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client,
    ):
        webhook = subscribe(client, receiver.url(), ["files.failed"])
        _emit(client, 1)
        receiver.wait_for(1, timeout=5)
        failed_at = time.monotonic()
        receiver.wait_for(2, timeout=8)
        gap = time.monotonic() - failed_at
        [logged] = wait_for_deliveries(client, webhook["id"])
    assert 4.8 <= gap <= 5.5, gap
    assert logged["attempts"] == 2


def test_the_secret_never_reaches_a_log_line(
    settings: Settings,
    receiver: Receiver,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "a-receivers-own-secret-9876"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        webhook = subscribe(client, receiver.url(), ["files.failed"], secret=secret)
        _emit(client, 1)
        receiver.wait_for(1)
        wait_for_deliveries(client, webhook["id"])
    captured = capfd.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text])
    assert "webhooks.delivered" in everything  # the logs were captured
    assert secret not in everything


def test_a_lease_left_by_a_dead_replica_expires_and_the_delivery_goes(
    client: TestClient, receiver: Receiver
) -> None:
    webhook = subscribe(client, receiver.url(), ["files.failed"])
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        [delivery] = enqueue_event(session, "files.failed", "acme", {"n": 0})
        # As if another replica had claimed it and died mid-send.
        session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery.id)
            .values(lease_owner="dead", lease_until=utcnow() + timedelta(seconds=1), attempts=1)
        )
    time.sleep(0.6)
    assert receiver.snapshot() == []  # the lease still holds
    [request] = receiver.wait_for(1)
    assert request.headers["x-provisioner-delivery"] == delivery.id
    [logged] = wait_for_deliveries(client, webhook["id"])
    assert logged["attempts"] == 2
