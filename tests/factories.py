"""Small helpers shared by the API tests: request bodies, waiting for operations, SSE parsing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Column, MetaData, Table

from provisioner.migrations import ADDED_COLUMNS

ADMIN_KEY = "mdp_test-admin-key-0123456789abcdefghijklmnop"
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED")


def auth(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def environment_body(
    tenant: str = "acme",
    name: str = "dev",
    *,
    script: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A POST /environments body; `script` goes into the tags for the scripted engine."""
    body: dict[str, Any] = {"tenant": tenant, "name": name, **extra}
    if script:
        body["tags"] = {**body.get("tags", {}), **{f"script-{k}": v for k, v in script.items()}}
    return body


def wait_for_operation(
    client: TestClient,
    operation_id: str,
    *,
    key: str = ADMIN_KEY,
    states: tuple[str, ...] = FINAL_STATES,
    timeout: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/operations/{operation_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["state"] in states:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {operation_id} stuck in {body['state']}: {body}")
        time.sleep(0.05)


def create_api_key(client: TestClient, scope: str) -> str:
    response = client.post("/admin/api-keys", json={"scope": scope}, headers=auth())
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream into {id, event, data} dicts (comments/pings skipped)."""
    event: dict[str, Any] = {}
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[field] = event.get(field, "") + value if field == "data" else value


def as_first_released(table: Table, metadata: MetaData) -> Table:
    """`table` as its first release made it: without the columns (nor their indexes) that
    `provisioner.migrations` adds to older registries."""
    added = {step.column for step in ADDED_COLUMNS if step.table == table.name}
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in table.columns
        if c.name not in added
    ]
    return Table(table.name, metadata, *columns)
