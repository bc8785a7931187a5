"""The worker process: runs one engine operation and reports over a pipe.

Engine work blocks (the Pulumi Automation API spawns the CLI and waits), so it never runs in
the service's event loop: the runner starts one of these processes per operation. The worker
leads its own process group, so a cancel's SIGINT reaches the Pulumi CLI it spawns, and a kill
after the grace period takes the whole tree. Cancels also arrive in-band on the lifeline pipe; if
the service dies, that pipe closes and the worker stops its operation gracefully.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any, Final

import structlog

from provisioner.config import Settings
from provisioner.engines import load_engine
from provisioner.engines.base import (
    EngineEvent,
    OperationRequest,
    OperationResult,
)
from provisioner.errors import EngineError, OperationCancelledError
from provisioner.lifeline import die_with_parent
from provisioner.logging import configure_logging, redactor

log = structlog.get_logger(__name__)

# Messages the worker sends: ("event", dict) · ("expect", int) · ("result", dict) · ("error", dict)
EVENT: Final = "event"
EXPECT: Final = "expect"
RESULT: Final = "result"
ERROR: Final = "error"
# What the service sends on the lifeline: stop gracefully. (SIGINT to the process group carries
# the same request to the Pulumi CLI; this also covers a worker that has not set up its group.)
CANCEL: Final = "cancel"
# How long the engine may take to stop after the service vanished; then the worker's process
# group (the Pulumi CLI included) is killed: no child outlives the service
# (docs/architecture.md §9).
ORPHAN_GRACE_S: Final = 3.0


class WorkerContext:
    """The `OperationContext` an engine gets: events go straight to the service."""

    def __init__(self, connection: Connection, cancel: threading.Event) -> None:
        self._connection = connection
        self._cancel = cancel
        self._lock = threading.Lock()

    @property
    def cancel_requested(self) -> threading.Event:
        return self._cancel

    def emit(self, event: EngineEvent) -> None:
        payload = asdict(event)
        payload["message"] = redactor.reason(event.message)
        payload["data"] = redactor.redact_value(dict(event.data))
        self._send((EVENT, payload))

    def expect_resources(self, count: int) -> None:
        self._send((EXPECT, int(count)))

    def _send(self, message: tuple[str, Any]) -> None:
        # Engines may emit from callback threads (the Automation API's event reader).
        with self._lock:
            try:
                self._connection.send(message)
            except (BrokenPipeError, EOFError, OSError):
                # The service is gone; the lifeline watcher is already stopping the engine.
                log.warning("worker.service_gone", message_type=message[0])


def run_worker(
    engine_reference: str,
    settings: Settings,
    request: OperationRequest,
    connection: Connection,
    lifeline: Connection,
) -> None:
    """Entry point of the worker process."""
    os.setpgid(0, 0)
    die_with_parent()  # the forkserver; the lifeline below covers the service itself
    configure_logging(settings.log_level, settings.log_json)
    redactor.register(settings.secret_values())
    structlog.contextvars.bind_contextvars(operation_id=request.operation_id)
    cancel = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        cancel.set()

    # SIGINT/SIGTERM ask for a graceful stop; the engine notices `cancel_requested`.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(target=_watch_lifeline, args=(lifeline, cancel), daemon=True).start()

    context = WorkerContext(connection, cancel)
    try:
        engine = load_engine(engine_reference).build(settings)
        result: OperationResult = engine.run(request, context)
        context._send((RESULT, asdict(result)))
    except OperationCancelledError as error:
        detail = redactor.reason(error.detail)
        context._send((ERROR, {"code": error.code, "detail": detail, "cancelled": True}))
    except EngineError as error:
        context._send((ERROR, {"code": error.code, "detail": redactor.reason(error.detail)}))
    except Exception as error:  # the process boundary: record why the operation failed
        log.exception("worker.engine_crashed", error_type=type(error).__name__)
        detail = f"the engine failed unexpectedly ({type(error).__name__}); see the service log"
        context._send((ERROR, {"code": "internal_error", "detail": detail}))
    finally:
        connection.close()


def _watch_lifeline(lifeline: Connection, cancel: threading.Event) -> None:
    """Relays in-band cancels; an EOF means the service died."""
    while True:
        try:
            message = lifeline.recv()
        except (EOFError, OSError):
            break
        if message == CANCEL:
            cancel.set()
    # The service is gone: stop gracefully (SIGINT reaches a running Pulumi CLI in our process
    # group; our own handler only sets `cancel`), then give up.
    log.warning("worker.orphaned")
    cancel.set()
    try:
        os.killpg(os.getpgid(0), signal.SIGINT)
    except OSError:
        pass
    timer = threading.Timer(ORPHAN_GRACE_S, _kill_own_group)
    timer.daemon = True
    timer.start()


def _kill_own_group() -> None:
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the engine's subprocesses, then us
    finally:
        os._exit(3)
