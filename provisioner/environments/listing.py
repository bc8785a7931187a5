"""The environment list's read path (`GET /environments`): one statement per page, and each
environment's JSON rendered once per version of what it is made of.

A page is read as stored values (no JSON decoded, no type converted: cheap). An environment
whose values were seen before gets the bytes rendered then; any other is read again as rows,
with its values in the same statement, and rendered as every response is (`environment_public`,
pydantic), so a body is byte for byte what the models give. Nothing here can be stale: the
key is the version of everything the JSON is made of (the revisions the registry keeps of the
environment's row, of its last operation's and of its health sample's, its template's latest
version, the service's code version and the host's extras). Revisions only move forward,
except under a registry put back from a backup or replayed with triggers off
(`session_replication_role = replica`): restart the replicas after such a restore, so that
they forget what they rendered.

`plain_query` reads the route's query in its plainest forms without FastAPI's validation
(the route's other costly half); anything else goes through the route's declared parameters.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import TypeAdapter

from provisioner.environments.models import EnvironmentState
from provisioner.environments.repository import EnvironmentRepository
from provisioner.environments.schemas import EnvironmentPublic, FleetView, environment_public
from provisioner.schemas import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX

_ITEM: Final = TypeAdapter(EnvironmentPublic)
# About 2 KiB each: a few MiB for a fleet of thousands.
_MAX_RENDERED: Final = 4096


DEFAULT_LIMIT: Final = 50
TEMPLATE_FILTER_MAX: Final = 12


@dataclass(frozen=True)
class ListingQuery:
    """The filters and the page of `GET /environments`."""

    tenant: str | None = None
    state: EnvironmentState | None = None
    template: str | None = None
    outdated: bool | None = None
    drifted: bool | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


_STATES: Final = {state.value: state for state in EnvironmentState}
_BOOLEANS: Final = {"true": True, "false": False}
# Decimal digits without a sign, spaces or leading zeros: read alike by int() and pydantic.
_NUMBER: Final = re.compile(r"0|[1-9][0-9]{0,9}")


def plain_query(items: Iterable[tuple[str, str]]) -> ListingQuery | None:
    """The query when every parameter is one the route declares, given once, in a form its
    validation accepts and reads the same way (a state's value, `true`/`false`, digits in
    bounds); otherwise None, and FastAPI validates it (other forms, 422s naming the field)."""
    values: dict[str, Any] = {}
    for name, value in items:
        if name in values or not value:
            return None
        if name == "tenant":
            values[name] = value
        elif name == "template":
            if len(value) > TEMPLATE_FILTER_MAX:
                return None
            values[name] = value
        elif name == "state":
            if value not in _STATES:
                return None
            values[name] = _STATES[value]
        elif name in ("outdated", "drifted"):
            if value not in _BOOLEANS:
                return None
            values[name] = _BOOLEANS[value]
        elif name in ("limit", "offset"):
            if _NUMBER.fullmatch(value) is None:
                return None
            number = int(value)
            low, high = (1, PAGE_LIMIT_MAX) if name == "limit" else (0, PAGE_OFFSET_MAX)
            if not low <= number <= high:
                return None
            values[name] = number
        else:
            return None
    return ListingQuery(**values)


# Pages rendered at once. Rendering is CPU (and the GIL) more than waiting: more threads
# than this only contend, and each holds a registry connection (past SQLite's pool of five,
# one opened and closed per page).
RENDERS_AT_ONCE: Final = 4


class EnvironmentPages:
    """Renders pages of `Page[EnvironmentPublic]` as JSON bytes; one per app, thread-safe."""

    def __init__(self) -> None:
        self._rendered: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = asyncio.Semaphore(RENDERS_AT_ONCE)

    def render(
        self,
        repository: EnvironmentRepository,
        *,
        tenant: str | None,
        state: str | None,
        template: str | None,
        outdated: bool | None,
        drifted: bool | None,
        code_version: str,
        extras: Mapping[str, str],
        limit: int,
        offset: int,
    ) -> bytes:
        stored, total = repository.stored_page(
            tenant=tenant,
            state=state,
            template=template,
            outdated=outdated,
            drifted=drifted,
            code_version=code_version,
            limit=limit,
            offset=offset,
        )
        context = (code_version, tuple(sorted(extras.items())))
        items: dict[str, bytes] = {}
        missing: list[str] = []
        with self._lock:
            for values in stored:
                rendered = self._rendered.get((context, values))
                if rendered is None:
                    missing.append(values[0])
                else:
                    self._rendered.move_to_end((context, values))
                    items[values[0]] = rendered
        if missing:
            items.update(self._render_rows(repository, missing, context, code_version, extras))
        # A row deleted between the two statements is left out (as a page read a moment later).
        return page_json([items[v[0]] for v in stored if v[0] in items], total, limit, offset)

    def _render_rows(
        self,
        repository: EnvironmentRepository,
        ids: list[str],
        context: tuple[Any, ...],
        code_version: str,
        extras: Mapping[str, str],
    ) -> dict[str, bytes]:
        rendered: dict[str, bytes] = {}
        for values, row, last_operation, health, latest in repository.stored_rows(ids):
            versions = {row.template_name: latest} if latest is not None else {}
            public = environment_public(
                row, last_operation, extras, FleetView(versions, code_version), health
            )
            rendered[row.id] = _ITEM.dump_json(public, by_alias=True)
            with self._lock:
                self._rendered[(context, values)] = rendered[row.id]
                if len(self._rendered) > _MAX_RENDERED:
                    self._rendered.popitem(last=False)
        return rendered


def page_json(items: list[bytes], total: int, limit: int, offset: int) -> bytes:
    """`Page` (provisioner.schemas) as pydantic serialises it, around items already JSON."""
    return b'{"items":[%b],"total":%d,"limit":%d,"offset":%d}' % (
        b",".join(items),
        total,
        limit,
        offset,
    )
