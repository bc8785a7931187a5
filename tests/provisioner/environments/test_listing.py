"""`GET /environments` and `GET /environments/{tenant}/{name}` answer byte for byte what the
models say: every body equals the reference rendering (ORM rows → `environment_public` →
pydantic, as FastAPI serialises a `response_model`), over a registry with every kind of row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.db import Database
from provisioner.engines import load_engine
from provisioner.engines.worker_host import WorkerOnlyHost
from provisioner.environments.listing import ListingQuery, plain_query
from provisioner.environments.models import DriftStatus, EnvironmentRow, EnvironmentState
from provisioner.environments.outdated import outdated_reasons
from provisioner.environments.schemas import EnvironmentPublic, FleetView, environment_public
from provisioner.monitoring.models import EnvironmentHealthRow
from provisioner.monitoring.repository import HealthRepository
from provisioner.operations.models import FINAL_OPERATION_STATES, OperationRow
from provisioner.schemas import Page
from provisioner.templates.models import TemplateRow, TemplateVersionRow
from provisioner.templates.repository import TemplateRepository
from stacks.config import PipelineConfig
from tests.factories import auth, create_api_key
from tests.provisioner.conftest import SCRIPTED_ENGINE

CODE_VERSION = "c0de0000cafe"
ENDPOINT = "http://127.0.0.1:4566"
_T0 = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


class _LocalLikeHost(WorkerOnlyHost):
    """Shows an emulator endpoint, as the local engine's host does, for `engine="local"` rows."""

    def environment_extras(self) -> dict[str, str]:
        return {"awsEndpointUrl": ENDPOINT}


def _config(tenant: str, name: str, **values: Any) -> dict[str, Any]:
    settings = PipelineConfig(tenant=tenant, environment=name, **values).settings()
    return settings.model_dump(mode="json")


def _seed(session: Session) -> None:
    """Environments covering every field's shapes: null and present, every state, outdated by
    template and by code, local and not, with and without a last operation."""
    session.add(TemplateRow(name="gold", created_by="bootstrap-admin", created_at=_T0))
    session.flush()
    for version in (2, 3):
        session.add(
            TemplateVersionRow(
                template_name="gold",
                version=version,
                config={},
                created_by="bootstrap-admin",
                created_at=_T0,
            )
        )
    session.flush()
    states = list(EnvironmentState)
    for index in range(23):
        tenant, name = ("acme", "globex", "initech")[index % 3], f"env{index:02d}"
        state = states[index % len(states)]
        at = _T0 + timedelta(minutes=index, microseconds=index)
        config = _config(tenant, name, memory_mb=128 + 64 * index)
        if index % 5 == 1:
            # An old row: fields missing (their defaults), an int where the model has a float.
            config = {"memory_mb": 1024, "api_rate_limit": 7}
        environment = EnvironmentRow(
            id=str(uuid.UUID(int=index)),
            tenant=tenant,
            name=name,
            state=state,
            engine="local" if index % 4 == 0 else "pulumi",
            region=("us-east-1", "eu-west-1")[index % 2],
            config=config,
            config_overrides={"memory_mb": 128 + 64 * index} if index % 2 else None,
            template_name="gold" if index % 3 == 0 else "default",
            template_version=2 + index % 2 if index % 3 == 0 else 1,
            code_version=None if index % 7 == 3 else (CODE_VERSION, "0ld0000c0de0")[index % 2],
            tags={"CostCenter": str(index), "Ünïcode": "€ ünï +-=._:/@"},
            outputs={"bucket": f"b-{tenant}-{name}", "table": f"t-{tenant}-{name}"}
            if index % 6
            else {},
            failure_reason='boom: "quoted" \\ </script> ünï\n'
            if state == EnvironmentState.FAILED
            else None,
            # Far ahead: the scheduler must not destroy them during the test.
            expires_at=at + timedelta(days=3650) if index % 4 == 1 else None,
            protected=index % 5 == 0,
            drift_status=list(DriftStatus)[index % len(DriftStatus)],
            drift_checked_at=at + timedelta(hours=1) if index % 3 != 2 else None,
            drift_changes=[
                {
                    "resource": f"q-{name}",
                    "type": "aws:sqs/queue:Queue",
                    "kind": "update",
                    "attributes": ["delaySeconds", "visibilityTimeout"],
                },
                {
                    "resource": f"b-{name}",
                    "type": "aws:s3/bucket:Bucket",
                    "kind": "delete",
                    "attributes": [],
                },
            ]
            if index % 3 == 1
            else [],
            drift_operation_id=_id(1000 + index) if index % 3 != 2 else None,
            created_at=at,
            updated_at=at + timedelta(seconds=1),
        )
        session.add(environment)
        if index % 8 == 7:
            continue  # no operation at all
        operation = OperationRow(
            id=str(uuid.UUID(int=1000 + index)),
            environment_id=environment.id,
            tenant=tenant,
            name=name,
            kind=("create", "update", "destroy", "refresh", "preview")[index % 5],
            # Final states only: the runner would pick up a queued one and change it.
            state=FINAL_OPERATION_STATES[index % len(FINAL_OPERATION_STATES)],
            request={"tenant": tenant, "environment": name},
            recover=False,
            requested_by="bootstrap-admin",
            error="it broke" if index % 3 == 1 else None,
            error_code=("engine_error", None)[index % 2] if index % 3 == 1 else None,
            result={"changes": {"create": index, "same": 2}} if index % 2 else {},
            progress_done=index,
            progress_total=40,
            cancel_requested=index % 6 == 5,
            timeout_s=3600,
            preview={"changes": {"update": 1}, "steps": [{"op": "update", "urn": "u"}]}
            if index % 4 == 2
            else None,
            approved_by="other-admin" if index % 4 == 2 else None,
            created_at=at,
            started_at=at + timedelta(seconds=2) if index % 3 else None,
            finished_at=at + timedelta(seconds=30) if index % 3 == 2 else None,
        )
        session.add(operation)
        environment.last_operation_id = operation.id


