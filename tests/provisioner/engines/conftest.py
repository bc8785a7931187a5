"""Engine test fixtures: settings, a recording operation context, a fake Automation API.

The fake replaces `pulumi.automation` at the engine's one boundary (`_open_stack`): it hands out
a stack that records each call with its arguments and the process environment the CLI would have
inherited, replays scripted engine events and CLI output, and fails on demand the way the SDK
does (raising its own `CommandError` subclasses).
"""

from __future__ import annotations

import inspect
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pulumi.automation as auto
import pytest
from pydantic import SecretStr

import provisioner.engines.pulumi.automation as pulumi_automation
from provisioner.config import Settings
from provisioner.engines.base import (
    EngineEvent,
    EventType,
    OperationKind,
    OperationRequest,
)
from stacks.config import PipelineConfig

PASSPHRASE = "correct-horse-battery-staple"
STATIC_KEY_ID = "AKIASTATICKEY0000001"
STATIC_SECRET = "static/secret+access/key0000000000000001"
# What a careless engine would pick up from the worker's own environment.
AMBIENT_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAAMBIENT000000001",
    "AWS_SECRET_ACCESS_KEY": "ambient/secret/key/000000000000000001",
    "AWS_SESSION_TOKEN": "ambient-session-token-000001",
    "AWS_PROFILE": "ambient-profile",
    "AWS_REGION": "ap-south-1",
    "PULUMI_CONFIG_PASSPHRASE": "ambient-passphrase-0001",
    "PULUMI_CONFIG_PASSPHRASE_FILE": "/tmp/ambient-passphrase-file",
}
STACK = "acme-dev"


