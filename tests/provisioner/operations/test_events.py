"""Operation events: persisted in order and streamed as Server-Sent Events, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from provisioner.app import create_app
from tests.factories import auth, environment_body, sse_events, wait_for_operation
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _stream(client: TestClient, operation_id: str, **headers: str) -> list[dict[str, Any]]:
    with client.stream(
        "GET", f"/operations/{operation_id}/events", headers={**auth(), **headers}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response.iter_lines()))


def test_stream_is_complete_ordered_and_ends_with_the_operation(client: TestClient) -> None:
    body = environment_body(script={"resources": "5", "delay": "0.05"})
    operation = client.post("/environments", json=body, headers=auth()).json()
    # Subscribe while it runs: the stream follows live and ends by itself.
    events = _stream(client, operation["id"])
    ids = [int(event["id"]) for event in events]
    assert ids == list(range(1, len(ids) + 1))
    types = [event["event"] for event in events]
    assert types[0] == "operation.started"
    assert types[-1] == "operation.finished"
    assert types.count("resource.finished") == 5
    assert events[-1]["data"]["data"]["state"] == "SUCCEEDED"
    done = [event["data"]["progress"]["done"] for event in events]
    assert done == sorted(done)
    assert done[-1] == 5
    assert all(event["data"]["progress"]["total"] in (0, 5) for event in events)
    assert all(event["data"]["operationId"] == operation["id"] for event in events)
    # Replaying a finished operation gives the same events.
    assert _stream(client, operation["id"]) == events


def test_stream_resumes_after_last_event_id(client: TestClient) -> None:
    operation = client.post(
        "/environments", json=environment_body(script={"resources": "4"}), headers=auth()
    ).json()
    wait_for_operation(client, operation["id"])
    everything = _stream(client, operation["id"])
    rest = _stream(client, operation["id"], **{"Last-Event-ID": "3"})
    assert rest == everything[3:]
    assert [int(e["id"]) for e in rest][0] == 4
    # The same through ?after= (for clients that cannot set headers).
    response = client.get(f"/operations/{operation['id']}/events?after=5", headers=auth())
    assert [e["id"] for e in sse_events(iter(response.text.splitlines()))] == [
        e["id"] for e in everything[5:]
    ]


def test_failure_reason_is_in_the_last_event(client: TestClient) -> None:
    operation = client.post(
        "/environments", json=environment_body(script={"fail-at": "2"}), headers=auth()
    ).json()
    events = _stream(client, operation["id"])
    assert [e["event"] for e in events].count("resource.failed") == 1
    assert events[-1]["data"]["message"] == (
        "operation failed: resource-2 failed: scripted failure"
    )


def test_unknown_operation_stream_is_404(client: TestClient) -> None:
    response = client.get("/operations/nope/events", headers=auth())
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_cancelled_queued_operation_streams_its_end_too(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url, max_concurrent_operations=1)
    gate = tmp_path / "gate"
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        body = environment_body(name="blocker", script={"gate": str(gate)})
        blocker = client.post("/environments", json=body, headers=auth()).json()
        wait_for_operation(client, blocker["id"], states=("RUNNING",))
        body = environment_body(name="queued")
        queued = client.post("/environments", json=body, headers=auth()).json()
        client.post(f"/operations/{queued['id']}/cancel", headers=auth())
        events = _stream(client, queued["id"])
        assert [e["event"] for e in events] == ["operation.finished"]
        assert events[-1]["data"]["data"]["state"] == "CANCELLED"
        gate.touch()
        wait_for_operation(client, blocker["id"])
