"""The status API's routes (docs/architecture.md §2), defined once.

Under `handlers` because the status function serves them and its package may import only the
standard library, boto3 and Powertools; `stacks` builds API Gateway's resources and methods
from the same table, and the local engine matches requests against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["STATUS_ROUTES", "Route", "match_route", "resource_paths"]


@dataclass(frozen=True)
class Route:
    """One GET route: its API Gateway resource template and required query parameters."""

    key: str
    resource: str  # e.g. "/status/{fileId}"
    query: tuple[str, ...] = ()
    method: str = "GET"

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.resource))

    @property
    def resolver_path(self) -> str:
        """Powertools' spelling of the template (`/status/<fileId>`)."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.resource)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters of `path` if it is this route's resource, else None."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.resource))
        found = re.fullmatch(pattern, path)
        return None if found is None else found.groupdict()


STATUS_ROUTES: Final[tuple[Route, ...]] = (
    # One file version's status item.
    Route("status", "/status/{fileId}"),
    # Every version of an object key, newest first.
    Route("files", "/files", query=("key",)),
)


def match_route(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in STATUS_ROUTES:
        parameters = route.match(path)
        if parameters is not None:
            return route, parameters
    return None


def resource_paths() -> tuple[str, ...]:
    """Every API Gateway resource the routes need, parents first (`/status` before its child)."""
    paths: list[str] = []
    for route in STATUS_ROUTES:
        parts = route.resource.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:depth])
            if path not in paths:
                paths.append(path)
    return tuple(paths)
