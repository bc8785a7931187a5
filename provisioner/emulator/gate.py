"""The emulator's request gate: WSGI middleware around moto's app that holds requests back while
a snapshot is taken (`paused`), so that each snapshot falls between whole requests; and counts
the requests that may have changed something (`changes`; what changes moto outside a request
is counted with `record_change`), so an idle emulator is not saved and a wait for durability
knows which snapshot holds it. Both of the server's listeners pass the one gate, so a pause
holds them both.

A request counts as under way only once its whole body has arrived (`read_body`): a client
that stalls halfway through sending one holds up neither a snapshot nor anything behind it.

Lambda invocations do not hold a snapshot up: they run handler code for up to minutes, and
what the handler changes comes back through requests of its own. An SQS receive holds it except
while it waits for messages, where a long poll spends nearly all its time (`stepped_out`,
around moto's wait: `sqs_receives`): a receive changes state too (it moves messages received
too often to the dead-letter queue), so what it changes must fall on one side of the cut.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

# WSGI's shapes, as far as the gate needs them.
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_INVOCATION: Final = re.compile(r"^/\d{4}-\d{2}-\d{2}/functions/[^/]+/invocations$")
_READ_ACTIONS: Final = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Head")
# Not counted as changes: what a receive changes that a restore keeps is counted where it
# happens (`sqs_receives`), and pollers receive all the time.
_UNCOUNTED_ACTIONS: Final = ("ReceiveMessage",)

# The gate whose snapshots wait for the request this thread is serving, if any.
_serving = threading.local()


def _action(environ: Environ) -> str:
    """The operation named by a JSON-protocol request (`X-Amz-Target: Service.Action`)."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    return target.rsplit(".", 1)[-1]


_BODY_READ: Final = "emulator.body_read"


def read_body(environ: Environ) -> None:
    """Read the request's body from the client now, into memory, and serve it from there.

    Before a request takes anything that others wait for (the gate's count, the table lock),
    so that the time a slow or stalled client takes to send it is its own. Once per request."""
    if environ.get(_BODY_READ):
        return
    stream = environ.get("wsgi.input")
    length = str(environ.get("CONTENT_LENGTH") or "").strip()
    if stream is None:
        body = b""
    elif length.isdigit():
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream
        body = stream.read()
    else:
        body = b""  # no length and no end: WSGI says read nothing
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ[_BODY_READ] = True


def holds_snapshot(environ: Environ) -> bool:
    """Whether a snapshot must wait for this request to finish."""
    return not _INVOCATION.match(str(environ.get("PATH_INFO", "")))


def may_change(environ: Environ) -> bool:
    """Whether the request may change the emulator's state (reads and receives do not count)."""
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return False
    action = _action(environ)
    return not (action.startswith(_READ_ACTIONS) or action in _UNCOUNTED_ACTIONS)


class RequestGate:
    """Wraps moto's WSGI app; see the module docstring."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._condition = threading.Condition()
        self._active = 0
        self._paused = False
        self.changes = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        gated = holds_snapshot(environ)
        read_body(environ)
        with self._condition:
            while self._paused:
                self._condition.wait()
            if gated:
                self._active += 1
            if may_change(environ):
                self.changes += 1
        outer = getattr(_serving, "gate", None)
        _serving.gate = self if gated else None
        try:
            # The body is produced inside the gate: a lazy body could read moto's state later.
            return list(self._app(environ, start_response))
        finally:
            _serving.gate = outer
            if gated:
                self._leave()

    def _enter(self) -> None:
        with self._condition:
            while self._paused:
                self._condition.wait()
            self._active += 1

    def _leave(self) -> None:
        with self._condition:
            self._active -= 1
            self._condition.notify_all()

    def record_change(self) -> None:
        """Count a change that no counted request made (`execution_ends`, `sqs_receives`)."""
        with self._condition:
            self.changes += 1

    @contextmanager
    def paused(self, timeout_s: float) -> Iterator[int]:
        """Hold new requests, wait for those under way; yields `changes` as of the pause.

        Raises TimeoutError if the requests under way take longer than `timeout_s`."""
        with self._condition:
            while self._paused:
                self._condition.wait()
            self._paused = True
            try:
                if not self._condition.wait_for(lambda: self._active == 0, timeout_s):
                    raise TimeoutError(f"requests still under way after {timeout_s}s")
                changes = self.changes
            except BaseException:
                self._paused = False
                self._condition.notify_all()
                raise
        try:
            yield changes
        finally:
            with self._condition:
                self._paused = False
                self._condition.notify_all()


@contextmanager
def stepped_out() -> Iterator[None]:
    """Within a request the gate holds, around a part of it that changes nothing (a wait): let
    snapshots be taken meanwhile, then wait for the one under way, if any, before going on."""
    gate: RequestGate | None = getattr(_serving, "gate", None)
    if gate is None:
        yield
        return
    gate._leave()
    try:
        yield
    finally:
        gate._enter()
