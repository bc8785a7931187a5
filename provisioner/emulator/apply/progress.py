"""The applier's own progress report, one per resource step; the local engine turns it into
engine events (the emulator knows nothing of engines)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class ResourceProgress:
    """One step of one resource. `message` is one human line; it never carries a secret."""

    phase: Phase
    message: str
    resource: str  # physical name
    resource_type: str  # the inventory's type token
    step: str  # create / update / same / delete
    changes: tuple[str, ...] | None = None  # what differed, when the step compared anything


ProgressSink = Callable[[ResourceProgress], None]
StopCheck = Callable[[], bool]


def ignore_progress(progress: ResourceProgress) -> None:
    del progress


def never_stop() -> bool:
    return False