@pytest.fixture
def config() -> PipelineConfig:
    return PipelineConfig(tenant="acme", environment="dev", region="eu-west-1")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Every pulumi and aws setting explicit, so the ambient PROVISIONER_* cannot leak in."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "engine": "pulumi",
        "pulumi_backend_url": None,
        "pulumi_secrets_provider": "passphrase",
        "pulumi_config_passphrase": SecretStr(PASSPHRASE),
        "pulumi_project": "market-data-pipeline",
        "aws_role_arn": None,
        "aws_access_key_id": SecretStr(STATIC_KEY_ID),
        "aws_secret_access_key": SecretStr(STATIC_SECRET),
        "aws_session_token": None,
        "aws_profile": None,
        "operation_timeout_s": 1800,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def ambient_aws(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The worker process inherited AWS credentials and a passphrase of its own."""
    for name, value in AMBIENT_AWS.items():
        monkeypatch.setenv(name, value)
    return AMBIENT_AWS


@pytest.fixture
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere in the default chain (and no instance metadata look-up)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class RecordingContext:
    """An `OperationContext` that keeps what the engine reports."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self.expected: list[int] = []
        self._cancel = threading.Event()

    @property
    def cancel_requested(self) -> threading.Event:
        return self._cancel

    def emit(self, event: EngineEvent) -> None:
        self.events.append(event)

    def expect_resources(self, count: int) -> None:
        self.expected.append(count)

    def of_type(self, type_: EventType) -> list[EngineEvent]:
        return [event for event in self.events if event.type == type_]

    def text(self) -> str:
        """Everything the events carry, as one string (to look for secrets in)."""
        return "\n".join(repr(event) for event in self.events)


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


def request(
    kind: OperationKind, config: PipelineConfig, *, recover: bool = False, op: str = "op-1"
) -> OperationRequest:
    return OperationRequest(operation_id=op, kind=kind, config=config, recover=recover)


def command_error(
    error_type: type[auto.CommandError] = auto.CommandError,
    *,
    stderr: str = "",
    stdout: str = "",
    code: int = 255,
) -> auto.CommandError:
    return error_type(auto.CommandResult(stdout=stdout, stderr=stderr, code=code))


# --- engine events, as the Automation API hands them to `on_event` -----------------------


def urn(name: str, type_: str) -> str:
    return f"urn:pulumi:{STACK}::market-data-pipeline::{type_}::{name}"


def _meta(op: auto.OpType, name: str, type_: str) -> auto.StepEventMetadata:
    return auto.StepEventMetadata(op=op, urn=urn(name, type_), type=type_, provider="")


def pre_event(op: auto.OpType, name: str, type_: str, seq: int = 0) -> auto.EngineEvent:
    return auto.EngineEvent(
        sequence=seq, timestamp=0, resource_pre_event=auto.ResourcePreEvent(_meta(op, name, type_))
    )


def outputs_event(op: auto.OpType, name: str, type_: str, seq: int = 0) -> auto.EngineEvent:
    return auto.EngineEvent(
        sequence=seq, timestamp=0, res_outputs_event=auto.ResOutputsEvent(_meta(op, name, type_))
    )


def failed_event(op: auto.OpType, name: str, type_: str, seq: int = 0) -> auto.EngineEvent:
    return auto.EngineEvent(
        sequence=seq,
        timestamp=0,
        res_op_failed_event=auto.ResOpFailedEvent(_meta(op, name, type_), status=1, steps=1),
    )


def diagnostic_event(
    message: str, severity: str = "info", *, resource: str | None = None, ephemeral: bool = False
) -> auto.EngineEvent:
    return auto.EngineEvent(
        sequence=0,
        timestamp=0,
        diagnostic_event=auto.DiagnosticEvent(
            message=message, color="raw", severity=severity, urn=resource, ephemeral=ephemeral
        ),
    )


def summary_event(changes: dict[str, int]) -> auto.EngineEvent:
    return auto.EngineEvent(
        sequence=0,
        timestamp=0,
        summary_event=auto.SummaryEvent(
            maybe_corrupt=False, duration_seconds=7, resource_changes=changes, policy_packs={}
        ),
    )


def update_summary(changes: dict[str, int]) -> auto.UpdateSummary:
    return auto.UpdateSummary(
        kind="update",
        start_time=datetime(2025, 1, 1),
        message="",
        environment={},
        config={},
        result="succeeded",
        resource_changes=changes,
    )


# --- the fake Automation API ---------------------------------------------------------------


@dataclass
class Call:
    method: str
    kwargs: dict[str, Any]
    environ: dict[str, str]  # what a CLI started now would inherit from this process


@dataclass
class Opened:
    stack_name: str
    project_name: str
    program: Any
    opts: auto.LocalWorkspaceOptions
    create: bool
    environ: dict[str, str]
    work_dir_existed: bool


@dataclass
class FakeAutomation:
    """What the engine sees of `pulumi.automation`, scripted per test."""

    existing: set[str] = field(default_factory=set)
    events: list[auto.EngineEvent] = field(default_factory=list)
    output_lines: list[str] = field(default_factory=list)
    outputs: dict[str, auto.OutputValue] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=lambda: {"create": 3})
    # method name ("open", "set_config", "up", "refresh", "destroy", "preview", "cancel",
    # "remove_stack")
    # -> exception raised when it is called (after its events are replayed)
    fail: dict[str, BaseException] = field(default_factory=dict)
    # the same, for the next call only
    fail_once: dict[str, BaseException] = field(default_factory=dict)
    # method name -> callback run when it is called (e.g. to cancel mid-step)
    on_call: dict[str, Callable[[], None]] = field(default_factory=dict)
    opened: list[Opened] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def open_stack(
        self,
        stack_name: str,
        project_name: str,
        program: Any,
        opts: auto.LocalWorkspaceOptions,
        *,
        create: bool,
    ) -> FakeStack:
        self.opened.append(
            Opened(
                stack_name,
                project_name,
                program,
                opts,
                create,
                dict(os.environ),
                Path(str(opts.work_dir)).is_dir(),
            )
        )
        self._hook("open")
        if not create and stack_name not in self.existing:
            raise command_error(
                auto.StackNotFoundError, stderr=f"error: no stack named '{stack_name}' found"
            )
        self.existing.add(stack_name)
        return FakeStack(self, stack_name)

    def record(self, method: str, kwargs: dict[str, Any]) -> None:
        self.calls.append(Call(method, kwargs, dict(os.environ)))

    def _hook(self, method: str) -> None:
        callback = self.on_call.get(method)
        if callback is not None:
            callback()
        error = self.fail_once.pop(method, None) or self.fail.get(method)
        if error is not None:
            raise error

    def run_cli(self, method: str, kwargs: dict[str, Any]) -> None:
        """Record a stack method, check it against the SDK's signature, replay its output."""
        inspect.signature(getattr(auto.Stack, method)).bind(None, **kwargs)
        self.record(method, kwargs)
        for line in self.output_lines:
            kwargs["on_output"](line)
        for event in self.events:
            kwargs["on_event"](event)
        self._hook(method)

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def call(self, method: str) -> Call:
        found = [call for call in self.calls if call.method == method]
        assert len(found) == 1, f"{method} called {len(found)} times: {self.methods()}"
        return found[0]


