"""Parsing a `text/event-stream` body (the WHATWG rules the service's SSE stream follows)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from a stream's lines (without line endings); comments such as pings are skipped.

    An event cut off by the end of the stream is dropped, as browsers do: its id was never
    confirmed, so a reconnect with Last-Event-ID replays it.
    """
    data: list[str] = []
    event = ""
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield ServerSentEvent(event=event or "message", data="\n".join(data), id=last_id)
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\0" not in value:
            last_id = value
