"""The production engine: one Pulumi stack per environment, driven through the Automation API.

The only module of the service that imports `pulumi.automation`, and (see `_scrubbed_environ`)
the only one that touches `os.environ`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Final, assert_never
from urllib.parse import unquote, urlparse

import pulumi.automation as auto
import structlog

from provisioner.config import Settings
from provisioner.engines.aws import AwsCredentials, resolve_aws_credentials
from provisioner.engines.base import (
    EngineEvent,
    EngineHealth,
    EventType,
    OperationContext,
    OperationKind,
    OperationRequest,
    OperationResult,
)
from provisioner.errors import (
    ConcurrentUpdateError,
    EngineError,
    EngineUnavailableError,
    OperationCancelledError,
    StackExistsError,
    StackNotFoundError,
)
from stacks.config import PipelineConfig
from stacks.program import STACK_OUTPUTS, expected_resource_count, pipeline_program

logger = structlog.get_logger(__name__)

PULUMI_NOT_FOUND: Final = (
    "Pulumi CLI not found on PATH: install it (see Dockerfile) or run with PROVISIONER_ENGINE=local"
)
# Refresh and destroy of an inline program need `--client`, added in Pulumi 3.181.
MINIMUM_CLI_VERSION: Final = (3, 181)
REDACTED: Final = "***"
SECRET_OUTPUT: Final = "[secret]"
DETAIL_MAX_CHARS: Final = 300
MESSAGE_MAX_CHARS: Final = 4000
VERSION_TIMEOUT_S: Final = 10.0
_SCRUBBED_PREFIXES: Final = ("AWS_", "PULUMI_CONFIG_PASSPHRASE")
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Pulumi's own colour directives, e.g. `<{%fg 1%}>`, left in messages rendered as "raw".
_PULUMI_COLOR: Final = re.compile(r"<\{%[^%]*%\}>")
_VERSION: Final = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_SEVERITIES: Final = {"info#err": "info"}


def inline_program(config: PipelineConfig) -> auto.PulumiFn:
    """The program every operation runs: the pipeline of `stacks.program`, for this config."""
    return pipeline_program(config)


def _open_stack(
    stack_name: str,
    project_name: str,
    program: auto.PulumiFn,
    opts: auto.LocalWorkspaceOptions,
    *,
    create: bool,
) -> auto.Stack:
    """The one call into the Automation API's stack factories (tests replace it).

    `create` means create-or-select: a stack left behind by a failed earlier create is reused.
    """
    factory = auto.create_or_select_stack if create else auto.select_stack
    return factory(stack_name, project_name=project_name, program=program, opts=opts)


class PulumiEngine:
    """Runs one operation per worker process against the configured Pulumi backend."""

    name: str = "pulumi"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @classmethod
    def build(cls, settings: Settings) -> PulumiEngine:
        return cls(settings)

    def run(self, request: OperationRequest, context: OperationContext) -> OperationResult:
        config = request.config
        log = logger.bind(
            operation_id=request.operation_id,
            kind=str(request.kind),
            stack=config.stack_name,
        )
        _raise_if_cancelled(context, "start")
        passphrase = self._passphrase()
        # Credentials are resolved before the environment is scrubbed: the default chain may
        # legitimately read the worker's own AWS_* variables (web identity, container role).
        aws = resolve_aws_credentials(
            self._settings, config.region, config.tenant, request.operation_id
        )
        redact = _Redactor([*aws.secrets, *self._settings.secret_values()])
        env_vars = self._env_vars(config, aws, passphrase)
        _ensure_file_backend(self._settings.resolved_pulumi_backend_url)
        work_dir = self._make_work_dir(config.stack_name, request.operation_id)
        log.info("pulumi.operation.started", aws_credentials=aws.source, work_dir=str(work_dir))
        operation = _Operation(
            request=request,
            context=context,
            sink=_EventSink(context, redact),
            redact=redact,
            log=log,
            project=self._settings.pulumi_project,
            opts=self._workspace_options(config, work_dir, env_vars),
        )
        try:
            with _scrubbed_environ():
                result = operation.execute()
        finally:
            _remove_work_dir(work_dir, log)
        log.info("pulumi.operation.finished", changes=result.changes)
        return result

    def health(self) -> EngineHealth:
        path = shutil.which("pulumi")
        if path is None:
            return EngineHealth(False, "Pulumi CLI not found on PATH")
        try:
            completed = subprocess.run(
                [path, "version"],
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT_S,
                env=_probe_env(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return EngineHealth(
                False, f"`pulumi version` did not answer within {VERSION_TIMEOUT_S:g} s"
            )
        except OSError as exc:
            return EngineHealth(False, f"Pulumi CLI at {path} could not be started: {exc.strerror}")
        match = _VERSION.search(completed.stdout)
        if completed.returncode != 0 or match is None:
            return EngineHealth(
                False, f"`pulumi version` failed (exit code {completed.returncode})"
            )
        version = f"v{match.group(1)}.{match.group(2)}.{match.group(3)}"
        if (int(match.group(1)), int(match.group(2))) < MINIMUM_CLI_VERSION:
            minimum = ".".join(str(part) for part in MINIMUM_CLI_VERSION)
            return EngineHealth(False, f"pulumi {version} is too old: {minimum} or newer is needed")
        return EngineHealth(True, f"pulumi {version}")

    # --- per-operation set-up -------------------------------------------------------------

    def _passphrase(self) -> str | None:
        if self._settings.pulumi_secrets_provider != "passphrase":
            return None
        if self._settings.pulumi_config_passphrase is None:
            raise EngineUnavailableError(
                "the passphrase secrets provider needs PROVISIONER_PULUMI_CONFIG_PASSPHRASE"
            )
        return self._settings.pulumi_config_passphrase.get_secret_value()

    def _env_vars(
        self, config: PipelineConfig, aws: AwsCredentials, passphrase: str | None
    ) -> dict[str, str]:
        env = {
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Work dirs are per operation, so Pulumi.<stack>.yaml never survives: the stack's
            # state (in the shared backend) is the source of its salt or encrypted data key.
            "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true",
            "NO_COLOR": "1",
            "AWS_REGION": config.region,
            "AWS_DEFAULT_REGION": config.region,
            **aws.env,
        }
        if passphrase is not None:
            env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
        return env

    def _workspace_options(
        self, config: PipelineConfig, work_dir: Path, env_vars: Mapping[str, str]
    ) -> auto.LocalWorkspaceOptions:
        provider = self._settings.pulumi_secrets_provider
        return auto.LocalWorkspaceOptions(
            work_dir=str(work_dir),
            project_settings=auto.ProjectSettings(
                name=self._settings.pulumi_project,
                runtime="python",
                # Inline programs ignore `main`; set it so the SDK does not record our cwd.
                main=str(work_dir),
                backend=auto.ProjectBackend(url=self._settings.resolved_pulumi_backend_url),
            ),
            # `secrets_provider` reaches `stack init`; the stack settings file carries it to
            # `stack select` too, so every create or select names the provider explicitly.
            secrets_provider=provider,
            stack_settings={config.stack_name: auto.StackSettings(secrets_provider=provider)},
            env_vars=dict(env_vars),
        )

    def _make_work_dir(self, stack_name: str, operation_id: str) -> Path:
        root = (self._settings.data_dir / "work").resolve()
        root.mkdir(parents=True, exist_ok=True)
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", operation_id)[:64]
        # mkdtemp: unique even if an operation id repeats, and private (0700): the stack settings
        # the CLI writes there hold the stack's encryption salt or encrypted data key.
        return Path(tempfile.mkdtemp(prefix=f"{stack_name}-{safe_id}-", dir=root))


class _Operation:
    """One operation against one stack: the CLI steps, their events and their errors."""

    def __init__(
        self,
        *,
        request: OperationRequest,
        context: OperationContext,
        sink: _EventSink,
        redact: _Redactor,
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
            changes=_changes(result.summary.resource_changes),
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
        return OperationResult(changes=_changes(result.summary.resource_changes))

    def _refresh(self) -> OperationResult:
        stack = self._open(create=False)
        result = self._recover(stack)
        if result is None:
            result = self._run_refresh(stack, "refresh", clear_pending_creates=None)
        return OperationResult(changes=_changes(result.summary.resource_changes))

    def _preview(self) -> OperationResult:
        stack = self._open(create=False)
        # `preview` has no show_secrets parameter: it never reads the stack's history.
        with self._step("preview"):
            result = stack.preview(**self._cli_options())
        return OperationResult(changes=_changes(result.change_summary))

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
            stack = _open_stack(
                self._config.stack_name,
                self._project,
                inline_program(self._config),
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
        _raise_if_cancelled(self._context, step)
        self._log.info("pulumi.step.started", step=step)
        self._sink.first_error = None  # a failure's reason comes from its own step
        try:
            yield
        except auto.CommandError as exc:
            error = self._translate(step, exc)
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

    def _translate(self, step: str, exc: auto.CommandError) -> EngineError:
        stack = self._config.stack_name
        if self._context.cancel_requested.is_set():
            return OperationCancelledError(f"operation cancelled during pulumi {step}")
        if isinstance(exc, auto.StackAlreadyExistsError):
            return StackExistsError(f"stack {stack} already exists")
        if isinstance(exc, auto.StackNotFoundError):
            return StackNotFoundError(f"stack {stack} does not exist")
        if isinstance(exc, auto.ConcurrentUpdateError):
            return ConcurrentUpdateError(
                f"stack {stack} is locked by another update; retry once it has finished"
            )
        return EngineError(f"pulumi {step} failed: {self._failure_summary(exc)}")

    def _failure_summary(self, exc: auto.CommandError) -> str:
        """A short, safe reason: the first error diagnostic, else the first `error:` line."""
        reason = self._sink.first_error
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
        reason = " ".join(self._redact(_clean(reason)).split())
        if len(reason) > DETAIL_MAX_CHARS:
            reason = reason[: DETAIL_MAX_CHARS - 1] + "…"
        return reason

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


class _EventSink:
    """Turns Automation API events and CLI output into our events, redacted, one at a time.

    The SDK calls back from its own threads (gRPC for engine events, one reader per stream for
    CLI output), hence the lock.
    """

    def __init__(self, context: OperationContext, redact: _Redactor) -> None:
        self._context = context
        self._redact = redact
        self._lock = threading.Lock()
        self.first_error: str | None = None

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
        text = self._redact(_clean(message))
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
            op = _op_name(meta.op)
            self.emit(
                EventType.RESOURCE_STARTED,
                f"{op} {meta.type} {_urn_name(meta.urn)}",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
                data={"planning": True} if event.resource_pre_event.planning else None,
            )
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            op = _op_name(meta.op)
            self.emit(
                EventType.RESOURCE_FINISHED,
                f"{op} {meta.type} {_urn_name(meta.urn)}: done",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
            )
        elif event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            op = _op_name(meta.op)
            self.emit(
                EventType.RESOURCE_FAILED,
                f"{op} {meta.type} {_urn_name(meta.urn)}: failed",
                resource=meta.urn,
                resource_type=meta.type,
                step=op,
                severity="error",
            )
        elif event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
        elif event.summary_event is not None:
            summary = event.summary_event
            changes = _changes(summary.resource_changes)
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
        message = _clean(diagnostic.message).strip()
        if not message:
            return
        severity = _SEVERITIES.get(diagnostic.severity, diagnostic.severity or "info")
        if diagnostic.urn:
            message = f"{_urn_name(diagnostic.urn)}: {message}"
        if severity == "error" and self.first_error is None:
            self.first_error = self._redact(message)
        self.emit(EventType.DIAGNOSTIC, message, resource=diagnostic.urn, severity=severity)


class _Redactor:
    """Replaces every known secret value (passphrase, AWS secret key, session token) by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


