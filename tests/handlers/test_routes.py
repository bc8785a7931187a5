"""The status API's one route table (handlers.core.routes): what API Gateway, the status
function and the local engine's status API are all built from."""

from __future__ import annotations

from handlers.core.routes import STATUS_ROUTES, match_route, resource_paths
from stacks import spec


def test_routes_match_their_resources_and_nothing_else() -> None:
    assert match_route("/status/abc") == (STATUS_ROUTES[0], {"fileId": "abc"})
    assert match_route("/files") == (STATUS_ROUTES[1], {})
    assert match_route("/status") is None
    assert match_route("/status/a/b") is None
    assert match_route("/files/x") is None


def test_resolver_paths_are_powertools_spelling() -> None:
    assert [route.resolver_path for route in STATUS_ROUTES] == ["/status/<fileId>", "/files"]


def test_every_api_gateway_resource_has_a_fixed_logical_name() -> None:
    # Parents first, so the Pulumi component can create them in this order.
    assert resource_paths() == ("/status", "/status/{fileId}", "/files")
    assert set(spec.API_RESOURCE_KEYS) == set(resource_paths())


def test_request_parameters_come_from_the_route() -> None:
    assert [spec.api_request_parameters(route) for route in STATUS_ROUTES] == [
        {"method.request.path.fileId": True},
        {"method.request.querystring.key": True},
    ]
