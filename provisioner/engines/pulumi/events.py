"""Pulumi's engine events and CLI output → the service's `EngineEvent`s (redacted)."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

import pulumi.automation as auto
import structlog

from provisioner.engines.base import (
    EngineEvent,
    EventType,
    OperationContext,
    ResourceDrift,
)
from provisioner.engines.pulumi.drift import resource_drift
from provisioner.logging import SecretRedactor

logger = structlog.get_logger(__name__)

MESSAGE_MAX_CHARS: Final = 4000


_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Pulumi's own colour directives, e.g. `<{%fg 1%}>`, left in messages rendered as "raw".


# Pulumi's own colour directives, e.g. `<{%fg 1%}>`, left in messages rendered as "raw".
_PULUMI_COLOR: Final = re.compile(r"<\{%[^%]*%\}>")


_SEVERITIES: Final = {"info#err": "info"}


class EventSink:
    """Turns Automation API events and CLI output into our events, redacted, one at a time.

    The SDK calls back from its own threads (gRPC for engine events, one reader per stream for
    CLI output), hence the lock.
    """

    def __init__(self, context: OperationContext, redact: SecretRedactor) -> None:
        self._context = context
        self._redact = redact
        self._lock = threading.Lock()
        self.first_error: str | None = None
        # What the resource steps of a refresh found, by URN (provisioner.engines.pulumi.drift).
        self.drift: dict[str, ResourceDrift] = {}

    def emit(
        self,
        type_: EventType,
        message: str,
        *,
        resource: str | None = None,
        resource_type: str | None = None,
        step: str | None = None,
        severity: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        text = self._redact.redact_text(clean_text(message))
        if len(text) > MESSAGE_MAX_CHARS:
            text = text[: MESSAGE_MAX_CHARS - 1] + "…"
        event = EngineEvent(
            type=type_,
            message=text,
            resource=resource,
            resource_type=resource_type,
            step=step,
            severity=severity,
            data=dict(data or {}),
        )
        with self._lock:
            self._context.emit(event)

    def on_output(self, line: str) -> None:
        self._cli_line(line, "stdout")

    def on_error(self, line: str) -> None:
        self._cli_line(line, "stderr")

    def _cli_line(self, line: str, stream: str) -> None:
        if line.strip():
            self.emit(EventType.DIAGNOSTIC, line, severity="debug", data={"stream": stream})

    def on_event(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            op = op_name(meta.op)
            self.emit(
                EventType.RESOURCE_STARTED,
                f"{op} {meta.type} {urn_name(meta.urn)}",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
                data={"planning": True} if event.resource_pre_event.planning else None,
            )
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            op = op_name(meta.op)
            found = resource_drift(meta)
            if found is not None:
                with self._lock:
                    self.drift[meta.urn] = found
            self.emit(
                EventType.RESOURCE_FINISHED,
                f"{op} {meta.type} {urn_name(meta.urn)}: done",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
            )
        elif event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            op = op_name(meta.op)
            self.emit(
                EventType.RESOURCE_FAILED,
                f"{op} {meta.type} {urn_name(meta.urn)}: failed",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
                severity="error",
            )
        elif event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
        elif event.summary_event is not None:
            summary = event.summary_event
            changes = changes_by_op(summary.resource_changes)
            described = ", ".join(f"{op} {count}" for op, count in sorted(changes.items()))
            self.emit(
                EventType.SUMMARY,
                f"changes: {described}" if described else "no changes",
                data={
                    "changes": changes,
                    "duration_s": summary.duration_seconds,
                    "maybe_corrupt": bool(summary.maybe_corrupt),
                },
            )

    def _diagnostic(self, diagnostic: auto.DiagnosticEvent) -> None:
        # Ephemeral diagnostics are transient progress lines the CLI overwrites in place.
        if diagnostic.ephemeral:
            return
        message = clean_text(diagnostic.message).strip()
        if not message:
            return
        severity = _SEVERITIES.get(diagnostic.severity, diagnostic.severity or "info")
        if diagnostic.urn:
            message = f"{urn_name(diagnostic.urn)}: {message}"
        if severity == "error" and self.first_error is None:
            self.first_error = self._redact.redact_text(message)
        self.emit(EventType.DIAGNOSTIC, message, resource=diagnostic.urn, severity=severity)


def clean_text(text: str) -> str:
    return _PULUMI_COLOR.sub("", _ANSI_ESCAPE.sub("", text))


def op_name(op: object) -> str:
    return str(op.value) if isinstance(op, Enum) else str(op)


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "?"


def changes_by_op(resource_changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {op_name(op): int(count) for op, count in (resource_changes or {}).items()}