class FakeWorkspace:
    def __init__(self, automation: FakeAutomation) -> None:
        self._automation = automation

    def remove_stack(self, stack_name: str) -> None:
        self._automation.record("remove_stack", {"stack_name": stack_name})
        self._automation._hook("remove_stack")
        self._automation.existing.discard(stack_name)


class FakeStack:
    def __init__(self, automation: FakeAutomation, name: str) -> None:
        self._automation = automation
        self.name = name
        self.workspace = FakeWorkspace(automation)

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
        self._automation.record("set_config", {"key": key, "value": value, "path": path})
        self._automation._hook("set_config")

    def cancel(self) -> None:
        inspect.signature(auto.Stack.cancel).bind(None)
        self._automation.record("cancel", {})
        self._automation._hook("cancel")

    def up(self, **kwargs: Any) -> auto.UpResult:
        self._automation.run_cli("up", kwargs)
        summary = update_summary(self._automation.changes)
        return auto.UpResult("", "", summary, dict(self._automation.outputs))

    def refresh(self, **kwargs: Any) -> auto.RefreshResult:
        self._automation.run_cli("refresh", kwargs)
        return auto.RefreshResult("", "", update_summary(self._automation.changes))

    def destroy(self, **kwargs: Any) -> auto.DestroyResult:
        self._automation.run_cli("destroy", kwargs)
        return auto.DestroyResult("", "", update_summary(self._automation.changes))

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        self._automation.run_cli("preview", kwargs)
        return auto.PreviewResult("", "", dict(self._automation.changes))

    def preview_refresh(self, **kwargs: Any) -> auto.PreviewResult:
        self._automation.run_cli("preview_refresh", kwargs)
        return auto.PreviewResult("", "", dict(self._automation.changes))


@pytest.fixture
def automation(monkeypatch: pytest.MonkeyPatch) -> FakeAutomation:
    fake = FakeAutomation(existing={STACK})
    monkeypatch.setattr(pulumi_automation, "open_stack", fake.open_stack)
    return fake


# --- a stand-in `pulumi` executable, for the paths that run the real SDK ------------------


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Put a `pulumi` shell script, with the given body after `version`, first on PATH.

    `pulumi version` answers v3.272.0; every other call appends its arguments and environment
    to files under the returned directory, then runs `body`.
    """
    bin_dir = tmp_path / "bin"
    log_dir = tmp_path / "cli-log"
    bin_dir.mkdir()
    log_dir.mkdir()
    # The variable's name is not AWS_* nor PULUMI_CONFIG_PASSPHRASE*, so it survives the scrub.
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log_dir))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")

    def install(body: str) -> Path:
        script = bin_dir / "pulumi"
        script.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "version" ]; then echo v3.272.0; exit 0; fi\n'
            'n=$(ls "$FAKE_PULUMI_LOG" | wc -l)\n'
            'echo "$*" > "$FAKE_PULUMI_LOG/$n.args"\n'
            'env > "$FAKE_PULUMI_LOG/$n.env"\n' + body + "\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return log_dir

    return install
