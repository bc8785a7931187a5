"""DynamoDB requests applied one at a time: WSGI middleware around moto's app.

DynamoDB applies each request to an item atomically: a read sees an update whole or not at all,
and a condition is checked and the write made as one step. moto 5.2.x does neither under
threads. UpdateItem checks the condition, then applies the update to the stored item in place,
one action after another, holding nothing; the emulator serves requests on threads. A GetItem
in the middle saw an item that had half of an update (a COMPLETED status beside the previous
stage's `updatedAt`), and two compare-and-set writes both passed one condition, so one lost
its update while told it succeeded. The pipeline's rank guard is such a condition.

So every DynamoDB request (the JSON protocol's `DynamoDB_20120810.*` targets, Streams' too)
runs under one lock, and so does moto's own API (`/moto-api/`: reset, state dumps), which
replaces or reads the same backends. moto answers them in well under a millisecond to a few
for a large scan, in CPU that the interpreter lock serialises anyway, so this costs little,
and requests of other services never wait for it. A request's body is read before it waits
(`gate.read_body`), so a client that is slow to send one holds nobody else up.

No DynamoDB request calls back into the emulator (the pipeline's tables have no streams
feeding functions), so none waits on the lock it holds. Everything reaches moto's DynamoDB
through the server's gate, HTTP or in process, and the snapshot reads it only while the gate
holds every request back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final

from provisioner.emulator.gate import Environ, StartResponse, WsgiApp, read_body

_DYNAMODB_TARGETS: Final = ("DynamoDB_", "DynamoDBStreams_")
_MOTO_API: Final = "/moto-api/"


def serialised(environ: Environ) -> bool:
    """Whether the request runs under the lock: a DynamoDB (or Streams) call, or moto's API."""
    return str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGETS) or str(
        environ.get("PATH_INFO", "")
    ).startswith(_MOTO_API)


class SerialTables:
    """Wraps moto's WSGI app; see the module docstring."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not serialised(environ):
            return self._app(environ, start_response)
        read_body(environ)  # already read behind the gate; here too for any other caller
        with self._lock:
            # The body is produced under the lock: a lazy body would read the table later.
            return list(self._app(environ, start_response))
