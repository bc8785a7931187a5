"""Property-based contract test (schemathesis) over the app's own OpenAPI document: no 5xx,
and every response matches what the document says (status, content type, schema)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.python.asgi import shutdown_lifespans

from provisioner.app import create_app
from tests.factories import ADMIN_KEY
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

# Loaded from the app's own document without starting it; schemathesis starts the app's lifespan
# on the first call and the fixture below stops it. (Its lazy `from_fixture` loader does not
# work with pytest 9.)
_DATA = Path(tempfile.mkdtemp(prefix="contract-"))
_APP = create_app(
    make_settings(_DATA / "data", f"sqlite:///{_DATA / 'registry.db'}"),
    engine_reference=SCRIPTED_ENGINE,
)
schema = schemathesis.openapi.from_dict(_APP.openapi())
schema.app = _APP
schema.location = "/openapi.json"


@pytest.fixture(scope="module", autouse=True)
def _stop_app() -> Iterator[None]:
    yield
    shutdown_lifespans()
    shutil.rmtree(_DATA, ignore_errors=True)


@schema.auth()
class AdminBearer:
    """The admin API key, as schemathesis' own auth: it then knows requests are authenticated
    (and its negative cases do not count a header we add as one it left out)."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return ADMIN_KEY

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_matches_its_openapi_document(case: schemathesis.Case) -> None:
    if case.path == "/operations/{operation_id}/events":
        # A stream that only ends with its operation; covered by
        # tests/provisioner/operations/test_events.py.
        case.path_parameters = {"operation_id": "does-not-exist"}
    # Our validators are stricter than JSON Schema can say (reserved tag keys, burst ≥ rate,
    # CloudWatch's retention values), so schema-valid bodies may rightly get a 422 that
    # names the field; every other check (no 5xx, status codes, content types, response
    # schemas, headers, negative data rejected) applies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_openapi_documents_every_route(tmp_path: Path) -> None:
    app = create_app(
        make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'registry.db'}"),
        engine_reference=SCRIPTED_ENGINE,
    )
    paths = set(app.openapi()["paths"])
    assert {
        "/environments",
        "/environments/{tenant}/{name}",
        "/environments/{tenant}/{name}/refresh",
        "/environments/{tenant}/{name}/preview",
        "/operations/{operation_id}",
        "/operations/{operation_id}/events",
        "/operations/{operation_id}/cancel",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/summary",
        "/admin/audit",
        "/admin/api-keys",
        "/admin/api-keys/{key_id}",
        "/admin/webhooks",
        "/admin/webhooks/{webhook_id}",
        "/admin/webhooks/{webhook_id}/deliveries",
        "/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    } <= paths
