"""The `/rollouts` API: bad input (422 naming the field), tenant isolation, listing, the SSE
stream (complete, resumable, ended by a revoked key), webhooks, rolloutId on operations."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from provisioner.config import Settings
from tests.e2e.service import serve
from tests.factories import auth, create_api_key, sse_events
from tests.provisioner.rollouts.conftest import (
    build_app,
    publish,
    ready,
    start,
    wait_rollout,
)
from tests.provisioner.webhooks.receiver import running_receiver


def _two_tenants(client: TestClient) -> None:
    publish(client, "gold", {"memory_mb": 512})
    for tenant in ("acme", "beta"):
        for name in ("dev", "prod"):
            ready(client, tenant, name, template="gold", tags={"Squad": tenant})
    publish(client, "gold", {"memory_mb": 1024})


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "selector"]),
        ({"selector": {}}, ["body", "selector"]),
        ({"selector": {"outdated": None}}, ["body", "selector"]),
        ({"selector": {"tenants": ["Not-A-Tenant"]}}, ["body", "selector", "tenants"]),
        ({"selector": {"template": "gold@0"}}, ["body", "selector", "template"]),
        ({"selector": {"template": "nosuch"}}, ["body", "selector", "template"]),
        ({"selector": {"environments": ["acme"]}}, ["body", "selector", "environments"]),
        ({"selector": {"environments": ["acme/nosuch"]}}, ["body", "selector", "environments"]),
        ({"selector": {"tenants": ["nobody"]}}, ["body", "selector"]),
        ({"selector": {"tags": {"squad": "nobody"}}}, ["body", "selector"]),
        ({"selector": {"tenants": ["acme"]}, "action": "destroy"}, ["body", "action"]),
        ({"selector": {"tenants": ["acme"]}, "templateVersion": 0}, ["body", "templateVersion"]),
        ({"selector": {"tenants": ["acme"]}, "templateVersion": 9}, ["body", "templateVersion"]),
        (
            {"selector": {"tenants": ["acme"]}, "action": "refresh", "templateVersion": 2},
            ["body", "templateVersion"],
        ),
        (
            {"selector": {"tenants": ["acme"]}, "strategy": {"maxConcurrent": 0}},
            ["body", "strategy", "maxConcurrent"],
        ),
        (
            {"selector": {"tenants": ["acme"]}, "strategy": {"maxFailures": -1}},
            ["body", "strategy", "maxFailures"],
        ),
        (
            {"selector": {"tenants": ["acme"]}, "strategy": {"verifyTimeoutSeconds": 0}},
            ["body", "strategy", "verifyTimeoutSeconds"],
        ),
        (
            {"selector": {"tenants": ["acme"]}, "strategy": {"waves": 3}},
            ["body", "strategy", "waves"],
        ),
        ({"selector": {"tenants": ["acme"]}, "extra": 1}, ["body", "extra"]),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[str]
) -> None:
    _two_tenants(client)
    response = client.post("/rollouts", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert [error["loc"][: len(loc)] for error in response.json()["errors"]][0] == loc
    assert client.get("/rollouts", headers=auth()).json()["total"] == 0


def test_tenant_keys_roll_out_only_their_own_tenant(client: TestClient) -> None:
    _two_tenants(client)
    acme = create_api_key(client, "tenant:acme")
    beta = create_api_key(client, "tenant:beta")
    for selector in (
        {"tenants": ["beta"]},
        {"tenants": ["acme", "beta"]},
        {"environments": ["beta/dev"]},
    ):
        refused = client.post("/rollouts", json={"selector": selector}, headers=auth(acme))
        assert refused.status_code == 403, refused.text
    # A selector without tenants is limited to the key's own tenant.
    own = start(client, {"selector": {"template": "gold"}}, key=acme)
    assert own["tenant"] == "acme"
    assert {t["tenant"] for t in own["targets"]} == {"acme"}
    assert own["createdBy"] != "bootstrap-admin"
    # Another tenant's rollout answers like a missing one, everywhere.
    for method, path in (
        ("GET", f"/rollouts/{own['id']}"),
        ("GET", f"/rollouts/{own['id']}/events"),
        ("POST", f"/rollouts/{own['id']}/pause"),
        ("POST", f"/rollouts/{own['id']}/resume"),
        ("POST", f"/rollouts/{own['id']}/cancel"),
    ):
        assert client.request(method, path, headers=auth(beta)).status_code == 404, path
    assert client.get("/rollouts", headers=auth(beta)).json()["total"] == 0
    done = wait_rollout(client, own["id"], key=acme)
    assert done["state"] == "SUCCEEDED"
    # An admin's rollout over both tenants belongs to neither.
    fleet = start(client, {"selector": {"tags": {"squad": "beta"}, "outdated": True}})
    assert fleet["tenant"] == "beta"  # tag keys compare case-insensitively; only beta matched
    both = start(client, {"selector": {"tenants": ["acme", "beta"]}, "action": "refresh"})
    assert both["tenant"] is None
    assert client.get(f"/rollouts/{both['id']}", headers=auth(acme)).status_code == 404
    listed = client.get("/rollouts", headers=auth(acme)).json()
    assert [item["id"] for item in listed["items"]] == [own["id"]]
    everything = client.get("/rollouts", headers=auth()).json()
    assert everything["total"] == 3
    assert everything["items"][0]["id"] == both["id"]  # newest first
    wait_rollout(client, fleet["id"])
    wait_rollout(client, both["id"])
    only_done = client.get("/rollouts?state=SUCCEEDED", headers=auth()).json()
    assert only_done["total"] == 3
    assert only_done["items"][0]["counts"]["SUCCEEDED"] == 4


def test_every_change_is_audited(client: TestClient) -> None:
    ready(client, "acme", "dev")
    rollout = start(client, {"selector": {"tenants": ["acme"]}, "action": "refresh"})
    client.post(f"/rollouts/{rollout['id']}/pause", headers=auth())
    client.post(f"/rollouts/{rollout['id']}/cancel", headers=auth())
    audit = client.get("/admin/audit?limit=500", headers=auth()).json()["items"]
    actions = [
        (entry["action"], entry["target"], entry["tenant"])
        for entry in audit
        if "/rollouts" in entry["action"]
    ]
    assert ("POST /rollouts", rollout["id"], "acme") in actions
    assert ("POST /rollouts/{rollout_id}/cancel", rollout["id"], "acme") in actions
    assert any(action[0] == "POST /rollouts/{rollout_id}/pause" for action in actions)


def test_stream_is_complete_ordered_resumable_and_ends_with_the_rollout(
    client: TestClient,
) -> None:
    publish(client, "gold", {"memory_mb": 512})
    ready(client, "acme", "dev", template="gold")
    ready(client, "acme", "prod", template="gold")
    publish(client, "gold", {"memory_mb": 1024})
    rollout = start(client, {"selector": {"template": "gold"}, "strategy": {"maxConcurrent": 2}})
    with client.stream("GET", f"/rollouts/{rollout['id']}/events", headers=auth()) as stream:
        assert stream.status_code == 200
        events = list(sse_events(stream.iter_lines()))
    ids = [int(event["id"]) for event in events]
    assert ids == list(range(1, len(events) + 1))
    types = [event["event"] for event in events]
    assert types[0] == "rollout.created"
    assert types[-1] == "rollout.succeeded"
    assert types.count("target.started") == 2
    assert types.count("target.succeeded") == 2
    # The canary (dev) ends before the other target starts.
    started = [
        e["data"]["data"]["target"]["name"] for e in events if e["event"] == "target.started"
    ]
    assert started == ["dev", "prod"]
    assert types.index("target.succeeded") < len(types) - 1 - types[::-1].index("target.started")
    last = events[-1]["data"]
    assert last["rolloutId"] == rollout["id"]
    assert last["data"]["summary"]["state"] == "SUCCEEDED"
    assert last["data"]["summary"]["counts"]["SUCCEEDED"] == 2
    with client.stream(
        "GET", f"/rollouts/{rollout['id']}/events", headers={**auth(), "Last-Event-ID": "3"}
    ) as stream:
        resumed = list(sse_events(stream.iter_lines()))
    assert [int(event["id"]) for event in resumed] == ids[3:]
    assert client.get("/rollouts/nosuch/events", headers=auth()).status_code == 404


def test_stream_ends_when_its_key_is_revoked(tmp_path: Path, rollout_settings: Settings) -> None:
    with (
        serve(lambda _port: build_app(rollout_settings, None)) as url,
        httpx.Client(base_url=url, timeout=30, headers=auth()) as client,
    ):
        created = client.post(
            "/environments",
            json={"tenant": "acme", "name": "dev", "tags": {"script-gate": str(tmp_path / "gate")}},
        ).json()
        (tmp_path / "gate").touch()
        deadline = time.monotonic() + 30
        while client.get(f"/operations/{created['id']}").json()["state"] != "SUCCEEDED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (tmp_path / "gate").unlink()  # the rollout's update now waits forever
        key = client.post("/admin/api-keys", json={"scope": "tenant:acme"}).json()
        rollout = client.post(
            "/rollouts",
            json={"selector": {"tenants": ["acme"]}, "strategy": {"force": True}},
            headers=auth(key["key"]),
        ).json()
        received: list[dict[str, Any]] = []
        ended = threading.Event()

        def follow() -> None:
            path = f"/rollouts/{rollout['id']}/events"
            with client.stream("GET", path, headers=auth(key["key"])) as stream:
                received.extend(sse_events(stream.iter_lines()))
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        deadline = time.monotonic() + 10
        while not received:
            assert time.monotonic() < deadline, "the stream delivered nothing"
            time.sleep(0.05)
        revoked_at = time.monotonic()
        assert client.delete(f"/admin/api-keys/{key['id']}").status_code == 200
        assert ended.wait(8), "the stream outlived its key"
        assert time.monotonic() - revoked_at < 2 + 2  # 2 s, plus a loaded machine's slack
        # The rollout goes on: its update still runs for the admin.
        assert client.get(f"/rollouts/{rollout['id']}").json()["state"] == "RUNNING"
        client.post(f"/rollouts/{rollout['id']}/cancel")
        (tmp_path / "gate").touch()


def test_rollout_webhooks_go_out_with_the_end(
    tmp_path: Path, database_url: str, rollout_settings: Settings
) -> None:
    settings = rollout_settings.model_copy(
        update={
            "webhook_allowed_hosts": "127.0.0.1",
            "webhook_poll_interval_s": 0.05,
            "webhook_retry_initial_s": 0.1,
        }
    )
    with running_receiver() as receiver, TestClient(build_app(settings, None)) as client:
        hook = client.post(
            "/admin/webhooks",
            json={"url": receiver.url(), "events": ["rollout.succeeded", "rollout.halted"]},
            headers=auth(),
        )
        assert hook.status_code == 201, hook.text
        fail = tmp_path / "fail"
        ready(client, "acme", "good")
        ready(client, "acme", "bad", tags={"script-fail-if": str(fail)})
        fail.touch()
        good = wait_rollout(
            client,
            start(client, {"selector": {"environments": ["acme/good"]}, "action": "refresh"})["id"],
        )
        bad = wait_rollout(
            client,
            start(client, {"selector": {"environments": ["acme/bad"]}, "action": "refresh"})["id"],
        )
        assert (good["state"], bad["state"]) == ("SUCCEEDED", "HALTED")
        received = receiver.wait_for(2)
    bodies = sorted((r.json for r in received), key=lambda body: str(body["type"]))
    assert [body["type"] for body in bodies] == ["rollout.halted", "rollout.succeeded"]
    halted, succeeded = (body["data"] for body in bodies)
    assert (halted["id"], halted["state"], halted["tenant"]) == (bad["id"], "HALTED", "acme")
    assert "scripted failure" in halted["reason"]
    assert (succeeded["id"], succeeded["counts"]["SUCCEEDED"]) == (good["id"], 1)
