"""Automation API failures → the service's `EngineError`s, with a short, safe reason."""

from __future__ import annotations

import re
from typing import Final

import pulumi.automation as auto
import structlog

from provisioner.engines.base import OperationContext
from provisioner.engines.pulumi.events import clean_text
from provisioner.errors import (
    ConcurrentUpdateError,
    EngineError,
    OperationCancelledError,
    StackExistsError,
    StackNotFoundError,
)
from provisioner.logging import SecretRedactor

logger = structlog.get_logger(__name__)

PULUMI_NOT_FOUND: Final = (
    "Pulumi CLI not found on PATH: install it (see Dockerfile) or run with PROVISIONER_ENGINE=local"
)
# Refresh and destroy of an inline program need `--client`, added in Pulumi 3.181.


DETAIL_MAX_CHARS: Final = 300


def translate_command_error(
    exc: auto.CommandError,
    *,
    step: str,
    stack: str,
    cancelled: bool,
    first_error: str | None,
    redact: SecretRedactor,
) -> EngineError:
    """The error an operation records for a failed CLI step (the pulumi/examples mapping)."""
    if cancelled:
        return OperationCancelledError(f"operation cancelled during pulumi {step}")
    if isinstance(exc, auto.StackAlreadyExistsError):
        return StackExistsError(f"stack {stack} already exists")
    if isinstance(exc, auto.StackNotFoundError):
        return StackNotFoundError(f"stack {stack} does not exist")
    if isinstance(exc, auto.ConcurrentUpdateError):
        return ConcurrentUpdateError(
            f"stack {stack} is locked by another update; retry once it has finished"
        )
    return EngineError(f"pulumi {step} failed: {failure_summary(exc, first_error, redact)}")


def failure_summary(exc: auto.CommandError, first_error: str | None, redact: SecretRedactor) -> str:
    """A short, safe reason: the first error diagnostic, else the first `error:` line."""
    reason = first_error
    # str(CommandError) is "\n code: N\n stdout: …\n stderr: …".
    text = str(exc)
    if reason is None:
        stderr = text.rpartition("\n stderr: ")[2]
        reason = next(
            (
                line.strip()
                for line in stderr.splitlines()
                if line.strip().lower().startswith("error:")
            ),
            None,
        )
    if reason is None:
        code = re.search(r"code: (-?\d+)", text)
        reason = f"exit code {code.group(1) if code else 'unknown'}"
    reason = " ".join(redact.redact_text(clean_text(reason)).split())
    if len(reason) > DETAIL_MAX_CHARS:
        reason = reason[: DETAIL_MAX_CHARS - 1] + "…"
    return reason


def raise_if_cancelled(context: OperationContext, step: str) -> None:
    if context.cancel_requested.is_set():
        raise OperationCancelledError(f"operation cancelled before pulumi {step}")
