"""Reading the JSON documents (policies, patterns) that resources carry as string inputs."""

from __future__ import annotations

import json
from typing import Any

from tests.stacks.mocks import RegisteredResource


def parsed(resource: RegisteredResource, key: str = "policy") -> dict[str, Any]:
    """A JSON string input, parsed."""
    document = resource.inputs[key]
    assert isinstance(document, str), f"{resource.name}.{key} is not a JSON string: {document!r}"
    value: dict[str, Any] = json.loads(document)
    return value


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return [found] if isinstance(found, dict) else list(found)


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
