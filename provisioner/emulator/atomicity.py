"""Requests that change one record applied whole: WSGI middleware around moto's app.

DynamoDB applies each request to an item atomically: a read sees an update whole or not at all,
and a condition is checked and the write made as one step. moto 5.2.x does neither under
threads. UpdateItem checks the condition, then applies the update to the stored item in place,
one action after another, holding nothing; the emulator serves requests on threads. A GetItem
in the middle saw an item that had half of an update (a COMPLETED status beside the previous
stage's `updatedAt`), and two compare-and-set writes both passed one condition, so one lost
its update while told it succeeded. The pipeline's rank guard is such a condition.

S3 keeps every version of a key in a versioned bucket. moto's PutObject reads the key's list of
versions, then stores that list with the new version added: two PUTs of one key at once both
read the same list, and the version written first is gone although its PUT answered 200 (16
writers of one key lost a tenth of their versions). Its DeleteObject does the same with
delete markers.

So there are two lanes, each one request at a time:

- **tables**: every DynamoDB request (the JSON protocol's `DynamoDB_20120810.*` targets,
  Streams' too), reads included, since a read must not see half of a write;
- **objects**: every S3 request that may write (PUT, POST, DELETE), told by its SigV4
  credential scope (the `Authorization` header, or a presigned URL's `X-Amz-Credential`), as
  moto's dispatcher tells it. A GET reads the list of versions that a write replaces in one
  step, so it never waits.

moto's own API (`/moto-api/`: reset, state dumps) replaces or reads both, so it takes both
lanes, always objects first (nothing takes them the other way round). moto answers these in
well under a millisecond to a few (a large scan), in CPU that the interpreter lock serialises
anyway, and requests of other services (Lambda's Invoke among them) never wait. A request's body
is read before it waits (`gate.read_body`), so a client that is slow to send one holds nobody
else up.

No request in a lane calls back into the emulator while it holds it: the pipeline's tables
have no streams feeding functions and its bucket notifies EventBridge, which moto delivers to
SQS in process (an S3 notification to a Lambda function would run it under the objects lane).
Everything reaches moto through the server's gate, HTTP or in process, and the snapshot reads
it only while the gate holds every request back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import ExitStack
from enum import Enum
from typing import Final
from urllib.parse import parse_qs

from provisioner.emulator import MOTO_API_PATH
from provisioner.emulator.gate import Environ, StartResponse, WsgiApp, read_body


class Lane(Enum):
    """A lock of its own; the order of the members is the order in which they are taken."""

    OBJECTS = "objects"
    TABLES = "tables"


_DYNAMODB_TARGETS: Final = ("DynamoDB_", "DynamoDBStreams_")
_CREDENTIAL: Final = "Credential="
_S3_WRITES: Final = frozenset({"PUT", "POST", "DELETE"})


def signing_service(environ: Environ) -> str | None:
    """The service a SigV4 request is signed for (`key/date/region/service/aws4_request`)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    if _CREDENTIAL in authorization:
        scope = authorization.split(_CREDENTIAL, 1)[1].split(",", 1)[0]
    else:
        presigned = parse_qs(str(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential")
        if not presigned:
            return None
        scope = presigned[0]
    parts = scope.split("/")
    return parts[3].lower() if len(parts) == 5 else None


def lanes(environ: Environ) -> tuple[Lane, ...]:
    """The lanes a request runs in (none: it runs at once)."""
    if str(environ.get("PATH_INFO", "")).startswith(MOTO_API_PATH):
        return (Lane.OBJECTS, Lane.TABLES)
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGETS):
        return (Lane.TABLES,)
    if environ.get("REQUEST_METHOD") in _S3_WRITES and signing_service(environ) == "s3":
        return (Lane.OBJECTS,)
    return ()


class AtomicRequests:
    """Wraps moto's WSGI app; see the module docstring."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._locks = {lane: threading.Lock() for lane in Lane}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        taken = lanes(environ)
        if not taken:
            return self._app(environ, start_response)
        read_body(environ)  # already read behind the gate; here too for any other caller
        with ExitStack() as held:
            for lane in Lane:  # in the members' order, whatever order `lanes` named them in
                if lane in taken:
                    held.enter_context(self._locks[lane])
            # The body is produced under the locks: a lazy body would read the backend later.
            return list(self._app(environ, start_response))
