"""Whatever validation accepts, the local engine can create and destroy; whatever it refuses
is a 422 naming the field (architecture.md §9). Property-based, over the request schema, on the real
service with the local engine (few examples: each is a real create and destroy)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacks.config import ENVIRONMENT_PATTERN, TENANT_PATTERN, aws_regions
from tests.e2e.service import RunningService

# Characters AWS allows in tags, and some it refuses (tab, newline, ';', '<', NUL).
_TAG_CHARS = st.one_of(
    st.characters(categories=["L", "N", "Zs"], max_codepoint=0x2FFF),
    st.sampled_from("_.:/=+-@"),
)
_BAD_CHARS = st.sampled_from("\t\n;<>\x00!")


def _text(valid: st.SearchStrategy[str], size: int) -> st.SearchStrategy[str]:
    """Mostly values that look right; sometimes one with a bad character or a newline."""
    return st.one_of(
        valid,
        valid.map(lambda value: value + "\n"),
        st.text(st.one_of(_TAG_CHARS, _BAD_CHARS), max_size=size),
    )


_tags = st.dictionaries(
    _text(st.text(_TAG_CHARS, min_size=1, max_size=20), 130),
    _text(st.text(_TAG_CHARS, max_size=30), 260),
    max_size=3,
)
_bodies = st.fixed_dictionaries(
    {
        "tenant": _text(st.from_regex(TENANT_PATTERN, fullmatch=True), 22),
        "name": _text(st.from_regex(ENVIRONMENT_PATTERN, fullmatch=True), 14),
    },
    optional={
        "region": st.one_of(
            st.sampled_from(sorted(aws_regions())),
            st.sampled_from(["xx-fake-1", "us-east-1\n", "US-EAST-1", "us-east-99"]),
        ),
        "tags": _tags,
        "config": st.fixed_dictionaries(
            {},
            optional={
                "memory_mb": st.integers(64, 11000),
                "team": _text(st.text(_TAG_CHARS, min_size=1, max_size=10), 12),
                "log_retention_days": st.sampled_from([1, 7, 8, 30]),
            },
        ),
    },
)
_FIELDS = {"tenant", "name", "region", "tags", "config"}


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_bodies)
def test_accepted_requests_create_and_destroy_refused_ones_name_the_field(
    service: RunningService, body: dict[str, Any]
) -> None:
    response = service.client.post("/environments", json=body)
    if response.status_code == 422:
        errors = response.json()["errors"]
        assert errors, response.text
        for error in errors:
            assert error["loc"][0] == "body", error
            assert error["loc"][1] in _FIELDS, error
        return
    assert response.status_code == 202, (body, response.text)
    created = service.wait(response.json()["id"], timeout=120)
    assert created["state"] == "SUCCEEDED", (body, created["error"])
    path = f"/environments/{body['tenant']}/{body['name']}"
    deleted = service.client.delete(path)
    assert deleted.status_code == 202, deleted.text
    destroyed = service.wait(deleted.json()["id"], timeout=120)
    assert destroyed["state"] == "SUCCEEDED", (body, destroyed["error"])
    assert service.client.get(path).json()["state"] == "DESTROYED"
