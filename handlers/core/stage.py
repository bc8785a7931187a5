"""The payload the state machine gives every stage Lambda (`stacks.state_machine`), parsed.

Each stage receives `{fileId, bucket, objectKey, versionId, attempt}`; the processor also
`validation: {result: <validator output>}` and the aggregator `processing: {result: ...}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from handlers.core.errors import MalformedEventError, PipelineError
from handlers.core.ids import is_file_id

_R = TypeVar("_R")


@dataclass(frozen=True)
class StageRequest:
    file_id: str
    bucket: str
    object_key: str
    version_id: str
    attempt: int

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> StageRequest:
        file_id = _text(event, "fileId")
        if not is_file_id(file_id):
            raise MalformedEventError("fileId is not 64 lowercase hex characters")
        attempt = event.get("attempt", 1)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise MalformedEventError("attempt is not a positive integer")
        return cls(
            file_id=file_id,
            bucket=_text(event, "bucket"),
            object_key=_text(event, "objectKey"),
            version_id=_text(event, "versionId"),
            attempt=attempt,
        )


def stage_result(event: Mapping[str, Any], stage_key: str) -> Mapping[str, Any]:
    """`event[stage_key]["result"]`: an earlier stage's output as the state machine nests it."""
    outer = event.get(stage_key)
    result = outer.get("result") if isinstance(outer, Mapping) else None
    if not isinstance(result, Mapping):
        raise MalformedEventError(f"payload has no {stage_key}.result object")
    return result


def result_int(result: Mapping[str, Any], key: str) -> int:
    value = result.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEventError(f"{key} is not a non-negative integer")
    return value


def logs_failures(logger: Logger) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Log a business failure (the file's fault) as a warning, then let it propagate: the state
    machine catches it by class name and records it as the file's FAILED reason."""

    def decorate(handler: Callable[..., _R]) -> Callable[..., _R]:
        @wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> _R:
            try:
                return handler(*args, **kwargs)
            except PipelineError as exc:
                logger.warning(
                    "stage.rejected", extra={"errorType": type(exc).__name__, "reason": str(exc)}
                )
                raise

        return wrapper

    return decorate


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEventError(f"payload field {key} is missing or not a string")
    return value
