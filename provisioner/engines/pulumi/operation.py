"""One operation against one stack: the CLI steps, their events and their errors."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, assert_never

import pulumi.automation as auto
import structlog

from provisioner.engines.base import (
    EventType,
    OperationContext,
    OperationKind,
    OperationRequest,
    OperationResult,
)
from provisioner.engines.pulumi import automation
from provisioner.engines.pulumi.errors import (
    PULUMI_NOT_FOUND,
    raise_if_cancelled,
    translate_command_error,
)
from provisioner.engines.pulumi.events import (
    EventSink,
    changes_by_op,
)
from provisioner.errors import (
    ConcurrentUpdateError,
    EngineError,
    EngineUnavailableError,
    StackNotFoundError,
)
from provisioner.logging import SecretRedactor
from stacks.program import STACK_OUTPUTS, expected_resource_count

logger = structlog.get_logger(__name__)

SECRET_OUTPUT: Final = "[secret]"


class StackOperation:
    """One operation against one stack: the CLI steps, their events and their errors."""

    def __init__(
        self,
        *,
        request: OperationRequest,
        context: OperationContext,
        sink: EventSink,
        redact: SecretRedactor,
        log: Any,
        project: str,
        opts: auto.LocalWorkspaceOptions,
    ) -> None:
        self._request = request
        self._config = request.config
        self._context = context
        self._sink = sink
        self._redact = redact
        self._log = log
        self._project = project
        self._opts = opts

    def execute(self) -> OperationResult:
        kind = self._request.kind
        walks = 1
        if self._request.recover and kind in (
            OperationKind.CREATE,
            OperationKind.UPDATE,
            OperationKind.DESTROY,
        ):
            walks = 2  # the recovery refresh visits every resource once more
        self._context.expect_resources(expected_resource_count(self._config) * walks)
        match kind:
            case OperationKind.CREATE:
                return self._up(create=True)
            case OperationKind.UPDATE:
                return self._up(create=False)
            case OperationKind.DESTROY:
                return self._destroy()
            case OperationKind.REFRESH:
                return self._refresh()
            case OperationKind.PREVIEW:
                return self._preview()
            case OperationKind.DRIFT_CHECK:
                return self._drift_check()
            case _:
                assert_never(kind)

    # --- kinds ----------------------------------------------------------------------------

    def _up(self, *, create: bool) -> OperationResult:
        stack = self._open(create=create)
        self._recover(stack)
        with self._step("up"):
            result = stack.up(**self._cli_options(), show_secrets=False)
        return OperationResult(
            outputs=self._public_outputs(result.outputs),
            changes=changes_by_op(result.summary.resource_changes),
        )

    def _destroy(self) -> OperationResult:
        try:
            stack = self._open(create=False)
        except StackNotFoundError:
            self._sink.emit(
                EventType.DIAGNOSTIC,
                f"stack {self._config.stack_name} does not exist: nothing to destroy",
                severity="info",
            )
            return OperationResult()
        self._recover(stack)
        with self._step("destroy"):
            result = stack.destroy(**self._cli_options(), show_secrets=False)
        with self._step("stack rm"):
            stack.workspace.remove_stack(stack.name)
        return OperationResult(changes=changes_by_op(result.summary.resource_changes))

    def _refresh(self) -> OperationResult:
        stack = self._open(create=False)
        self._sink.drift.clear()
        result = self._recover(stack)
        if result is None:
            result = self._run_refresh(stack, "refresh", clear_pending_creates=None)
        return OperationResult(
            changes=changes_by_op(result.summary.resource_changes),
            drift=list(self._sink.drift.values()),
        )

    def _drift_check(self) -> OperationResult:
        """A refresh that writes nothing: `preview_refresh` (`refresh --preview-only`)."""
        stack = self._open(create=False)
        self._sink.drift.clear()
        with self._step("preview refresh"):
            result = stack.preview_refresh(**self._cli_options(), show_secrets=False)
        return OperationResult(
            changes=changes_by_op(result.change_summary), drift=list(self._sink.drift.values())
        )

    def _preview(self) -> OperationResult:
        stack = self._open(create=False)
        # `preview` has no show_secrets parameter: it never reads the stack's history.
        with self._step("preview"):
            result = stack.preview(**self._cli_options())
        return OperationResult(changes=changes_by_op(result.change_summary))

    # --- steps ----------------------------------------------------------------------------

    def _cli_options(self) -> dict[str, Any]:
        """What every up / refresh / destroy / preview gets: our callbacks, no colour, and no
        stack outputs printed (their values are masked there anyway, but need not be shown)."""
        return {
            "on_event": self._sink.on_event,
            "on_output": self._sink.on_output,
            "on_error": self._sink.on_error,
            "color": "never",
            "suppress_outputs": True,
        }

    def _open(self, *, create: bool) -> auto.Stack:
        with self._step("stack init/select" if create else "stack select"):
            stack = automation.open_stack(
                self._config.stack_name,
                self._project,
                automation.inline_program(self._config),
                self._opts,
                create=create,
            )
        with self._step("config set"):
            stack.set_config("aws:region", auto.ConfigValue(value=self._config.region))
        return stack

    def _recover(self, stack: auto.Stack) -> auto.RefreshResult | None:
        """After an interrupted run: drop the pending creates it can no longer complete.

        `recover` means the registry knows the previous operation is dead, so a lock still on the
        stack is the one its killed CLI left behind: it is cleared, once, and the refresh retried.
        """
        if not self._request.recover:
            return None
        try:
            return self._run_refresh(stack, "refresh (recover)", clear_pending_creates=True)
        except ConcurrentUpdateError:
            self._sink.emit(
                EventType.DIAGNOSTIC,
                "the interrupted operation left the stack locked: clearing its lock",
                severity="warning",
            )
        with self._step("cancel (stale lock)"):
            stack.cancel()
        return self._run_refresh(stack, "refresh (recover)", clear_pending_creates=True)

    def _run_refresh(
        self, stack: auto.Stack, step: str, *, clear_pending_creates: bool | None
    ) -> auto.RefreshResult:
        with self._step(step):
            return stack.refresh(
                **self._cli_options(),
                clear_pending_creates=clear_pending_creates,
                show_secrets=False,
            )

    @contextlib.contextmanager
    def _step(self, step: str) -> Iterator[None]:
        """Run one CLI step: not after a cancel, and with its failure mapped to our errors.

        Mapped errors are raised `from None`: the SDK's exception text is the whole CLI dump,
        which must not reach a traceback in a log.
        """
        raise_if_cancelled(self._context, step)
        self._log.info("pulumi.step.started", step=step)
        self._sink.first_error = None  # a failure's reason comes from its own step
        try:
            yield
        except auto.CommandError as exc:
            error = self._error(step, exc)
            self._log.warning("pulumi.step.failed", step=step, error=error.code)
            raise error from None
        except auto.InvalidVersionError as exc:
            raise EngineUnavailableError(f"unsupported Pulumi CLI: {exc}") from None
        except subprocess.CalledProcessError as exc:
            # Raised by the SDK's `pulumi version` probe when the CLI exists but cannot run.
            raise EngineUnavailableError(
                f"the Pulumi CLI failed to report its version (exit code {exc.returncode})"
            ) from None
        except FileNotFoundError as exc:
            if Path(str(exc.filename or "")).name != "pulumi":
                raise
            raise EngineUnavailableError(PULUMI_NOT_FOUND) from None

    def _error(self, step: str, exc: auto.CommandError) -> EngineError:
        return translate_command_error(
            exc,
            step=step,
            stack=self._config.stack_name,
            cancelled=self._context.cancel_requested.is_set(),
            first_error=self._sink.first_error,
            redact=self._redact,
        )

    def _public_outputs(self, outputs: Mapping[str, auto.OutputValue]) -> dict[str, str]:
        public: dict[str, str] = {}
        for name in STACK_OUTPUTS:
            output = outputs.get(name)
            if output is None:
                continue
            if output.secret:
                public[name] = SECRET_OUTPUT
            elif isinstance(output.value, str):
                public[name] = output.value
            else:
                public[name] = json.dumps(output.value, sort_keys=True)
        missing = sorted(set(STACK_OUTPUTS) - set(public))
        if missing:
            self._log.warning("pulumi.outputs.missing", outputs=missing)
        return public
