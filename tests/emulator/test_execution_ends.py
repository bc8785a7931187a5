"""Counting the end of Step Functions executions (the end itself, saved by the next snapshot:
tests/emulator/test_persistence.py)."""

from __future__ import annotations

import pytest
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

from provisioner.emulator import execution_ends


class _Ended(BaseExecutionWorkerCommunication):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def _reflect_execution_status(self) -> None:
        self.events.append("status")


def test_the_end_is_counted_after_it_is_recorded_and_uninstall_restores_moto() -> None:
    original = BaseExecutionWorkerCommunication.terminated
    events: list[str] = []
    execution_ends.install(lambda: events.append("counted"))
    try:
        with pytest.raises(RuntimeError, match="already counted"):
            execution_ends.install(lambda: None)
        _Ended(events).terminated()
    finally:
        execution_ends.uninstall()
    assert events == ["status", "counted"]
    assert BaseExecutionWorkerCommunication.terminated is original
    _Ended(events).terminated()
    assert events == ["status", "counted", "status"]


def test_a_moto_that_moved_the_hook_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(BaseExecutionWorkerCommunication, "terminated")
    with pytest.raises(
        RuntimeError, match="moto changed: BaseExecutionWorkerCommunication.terminated"
    ):
        execution_ends.install(lambda: None)
    assert execution_ends._original is None  # nothing half-installed
