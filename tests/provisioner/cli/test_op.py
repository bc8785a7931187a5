"""`provisioner op …`: following an operation live (and across a dropped stream), showing and
cancelling it, and the exit status a script can rely on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

import provisioner.cli.client as client_module
from provisioner.cli.client import CliSettings, HttpClient
from tests.factories import ADMIN_KEY, auth, environment_body, wait_for_operation
from tests.provisioner.cli.conftest import Outcome, invoke

Cli = Callable[..., Outcome]


def _start(service: TestClient, **script: str) -> str:
    body = environment_body(script=script)
    response = service.post("/environments", json=body, headers=auth())
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["id"]
    return operation_id


def test_watch_follows_a_running_operation_to_success(cli: Cli, service: TestClient) -> None:
    operation_id = _start(service, resources="3", delay="0.1")
    outcome = cli("op", "watch", operation_id)
    assert outcome.code == 0, outcome.err
    assert f"operation {operation_id} SUCCEEDED (create 3)" in outcome.out
    assert [line for line in outcome.err.splitlines() if "created" in line] == [
        f"✓ resource-{index} created" for index in (1, 2, 3)
    ]


def test_watch_json_prints_the_final_operation(cli: Cli, service: TestClient) -> None:
    operation_id = _start(service)
    outcome = cli("op", "watch", operation_id, "--json")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["state"] == "SUCCEEDED"


def test_watch_a_failed_operation_exits_3(cli: Cli, service: TestClient) -> None:
    operation_id = _start(service, **{"fail-at": "1"})
    outcome = cli("op", "watch", operation_id)
    assert outcome.code == 3
    assert outcome.error_line() == (
        f"error: operation {operation_id} FAILED: engine_error: resource-1 failed: scripted failure"
    )
    assert "✗ resource-1 failed" in outcome.err


def test_cancel_then_watch_exits_3_cancelled(cli: Cli, service: TestClient, tmp_path: Path) -> None:
    operation_id = _start(service, gate=str(tmp_path / "never"))
    wait_for_operation(service, operation_id, states=("RUNNING",))
    cancelled = cli("op", "cancel", operation_id)
    assert cancelled.code == 0, cancelled.err
    assert operation_id in cancelled.out
    watched = cli("op", "watch", operation_id)
    assert watched.code == 3
    assert watched.error_line().startswith(f"error: operation {operation_id} CANCELLED: cancelled")
    again = cli("op", "cancel", operation_id)
    assert again.code == 1
    assert again.error_line() == (
        f"error: conflict: operation {operation_id} already finished (CANCELLED)"
    )


def test_show(cli: Cli, service: TestClient) -> None:
    operation_id = _start(service)
    wait_for_operation(service, operation_id)
    outcome = cli("op", "show", operation_id, "--json")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["progress"] == {"done": 3, "total": 3}


@pytest.mark.parametrize("command", ["watch", "show", "cancel"])
def test_unknown_operation_is_a_one_line_404(cli: Cli, command: str) -> None:
    outcome = cli("op", command, "nope")
    assert outcome.code == 1
    assert outcome.error_line() == "error: not_found: operation nope not found"


# --- resuming a dropped stream (a stub service, to drop the connection at a chosen event) ---


def _sse(*events: tuple[int, str, str]) -> bytes:
    chunks = []
    for seq, kind, message in events:
        data = json.dumps({"message": message, "progress": {"done": min(seq - 1, 3), "total": 3}})
        chunks.append(f"id: {seq}\nevent: {kind}\ndata: {data}\n\n")
    return "".join(chunks).encode()


class _Stream(httpx.SyncByteStream):
    """A response body that can end with a dropped connection."""

    def __init__(self, body: bytes, *, drop: bool) -> None:
        self.body = body
        self.drop = drop

    def __iter__(self) -> Iterator[bytes]:
        yield self.body
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


EVENTS = [
    (1, "operation.started", "create of acme/dev started"),
    (2, "resource.finished", "resource-1 created"),
    (3, "resource.finished", "resource-2 created"),
    (4, "resource.finished", "resource-3 created"),
    (5, "operation.finished", "operation succeeded"),
]
OPERATION = {
    "id": "op-1", "kind": "create", "state": "RUNNING", "tenant": "acme", "name": "dev",
    "progress": {"done": 0, "total": 0}, "changes": {}, "error": None,
}  # fmt: skip


def _stub(
    drops: int, per_stream: int = 2
) -> tuple[Callable[[CliSettings], HttpClient], list[httpx.Request]]:
    """A service whose stream drops after `per_stream` events, `drops` times."""
    streams: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {ADMIN_KEY}"
        if request.url.path == "/operations/op-1":
            finished = len(streams) > drops
            state = "SUCCEEDED" if finished else "RUNNING"
            changes = {"create": 3} if finished else {}
            return httpx.Response(200, json={**OPERATION, "state": state, "changes": changes})
        assert request.url.path == "/operations/op-1/events"
        streams.append(request)
        after = int(request.headers.get("Last-Event-ID", "0"))
        drop = len(streams) <= drops
        rest = [event for event in EVENTS if event[0] > after][: per_stream if drop else None]
        return httpx.Response(
            200,
            headers={"Content-Type": "text/event-stream"},
            stream=_Stream(_sse(*rest), drop=drop),
        )

    def factory(settings: CliSettings) -> HttpClient:
        return httpx.Client(base_url=settings.url, transport=httpx.MockTransport(handle))

    return factory, streams


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff between reconnects, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


def test_watch_resumes_a_dropped_stream_with_last_event_id(sleeps: list[float]) -> None:
    factory, streams = _stub(drops=1)
    outcome = invoke(factory, ["op", "watch", "op-1"])
    assert outcome.code == 0, outcome.err
    assert "SUCCEEDED (create 3)" in outcome.out
    assert [request.headers.get("Last-Event-ID") for request in streams] == [None, "2"]
    # Every event shown once, in order, despite the drop.
    shown = [line for line in outcome.err.splitlines() if "created" in line]
    assert shown == [f"✓ resource-{index} created" for index in (1, 2, 3)]
    assert sleeps == [0.5]


def test_watch_gives_up_after_repeated_drops(sleeps: list[float]) -> None:
    factory, streams = _stub(drops=100, per_stream=0)
    outcome = invoke(factory, ["op", "watch", "op-1"])
    assert outcome.code == 1
    assert outcome.error_line() == (
        "error: lost the event stream of operation op-1; "
        "follow it again with: provisioner op watch op-1"
    )
    assert len(streams) == 6
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
