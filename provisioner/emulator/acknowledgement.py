"""Durable acknowledgements on the emulator's published listener: a request that may change
something is answered only once a snapshot that holds it is on disk, so what a client outside
the service was told succeeded survives a SIGKILL of the service.

The answer is held back, not the work: moto handles the request at once (and the gate counts
it), this wrapper keeps its status line, headers and body until `wait_durable` returns, and
answers 503 if durability could not be had (a client retries, as it would any 503). Reads pass
straight through. The service's own traffic uses the internal listener, unwrapped: it is part
of the cut each snapshot is, and what it was doing is started again after a restore.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import structlog

from provisioner.emulator.gate import Environ, StartResponse, WsgiApp, may_change
from provisioner.emulator.snapshot import SnapshotError

log = structlog.get_logger(__name__)

_UNAVAILABLE: Final = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
    b"<Message>the emulator could not make the change durable; retry</Message></Error>"
)


class DurableAcknowledgements:
    """Wraps the gated app for the published listener (see the module docstring)."""

    def __init__(self, app: WsgiApp, wait_durable: Callable[[], None]) -> None:
        self._app = app
        self._wait_durable = wait_durable

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not may_change(environ):
            return self._app(environ, start_response)
        held: list[Any] = []
        written: list[bytes] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held[:] = [status, headers]
            return written.append  # WSGI's legacy write(): kept with the body

        body = list(self._app(environ, hold))
        try:
            self._wait_durable()
        except (TimeoutError, OSError, RuntimeError, SnapshotError) as error:
            log.warning("emulator.acknowledgement.not_durable", error=str(error))
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(_UNAVAILABLE)))],
            )
            return [_UNAVAILABLE]
        start_response(*held)
        return [*written, *body]
