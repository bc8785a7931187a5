"""What the emulator did during a benchmark: its requests by service and action, and the CPU
it spent (benchmarks only: it wraps moto's WSGI application and its Step Functions interpreter).

The emulator shares the service's process (its Lambda hook must), so its CPU is counted per
thread: `time.thread_time()` around every request moto serves and around every Step Functions
execution its interpreter runs (a thread of its own, which also makes that execution's SDK calls).
Those calls reach moto's application in the same thread (`provisioner.emulator.in_process`), so
only the outermost measured span of a thread counts: nothing is counted twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from provisioner.emulator.atomicity import signing_service


def _operation(environ: dict[str, Any]) -> str:
    service = signing_service(environ) or "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service} {target.rsplit('.', 1)[-1]}"
    method = environ.get("REQUEST_METHOD", "?")
    path = environ.get("PATH_INFO", "")
    if service == "lambda":
        return f"lambda {'Invoke' if path.endswith('/invocations') else method + ' ' + path}"
    if service == "s3":
        query = environ.get("QUERY_STRING", "")
        shape = "object" if path.strip("/").count("/") >= 1 else "bucket"
        return f"s3 {method} {shape}{' ?' + query.split('=')[0] if query else ''}"
    return f"{service} {method}"


class EmulatorMeter:
    """Counts requests and emulator CPU seconds while installed (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.cpu_s = 0.0
        self.executions = 0
        self._restore: list[Callable[[], None]] = []
        self._depth = threading.local()

    def _measured(self, run: Callable[[], Any], operation: str | None) -> Any:
        """`run()`, its thread's CPU seconds added unless an outer span already measures them;
        a request inside one is still counted."""
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        started = time.thread_time()
        try:
            return run()
        finally:
            self._depth.value = depth
            self._add(time.thread_time() - started if depth == 0 else 0.0, operation)

    def _add(self, cpu_s: float, operation: str | None = None) -> None:
        with self._lock:
            self.cpu_s += cpu_s
            if operation is None:
                self.executions += 1
            else:
                self.requests[operation] += 1

    def install(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication
        from moto.stepfunctions.parser.asl.component.program.program import Program

        meter = self
        original_call = DomainDispatcherApplication.__call__
        original_eval = Program._eval_body

        def call(app: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            return meter._measured(  # type: ignore[no-any-return]
                lambda: list(original_call(app, environ, start_response)), _operation(environ)
            )

        def eval_body(program: Any, env: Any) -> None:
            meter._measured(lambda: original_eval(program, env), None)

        DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]
        Program._eval_body = eval_body  # type: ignore[method-assign]
        self._restore = [
            lambda: setattr(DomainDispatcherApplication, "__call__", original_call),
            lambda: setattr(Program, "_eval_body", original_eval),
        ]

    def uninstall(self) -> None:
        for restore in self._restore:
            restore()
        self._restore = []

    def snapshot(self) -> tuple[Counter[str], float]:
        with self._lock:
            return Counter(self.requests), self.cpu_s
