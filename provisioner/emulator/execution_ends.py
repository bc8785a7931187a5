"""The end of a Step Functions execution, counted as a change of the emulator's state.

An execution ends in moto's interpreter thread, not in a request: its last states (a Pass, the
end of the program) and its status turning SUCCEEDED, FAILED or TIMED_OUT change moto's
backend without passing the gate, which counts changes by request (`gate.RequestGate`). A
snapshot taken between an execution's last request (the pipeline's RecordCompleted write) and
its end holds it RUNNING; with nothing counted after it, no later snapshot was taken (not even
the last one, at stop), and the restart reported the finished execution interrupted (FAILED)
although its file was COMPLETED. Counted, the end makes the next snapshot take it.

The patched name is checked at install, so a moto upgrade that moves it fails loudly instead of
silently leaving snapshots stale.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

_HOOK: Final = "terminated"
_LOCK: Final = threading.Lock()
_original: Callable[[Any], None] | None = None


def install(on_end: Callable[[], None]) -> None:
    """Call `on_end` after every execution's end is recorded (process-wide, as moto is)."""
    global _original
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    with _LOCK:
        if _original is not None:
            raise RuntimeError("execution ends are already counted in this process")
        original = BaseExecutionWorkerCommunication.__dict__.get(_HOOK)
        if original is None or not callable(original):
            raise RuntimeError(
                f"moto changed: {BaseExecutionWorkerCommunication.__qualname__}.{_HOOK} no "
                "longer exists; check provisioner.emulator.execution_ends against the "
                "installed moto"
            )

        @functools.wraps(original)
        def terminated(communication: Any) -> None:
            try:
                original(communication)  # sets the status, the stop date, the output
            finally:
                on_end()  # after: a snapshot that counted it also holds the end

        setattr(BaseExecutionWorkerCommunication, _HOOK, terminated)
        _original = original


def uninstall() -> None:
    global _original
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    with _LOCK:
        if _original is not None:
            setattr(BaseExecutionWorkerCommunication, _HOOK, _original)
            _original = None
