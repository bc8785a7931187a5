"""The local Lambda runtime's worker processes, shared by every environment of the service.

At most `size` processes (the machine's cores by default), started on demand from the
forkserver, run every local function's invocations, one at a time each. An invocation carries
everything that makes it its function's: the handler, exactly the function's environment
variables, its limits and its deployed code (`deployed_code`), so one worker can serve any
environment next. Like Lambda's sandbox, a worker that overruns the function's timeout is
killed (`Sandbox.Timedout`), and one that dies midway (killed, out of memory, `os._exit`) is
reported as a runtime failure (`Runtime.ExitError`) and replaced by a fresh process.

Workers exit with the service (`lifeline`), and they are its descendants, so the children
record covers them.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Final

import structlog

from provisioner.emulator.deployed_code import ArchiveError, CodeCache, never_write_bytecode
from provisioner.emulator.lambda_dispatch import (
    UNAVAILABLE_ERROR,
    DeployedFunction,
    InvocationResult,
)
from provisioner.emulator.lambda_runtime import TIMEOUT_ERROR, LocalFunction
from provisioner.lifeline import die_with_parent, watch_service

log = structlog.get_logger(__name__)

EXIT_ERROR: Final = "Runtime.ExitError"
# Beyond a function's timeout, how long its worker may take to answer before it is killed:
# the worker reports an overrun itself (cold imports count in the handler's time, as they
# did before); this covers a handler that never returns.
KILL_GRACE_S: Final = 30.0
_START_TIMEOUT_S: Final = 120.0  # a fresh worker's imports, on a loaded machine
_STOP_JOIN_S: Final = 5.0
_READY: Final = "ready"
LOCAL_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def prepare_worker_process(endpoint_url: str, service_pid: int) -> None:
    """A worker's AWS SDK talks to the emulator, as the functions' would talk to AWS (a
    dedicated process, so setting its environment is its own business). It exits with the
    service: an idle worker would otherwise wait on its pipe forever."""
    die_with_parent()
    watch_service(service_pid)
    never_write_bytecode()
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy"):
            del os.environ[name]
    os.environ.update({**LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint_url})


def serve(connection: Connection, endpoint_url: str, service_pid: int) -> None:
    """A worker's life: run the invocations that arrive, one at a time, until the pipe closes."""
    prepare_worker_process(endpoint_url, service_pid)
    connection.send(_READY)
    while True:
        try:
            function, payload = connection.recv()
        except (EOFError, OSError):
            return
        result: InvocationResult = function(payload)
        connection.send(result)


@dataclass(eq=False)  # identity: a set of the live ones
class _Worker:
    process: BaseProcess
    connection: Connection

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def end(self) -> None:
        """Kill it (idempotent) and reap it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(_STOP_JOIN_S)
        self.connection.close()


class RuntimeWorkers:
    """At most `size` worker processes; `invoke` runs one invocation on a free one."""

    def __init__(
        self, size: int, endpoint_url: str, code: CodeCache, *, kill_grace_s: float = KILL_GRACE_S
    ) -> None:
        if size < 1:
            raise ValueError("at least one runtime worker is needed")
        self.size = size
        self._kill_grace_s = kill_grace_s
        self._endpoint_url = endpoint_url
        self._code = code
        self._context: ForkServerContext = multiprocessing.get_context("forkserver")
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0  # live workers, idle or busy
        self._all: set[_Worker] = set()
        self._stopped = False
        self.replaced = 0  # workers that died or were killed (diagnostics, tests)

    def pids(self) -> list[int]:
        """The live workers' process ids."""
        with self._lock:
            return [worker.pid for worker in self._all if worker.pid is not None]

    def invoke(self, function: DeployedFunction, payload: bytes) -> InvocationResult:
        """Run one invocation of `function` as deployed (an `Invoker` of the dispatcher)."""
        try:
            root = self._code.unpacked(function.code_sha256, function.code)
        except ArchiveError as error:
            return InvocationResult.failure("Runtime.ImportModuleError", str(error))
        local = LocalFunction.deployed(function, str(root))
        try:
            worker = self._acquire()
        except RuntimeError as error:  # stopped, or a fresh worker would not start
            return InvocationResult.failure(UNAVAILABLE_ERROR, str(error))
        try:
            worker.connection.send((local, payload))
            if not worker.connection.poll(local.timeout_s + self._kill_grace_s):
                self._discard(worker, "timeout")
                return InvocationResult.failure(
                    TIMEOUT_ERROR, f"Task timed out after {local.timeout_s:.2f} seconds"
                )
            result: InvocationResult = worker.connection.recv()
        except (EOFError, OSError):
            self._discard(worker, "exited")
            return InvocationResult.failure(EXIT_ERROR, _exit_message(worker.process.exitcode))
        self._release(worker)
        return result

    def stop(self) -> None:
        """End every worker (an invocation in flight is reported as a runtime exit)."""
        with self._lock:
            self._stopped = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.end()
        log.info("runtime.workers_stopped", workers=len(workers))

    def _acquire(self) -> _Worker:
        while True:
            try:
                idle = self._idle.get_nowait()
            except queue.Empty:
                pass
            else:
                if idle.process.is_alive():
                    return idle
                self._discard(idle, "exited while idle")
                continue
            with self._lock:
                if self._stopped:
                    raise RuntimeError("the runtime workers are stopped")
                start = self._started < self.size
                if start:
                    self._started += 1
            if start:
                try:
                    return self._start()
                except BaseException:
                    with self._lock:
                        self._started -= 1
                    raise
            # All busy: wait for one (waiters are served in arrival order).
            try:
                idle = self._idle.get(timeout=1.0)
            except queue.Empty:
                continue  # re-check: a worker may have died, leaving room to start one
            if idle.process.is_alive():
                return idle
            self._discard(idle, "exited while idle")

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=serve,
            args=(theirs, self._endpoint_url, os.getpid()),
            name="lambda-runtime-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        with self._lock:
            self._all.add(worker)
        try:
            ready = ours.poll(_START_TIMEOUT_S) and ours.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            worker.end()
            with self._lock:
                self._all.discard(worker)
            raise RuntimeError(f"a runtime worker did not start (exit {process.exitcode})")
        log.info("runtime.worker_started", pid=process.pid, size=self.size)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            stopped = self._stopped
        if stopped:
            worker.end()
        else:
            self._idle.put(worker)

    def _discard(self, worker: _Worker, why: str) -> None:
        worker.end()
        with self._lock:
            self._all.discard(worker)
            self._started -= 1
            self.replaced += 1
        log.warning(
            "runtime.worker_replaced", pid=worker.pid, why=why, exitcode=worker.process.exitcode
        )


def _exit_message(exitcode: int | None) -> str:
    """Lambda's words for a runtime that died midway."""
    if exitcode is not None and exitcode < 0:
        return f"Runtime exited with error: signal {-exitcode}"
    return f"Runtime exited with error: exit status {exitcode}"