def _reference_page(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    tenant: str | None = None,
    state: str | None = None,
    template: str | None = None,
    outdated: bool | None = None,
    drifted: bool | None = None,
) -> bytes:
    """The list route as it was rendered before the fast path: ORM rows, models, pydantic."""
    query = select(EnvironmentRow)
    if tenant is not None:
        query = query.where(EnvironmentRow.tenant == tenant)
    if state is not None:
        query = query.where(EnvironmentRow.state == state)
    if template is not None:
        query = query.where(EnvironmentRow.template_name == template)
    if drifted is not None:
        is_drifted = EnvironmentRow.drift_status == DriftStatus.DRIFTED
        query = query.where(is_drifted if drifted else ~is_drifted)
    everything = session.scalars(query.order_by(EnvironmentRow.tenant, EnvironmentRow.name)).all()
    fleet = FleetView(TemplateRepository(session).latest_versions(), CODE_VERSION)
    if outdated is not None:
        everything = [
            row
            for row in everything
            if bool(outdated_reasons(row, fleet.latest_versions, CODE_VERSION)) == outdated
        ]
    rows = everything[offset : offset + limit]
    items = [_reference_item(session, row, fleet) for row in rows]
    page = Page[EnvironmentPublic](items=items, total=len(everything), limit=limit, offset=offset)
    return TypeAdapter(Page[EnvironmentPublic]).dump_json(page, by_alias=True)


def _reference_item(session: Session, row: EnvironmentRow, fleet: FleetView) -> EnvironmentPublic:
    last = session.get(OperationRow, row.last_operation_id) if row.last_operation_id else None
    health = session.get(EnvironmentHealthRow, row.id)
    return environment_public(row, last, {"awsEndpointUrl": ENDPOINT}, fleet, health)


@pytest.fixture
def seeded(settings: Settings) -> Iterator[tuple[TestClient, Database]]:
    def host(settings: Settings) -> WorkerOnlyHost:
        return _LocalLikeHost(load_engine(SCRIPTED_ENGINE), settings)

    app = create_app(
        settings, engine_reference=SCRIPTED_ENGINE, host_factory=host, code_version=CODE_VERSION
    )
    with TestClient(app) as client:
        database = Database(settings.resolved_database_url)
        with database.session() as session:
            _seed(session)
        yield client, database
        database.dispose()