@contextlib.contextmanager
def _scrubbed_environ() -> Iterator[None]:
    """Hide the worker's ambient AWS_* and PULUMI_CONFIG_PASSPHRASE* variables from the CLI.

    The SDK starts the CLI with `{**os.environ, **env_vars}`, so whatever the worker inherited
    reaches the CLI and its AWS provider unless `env_vars` overrides it: an ambient
    AWS_SESSION_TOKEN next to static keys, an AWS_PROFILE, a stray passphrase. The worker is a
    process dedicated to one operation, which is why this module, and only this one, may edit
    os.environ; the values come back afterwards, leaving the process as it was found.
    """
    removed = {
        name: os.environ.pop(name)
        for name in list(os.environ)
        if name.startswith(_SCRUBBED_PREFIXES)
    }
    try:
        yield
    finally:
        os.environ.update(removed)


def _probe_env() -> dict[str, str]:
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(_SCRUBBED_PREFIXES)
    }
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    return env


def _ensure_file_backend(url: str) -> None:
    """The file backend's directory must exist before `pulumi` can log in to it."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return
    # file:///abs/path, file://~/path and file://relative/path all name a directory.
    path = Path(unquote(parsed.netloc + parsed.path)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineUnavailableError(
            f"cannot create the Pulumi state directory {path}: {exc.strerror}"
        ) from None


def _remove_work_dir(work_dir: Path, log: Any) -> None:
    try:
        shutil.rmtree(work_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("pulumi.work_dir.not_removed", work_dir=str(work_dir), error=exc.strerror)


def _raise_if_cancelled(context: OperationContext, step: str) -> None:
    if context.cancel_requested.is_set():
        raise OperationCancelledError(f"operation cancelled before pulumi {step}")


def _clean(text: str) -> str:
    return _PULUMI_COLOR.sub("", _ANSI_ESCAPE.sub("", text))


def _op_name(op: object) -> str:
    return str(op.value) if isinstance(op, Enum) else str(op)


def _urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "?"


def _changes(resource_changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {_op_name(op): int(count) for op, count in (resource_changes or {}).items()}