QUERIES: list[dict[str, Any]] = [
    {},
    {"limit": 1},
    {"limit": 5, "offset": 3},
    {"limit": 7, "offset": 14},
    {"limit": 50, "offset": 22},
    {"offset": 23},
    {"offset": 500},
    {"tenant": "globex"},
    {"tenant": "nobody"},
    {"state": "READY"},
    {"state": "FAILED", "tenant": "acme"},
    {"template": "gold"},
    {"template": "gold", "outdated": True},
    {"outdated": True, "limit": 4, "offset": 2},
    {"outdated": False},
    {"drifted": True},
    {"drifted": False, "limit": 5, "offset": 1},
    {"drifted": True, "outdated": True, "tenant": "acme"},
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_the_list_is_byte_identical_to_the_models(
    seeded: tuple[TestClient, Database], query: dict[str, Any]
) -> None:
    client, database = seeded
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    response = client.get("/environments", params=params, headers=auth())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    with database.session(readonly=True) as session:
        expected = _reference_page(session, **query)
    assert response.content == expected
    assert int(response.headers["content-length"]) == len(expected)


def test_a_tenant_key_lists_its_tenant_byte_identically(
    seeded: tuple[TestClient, Database],
) -> None:
    client, database = seeded
    key = create_api_key(client, "tenant:initech")
    with database.session(readonly=True) as session:
        own = _reference_page(session, tenant="initech", limit=3, offset=1)
        empty = _reference_page(session, tenant="nobody", limit=3)
    mine = client.get("/environments?limit=3&offset=1", headers=auth(key))
    assert mine.content == own
    assert len(mine.json()["items"]) == 3
    # Another tenant's name: an empty page, as for a tenant with no environments.
    theirs = client.get("/environments?limit=3&tenant=acme", headers=auth(key))
    assert theirs.content == empty


def test_each_environment_is_byte_identical_to_the_models(
    seeded: tuple[TestClient, Database],
) -> None:
    client, database = seeded
    with database.session(readonly=True) as session:
        rows = session.scalars(select(EnvironmentRow)).all()
        fleet = FleetView(TemplateRepository(session).latest_versions(), CODE_VERSION)
        expected = {
            (row.tenant, row.name): TypeAdapter(EnvironmentPublic).dump_json(
                _reference_item(session, row, fleet), by_alias=True
            )
            for row in rows
        }
    assert len(expected) == 23
    for (tenant, name), body in expected.items():
        response = client.get(f"/environments/{tenant}/{name}", headers=auth())
        assert response.status_code == 200, response.text
        assert response.content == body


def test_a_page_shows_every_change_at_once(seeded: tuple[TestClient, Database]) -> None:
    """Rendered environments are reused only while nothing they are made of changed: their
    row, their last operation's row, their template's latest version."""
    client, database = seeded
    query = {"limit": 12, "offset": 3}

    def listed() -> bytes:
        response = client.get("/environments", params=query, headers=auth())
        assert response.status_code == 200, response.text
        return response.content

    def expected() -> bytes:
        with database.session(readonly=True) as session:
            return _reference_page(session, limit=12, offset=3)

    before = listed()
    assert listed() == before == expected()
    with database.session() as session:
        operation = session.get(OperationRow, _id(1004))
        assert operation is not None
        operation.progress_done = 39
        environment = session.get(EnvironmentRow, _id(10))
        assert environment is not None
        environment.tags = {**environment.tags, "added": "yes"}
    changed = listed()
    assert changed != before
    assert changed == expected()
    assert b'"done":39' in changed
    assert b'"added":"yes"' in changed
    # A new latest version of gold: its environments on gold@3 are outdated now.
    with database.session() as session:
        session.add(
            TemplateVersionRow(
                template_name="gold", version=4, config={}, created_by="x", created_at=_T0
            )
        )
    outdated = listed()
    assert outdated != changed
    assert outdated == expected()
    assert b"latest gold@4" in outdated
    # Writes that bypass the ORM: by hand (SQL), and a health sample's compare-and-set.
    with database.session() as session:
        session.execute(
            text("UPDATE environments SET failure_reason = 'by hand' WHERE id = :id"),
            {"id": _id(10)},
        )
    by_hand = listed()
    assert b'"failureReason":"by hand"' in by_hand
    assert by_hand == expected()
    # One health sample, then another over it (the sampler's compare-and-set).
    sample: dict[str, Any] = {
        "status": "OK", "alarms": [], "dlqDepths": None,
        "completedLastHour": 3, "failedLastHour": 0,
    }  # fmt: skip
    values = {"checked_at": _T0, "failed_watermark": "", "failed_recent": {}}
    with database.session() as session:
        assert HealthRepository(session).record(_id(10), None, {**values, "health": sample})
    first_sample = listed()
    assert b'"completedLastHour":3' in first_sample
    assert first_sample == expected()
    with database.session() as session:
        again = {**values, "health": {**sample, "completedLastHour": 4}}
        assert HealthRepository(session).record(_id(10), 1, again)  # same checked_at, new figures
    second_sample = listed()
    assert b'"completedLastHour":4' in second_sample
    assert second_sample == expected()
    # A deleted environment leaves the page.
    with database.session() as session:
        session.execute(delete(OperationRow).where(OperationRow.environment_id == _id(4)))
        session.execute(delete(EnvironmentRow).where(EnvironmentRow.id == _id(4)))
    assert listed() == expected()
    assert b'"name":"env04"' not in listed()


def _id(index: int) -> str:
    return str(uuid.UUID(int=index))


# The route reads a query in its plainest forms itself (provisioner.environments.listing);
# every other form goes through its declared parameters. Either way, the same page.
OTHER_SPELLINGS: list[tuple[str, dict[str, Any]]] = [
    ("limit=05&offset=003", {"limit": 5, "offset": 3}),
    ("outdated=1&limit=4", {"outdated": True, "limit": 4}),
    ("outdated=True", {"outdated": True}),
    ("drifted=no&limit=6", {"drifted": False, "limit": 6}),
    ("state=READY&unknown=1", {"state": "READY"}),
    ("limit=3&limit=4", {"limit": 4}),  # FastAPI reads the last
    ("tenant=", {"tenant": ""}),
    ("template=gold&tenant=acme&state=READY&outdated=false&drifted=false&limit=9&offset=0", {
        "template": "gold", "tenant": "acme", "state": "READY", "outdated": False,
        "drifted": False, "limit": 9,
    }),
]  # fmt: skip


@pytest.mark.parametrize(("query", "meaning"), OTHER_SPELLINGS, ids=[q for q, _ in OTHER_SPELLINGS])
def test_every_spelling_of_a_query_lists_the_same(
    seeded: tuple[TestClient, Database], query: str, meaning: dict[str, Any]
) -> None:
    client, database = seeded
    response = client.get(f"/environments?{query}", headers=auth())
    assert response.status_code == 200, response.text
    with database.session(readonly=True) as session:
        assert response.content == _reference_page(session, **meaning)


INVALID: list[tuple[str, str]] = [
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=many", "limit"),
    ("offset=-1", "offset"),
    ("offset=2147483648", "offset"),
    ("state=NOPE", "state"),
    ("template=thirteenchars", "template"),
    ("outdated=maybe", "outdated"),
    ("drifted=2", "drifted"),
]


@pytest.mark.parametrize(("query", "field"), INVALID, ids=[q for q, _ in INVALID])
def test_an_invalid_query_is_refused_naming_the_field(
    seeded: tuple[TestClient, Database], query: str, field: str
) -> None:
    client, _ = seeded
    response = client.get(f"/environments?{query}", headers=auth())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == [["query", field]]
    assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("query", ["limit=5", "limit=0"])
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer ", "Basic bWU6cHc=", "Bearer mdp_not-a-key"]
)
def test_the_list_needs_a_valid_key_before_anything_else(
    seeded: tuple[TestClient, Database], query: str, authorization: str | None
) -> None:
    client, _ = seeded
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get(f"/environments?{query}", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


def test_head_answers_the_lists_headers_without_its_body(
    seeded: tuple[TestClient, Database],
) -> None:
    client, _ = seeded
    listed = client.get("/environments?limit=4", headers=auth())
    head = client.head("/environments?limit=4", headers=auth())
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == listed.headers["content-length"]
    assert head.headers["content-type"] == "application/json"


def test_plain_query_reads_only_the_plainest_forms() -> None:
    assert plain_query([]) == ListingQuery()
    assert plain_query(
        [("tenant", "acme"), ("state", "READY"), ("template", "gold"), ("outdated", "true"),
         ("drifted", "false"), ("limit", "500"), ("offset", "2147483647")]
    ) == ListingQuery(
        tenant="acme", state=EnvironmentState.READY, template="gold", outdated=True,
        drifted=False, limit=500, offset=2147483647,
    )  # fmt: skip
    for other in (
        [("limit", "05")],
        [("limit", "+5")],
        [("limit", " 5")],
        [("limit", "501")],
        [("offset", "2147483648")],
        [("outdated", "1")],
        [("state", "ready")],
        [("tenant", "")],
        [("template", "x" * 13)],
        [("limit", "5"), ("limit", "5")],
        [("unknown", "1")],
    ):
        assert plain_query(other) is None, other
