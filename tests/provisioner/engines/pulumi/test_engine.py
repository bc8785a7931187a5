"""The pulumi engine at the Automation API boundary: what it asks of Pulumi, and what it reports."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pulumi.automation as auto
import pytest
import yaml
from moto import mock_aws

from provisioner.config import Settings
from provisioner.engines.base import EventType, OperationKind, OperationResult
from provisioner.engines.pulumi.engine import PulumiEngine
from provisioner.engines.pulumi.errors import PULUMI_NOT_FOUND
from provisioner.engines.pulumi.operation import SECRET_OUTPUT
from provisioner.errors import (
    ConcurrentUpdateError,
    EngineError,
    EngineUnavailableError,
    OperationCancelledError,
    StackExistsError,
    StackNotFoundError,
)
from provisioner.logging import MASK as REDACTED
from stacks.config import PipelineConfig
from stacks.program import STACK_OUTPUTS, expected_resource_count
from tests.provisioner.engines.conftest import (
    AMBIENT_AWS,
    PASSPHRASE,
    STACK,
    STATIC_KEY_ID,
    STATIC_SECRET,
    FakeAutomation,
    RecordingContext,
    command_error,
    diagnostic_event,
    failed_event,
    make_settings,
    outputs_event,
    pre_event,
    request,
    summary_event,
    urn,
)

BUCKET = "aws:s3/bucket:Bucket"
QUEUE = "aws:sqs/queue:Queue"
ALL_KINDS = list(OperationKind)
SELECTING_KINDS = [kind for kind in OperationKind if kind is not OperationKind.CREATE]


def run(
    settings: Settings,
    kind: OperationKind,
    config: PipelineConfig,
    context: RecordingContext,
    *,
    recover: bool = False,
    op: str = "op-1",
) -> OperationResult:
    return PulumiEngine.build(settings).run(request(kind, config, recover=recover, op=op), context)


def work_root(settings: Settings) -> Path:
    return (settings.data_dir / "work").resolve()


# --- the stack, its project, backend, work dir and secrets provider ------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kind_opens_the_stack_in_the_project_on_the_configured_backend(
    kind: OperationKind,
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, kind, config, context)

    [opened] = automation.opened
    assert opened.stack_name == STACK
    assert opened.project_name == "market-data-pipeline"
    assert opened.create is (kind is OperationKind.CREATE)  # create-or-select vs select
    project = opened.opts.project_settings
    assert project is not None
    assert project.name == "market-data-pipeline"
    assert project.runtime == "python"
    assert project.backend is not None
    assert project.backend.url == settings.resolved_pulumi_backend_url
    # The secrets provider on every create and every select.
    assert opened.opts.secrets_provider == "passphrase"
    assert opened.opts.stack_settings is not None
    assert opened.opts.stack_settings[STACK].secrets_provider == "passphrase"
    assert opened.opts.env_vars is not None
    assert opened.opts.env_vars["PULUMI_CONFIG_PASSPHRASE"] == PASSPHRASE
    assert opened.opts.env_vars["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"
    assert callable(opened.program)


def test_kms_secrets_provider_is_passed_as_given_without_a_passphrase(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    kms = "awskms://alias/provisioner?region=eu-west-1"
    settings = make_settings(tmp_path, pulumi_secrets_provider=kms, pulumi_config_passphrase=None)

    run(settings, OperationKind.UPDATE, config, context)

    opts = automation.opened[0].opts
    assert opts.secrets_provider == kms
    assert opts.stack_settings is not None
    assert opts.stack_settings[STACK].secrets_provider == kms
    assert opts.env_vars is not None
    assert "PULUMI_CONFIG_PASSPHRASE" not in opts.env_vars


def test_passphrase_provider_without_a_passphrase_is_unavailable(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    settings = make_settings(tmp_path, pulumi_config_passphrase=None)

    with pytest.raises(EngineUnavailableError, match="PROVISIONER_PULUMI_CONFIG_PASSPHRASE"):
        run(settings, OperationKind.CREATE, config, context)
    assert automation.opened == []


def test_file_backend_directory_is_created(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    state_dir = Path(urlparse(settings.resolved_pulumi_backend_url).path)
    assert not state_dir.exists()

    run(settings, OperationKind.CREATE, config, context)

    assert state_dir.is_dir()


def test_s3_backend_is_passed_through_untouched(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    settings = make_settings(
        tmp_path, pulumi_backend_url="s3://state-bucket/pulumi?region=eu-west-1"
    )

    run(settings, OperationKind.UPDATE, config, context)

    project = automation.opened[0].opts.project_settings
    assert project is not None
    assert project.backend is not None
    assert project.backend.url == "s3://state-bucket/pulumi?region=eu-west-1"


def test_each_operation_gets_its_own_work_dir_removed_afterwards(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, OperationKind.UPDATE, config, context, op="op-1")
    run(settings, OperationKind.UPDATE, config, context, op="op-2")

    first, second = (Path(str(opened.opts.work_dir)) for opened in automation.opened)
    assert first != second
    for work_dir, op in ((first, "op-1"), (second, "op-2")):
        assert work_dir.parent == work_root(settings)
        assert work_dir.name.startswith(f"{STACK}-{op}-")
    assert all(opened.work_dir_existed for opened in automation.opened)
    assert not first.exists()
    assert not second.exists()
    assert list(work_root(settings).iterdir()) == []


def test_work_dir_is_removed_after_a_failure(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail["up"] = command_error(stderr="error: boom")

    with pytest.raises(EngineError):
        run(settings, OperationKind.CREATE, config, context)

    assert automation.opened[0].work_dir_existed
    assert not Path(str(automation.opened[0].opts.work_dir)).exists()
    assert list(work_root(settings).iterdir()) == []


def test_region_is_set_as_stack_config_and_in_the_cli_environment(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, OperationKind.CREATE, config, context)

    set_config = automation.call("set_config")
    assert set_config.kwargs["key"] == "aws:region"
    assert set_config.kwargs["value"].value == "eu-west-1"
    assert not set_config.kwargs["value"].secret
    assert automation.methods().index("set_config") < automation.methods().index("up")
    env = automation.opened[0].opts.env_vars
    assert env is not None
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"


# --- AWS credentials: explicit, per operation, never inherited ----------------------------


def cli_env(automation: FakeAutomation) -> dict[str, str]:
    env = automation.opened[0].opts.env_vars
    assert env is not None
    return dict(env)


def assert_no_ambient_leak(automation: FakeAutomation) -> None:
    """Nothing the worker inherited reaches a CLI: not via env_vars, nor via os.environ."""
    env = cli_env(automation)
    for name, value in AMBIENT_AWS.items():
        assert env.get(name) != value, name
    inherited = [automation.opened[0].environ, *(call.environ for call in automation.calls)]
    for environ in inherited:
        leaked = [name for name in environ if name.startswith(("AWS_", "PULUMI_CONFIG_PASS"))]
        assert leaked == []


def test_static_keys_from_settings_are_passed_and_ambient_aws_does_not_leak(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    ambient_aws: dict[str, str],
) -> None:
    run(settings, OperationKind.CREATE, config, context)

    env = cli_env(automation)
    assert env["AWS_ACCESS_KEY_ID"] == STATIC_KEY_ID
    assert env["AWS_SECRET_ACCESS_KEY"] == STATIC_SECRET
    assert "AWS_SESSION_TOKEN" not in env  # the ambient one must not pair with our keys
    assert "AWS_PROFILE" not in env
    assert env["PULUMI_CONFIG_PASSPHRASE"] == PASSPHRASE
    assert_no_ambient_leak(automation)
    # The worker's environment is as it was once the operation is over.
    for name, value in ambient_aws.items():
        assert os.environ[name] == value


def test_static_session_token_from_settings_is_passed(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    settings = make_settings(tmp_path, aws_session_token="settings-session-token-1")

    run(settings, OperationKind.UPDATE, config, context)

    assert cli_env(automation)["AWS_SESSION_TOKEN"] == "settings-session-token-1"


def test_profile_from_settings_is_passed_without_keys(
    tmp_path: Path,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    ambient_aws: dict[str, str],
) -> None:
    settings = make_settings(
        tmp_path, aws_access_key_id=None, aws_secret_access_key=None, aws_profile="deployer"
    )

    run(settings, OperationKind.UPDATE, config, context)

    env = cli_env(automation)
    assert env["AWS_PROFILE"] == "deployer"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert_no_ambient_leak(automation)


def test_default_chain_is_resolved_and_passed_frozen(
    tmp_path: Path,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    no_ambient_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The chain's first link: the worker's own environment (as with a container role's keys).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACHAIN00000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain/secret/key/0000000000000000001")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "chain-session-token-0001")
    settings = make_settings(tmp_path, aws_access_key_id=None, aws_secret_access_key=None)

    run(settings, OperationKind.UPDATE, config, context)

    env = cli_env(automation)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIACHAIN00000000001"
    assert env["AWS_SECRET_ACCESS_KEY"] == "chain/secret/key/0000000000000000001"
    assert env["AWS_SESSION_TOKEN"] == "chain-session-token-0001"
    # Passed explicitly, not inherited: the CLI's own environment has none of them.
    assert "AWS_ACCESS_KEY_ID" not in automation.opened[0].environ
    assert "AWS_SECRET_ACCESS_KEY" not in automation.call("up").environ


def test_no_credentials_anywhere_is_unavailable(
    tmp_path: Path,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    no_ambient_aws: None,
) -> None:
    settings = make_settings(tmp_path, aws_access_key_id=None, aws_secret_access_key=None)

    with pytest.raises(EngineUnavailableError, match="no AWS credentials"):
        run(settings, OperationKind.UPDATE, config, context)
    assert automation.opened == []


def test_key_id_without_secret_is_a_configuration_error(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    settings = make_settings(tmp_path, aws_secret_access_key=None)

    with pytest.raises(EngineUnavailableError, match="go together"):
        run(settings, OperationKind.UPDATE, config, context)


def test_role_is_assumed_per_tenant_and_operation(
    tmp_path: Path,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    no_ambient_aws: None,
) -> None:
    settings = make_settings(
        tmp_path, aws_role_arn="arn:aws:iam::123456789012:role/deploy-{tenant}"
    )

    with mock_aws():
        run(settings, OperationKind.UPDATE, config, context, op="op-42")
        env = cli_env(automation)
        identity = boto3.client(
            "sts",
            region_name="eu-west-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env["AWS_SESSION_TOKEN"],
        ).get_caller_identity()

    # Temporary credentials, not the static keys used to assume the role.
    assert env["AWS_ACCESS_KEY_ID"] != STATIC_KEY_ID
    assert env["AWS_SECRET_ACCESS_KEY"] != STATIC_SECRET
    assert env["AWS_SESSION_TOKEN"]
    assert identity["Arn"].endswith(":assumed-role/deploy-acme/provisioner-op-42")


def test_role_that_cannot_be_assumed_fails_with_a_short_reason(
    tmp_path: Path,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
    no_ambient_aws: None,
) -> None:
    settings = make_settings(
        tmp_path,
        aws_role_arn="arn:aws:iam::123456789012:role/deploy",
        aws_access_key_id=None,
        aws_secret_access_key=None,
        aws_profile="no-such-profile",
    )

    with pytest.raises(EngineError) as raised:
        run(settings, OperationKind.UPDATE, config, context)
    assert raised.value.detail == (
        "could not assume role arn:aws:iam::123456789012:role/deploy: ProfileNotFound"
    )
    assert automation.opened == []


# --- what each kind does ------------------------------------------------------------------


def test_show_secrets_is_off_wherever_the_sdk_has_it(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    for kind in ALL_KINDS:
        run(settings, kind, config, context, recover=True)
        automation.existing.add(STACK)  # destroy removed it

    cli_calls = [call for call in automation.calls if call.method in ("up", "refresh", "destroy")]
    assert {call.method for call in cli_calls} == {"up", "refresh", "destroy"}
    for call in cli_calls:
        assert call.kwargs["show_secrets"] is False, call.method
        assert call.kwargs["color"] == "never"
    # The SDK's preview has no such switch (it never reads the stack's history).
    assert "show_secrets" not in inspect.signature(auto.Stack.preview).parameters
    assert automation.call("preview").kwargs["color"] == "never"


def test_create_returns_the_stack_outputs_with_secrets_masked(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.existing.clear()
    automation.outputs = {
        name: auto.OutputValue(f"value-of-{name}", False) for name in STACK_OUTPUTS
    }
    automation.outputs["apiEndpoint"] = auto.OutputValue("https://secret.example/prod", True)
    automation.outputs["notInTheContract"] = auto.OutputValue("x", False)

    result = run(settings, OperationKind.CREATE, config, context)

    assert automation.methods() == ["set_config", "up"]
    assert result.outputs == {
        **{name: f"value-of-{name}" for name in STACK_OUTPUTS},
        "apiEndpoint": SECRET_OUTPUT,
    }
    assert "https://secret.example/prod" not in repr(result)
    assert result.changes == {"create": 3}


def test_update_requires_the_stack(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.existing.clear()

    with pytest.raises(StackNotFoundError, match=f"stack {STACK} does not exist"):
        run(settings, OperationKind.UPDATE, config, context)
    assert "up" not in automation.methods()


@pytest.mark.parametrize("kind", [OperationKind.CREATE, OperationKind.UPDATE])
def test_recover_refreshes_with_clear_pending_creates_before_up(
    kind: OperationKind,
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, kind, config, context, recover=True)

    assert automation.methods() == ["set_config", "refresh", "up"]
    assert automation.call("refresh").kwargs["clear_pending_creates"] is True
    # Both walks over the stack's resources count towards progress.
    assert context.expected == [2 * expected_resource_count(config)]


def test_recover_clears_the_lock_the_interrupted_operation_left(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail_once["refresh"] = command_error(
        auto.ConcurrentUpdateError, stderr="error: the stack is currently locked by 1 lock(s)"
    )

    run(settings, OperationKind.UPDATE, config, context, recover=True)

    assert automation.methods() == ["set_config", "refresh", "cancel", "refresh", "up"]
    warnings = [event for event in context.events if event.severity == "warning"]
    assert [event.message for event in warnings] == [
        "the interrupted operation left the stack locked: clearing its lock"
    ]


def test_recover_clears_a_lock_only_once(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail["refresh"] = command_error(
        auto.ConcurrentUpdateError, stderr="error: the stack is currently locked by 1 lock(s)"
    )

    with pytest.raises(ConcurrentUpdateError):
        run(settings, OperationKind.UPDATE, config, context, recover=True)
    assert automation.methods() == ["set_config", "refresh", "cancel", "refresh"]


def test_a_lock_is_left_alone_without_recover(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail["refresh"] = command_error(
        auto.ConcurrentUpdateError, stderr="error: the stack is currently locked by 1 lock(s)"
    )

    with pytest.raises(ConcurrentUpdateError, match="locked by another update"):
        run(settings, OperationKind.REFRESH, config, context)
    assert "cancel" not in automation.methods()


def test_without_recover_there_is_no_refresh(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, OperationKind.UPDATE, config, context)

    assert automation.methods() == ["set_config", "up"]
    assert context.expected == [expected_resource_count(config)]


def test_destroy_destroys_then_removes_the_stack(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.changes = {"delete": 40}

    result = run(settings, OperationKind.DESTROY, config, context)

    assert automation.methods() == ["set_config", "destroy", "remove_stack"]
    assert automation.call("remove_stack").kwargs == {"stack_name": STACK}
    assert STACK not in automation.existing
    assert result.outputs == {}
    assert result.changes == {"delete": 40}


def test_destroy_of_a_missing_stack_succeeds_as_already_destroyed(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.existing.clear()

    result = run(settings, OperationKind.DESTROY, config, context)

    assert result.outputs == {}
    assert result.changes == {}
    assert automation.methods() == []
    [diagnostic] = context.of_type(EventType.DIAGNOSTIC)
    assert diagnostic.message == f"stack {STACK} does not exist: nothing to destroy"


def test_recovered_destroy_refreshes_first(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    run(settings, OperationKind.DESTROY, config, context, recover=True)

    assert automation.methods() == ["set_config", "refresh", "destroy", "remove_stack"]
    assert automation.call("refresh").kwargs["clear_pending_creates"] is True


def test_preview_returns_the_plan(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.changes = {"create": 2, "update": 1, "same": 37}

    result = run(settings, OperationKind.PREVIEW, config, context)

    assert automation.methods() == ["set_config", "preview"]
    assert result.changes == {"create": 2, "update": 1, "same": 37}
    assert result.outputs == {}


@pytest.mark.parametrize("recover", [False, True])
def test_refresh_returns_the_drift(
    recover: bool,
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.changes = {"update": 1, "same": 39}

    result = run(settings, OperationKind.REFRESH, config, context, recover=recover)

    assert automation.methods() == ["set_config", "refresh"]
    assert result.changes == {"update": 1, "same": 39}
    assert automation.call("refresh").kwargs["clear_pending_creates"] is (True if recover else None)


@pytest.mark.parametrize("kind", SELECTING_KINDS)
def test_select_kinds_fail_on_a_missing_stack_except_destroy(
    kind: OperationKind,
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.existing.clear()
    if kind is OperationKind.DESTROY:
        run(settings, kind, config, context)
    else:
        with pytest.raises(StackNotFoundError):
            run(settings, kind, config, context)


# --- events ---------------------------------------------------------------------------------


def test_engine_events_are_translated(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    bucket_urn = urn("p-acme-dev-data", BUCKET)
    automation.events = [
        pre_event(auto.OpType.CREATE, "p-acme-dev-data", BUCKET),
        outputs_event(auto.OpType.CREATE, "p-acme-dev-data", BUCKET),
        pre_event(auto.OpType.UPDATE, "p-acme-dev-ingest", QUEUE),
        failed_event(auto.OpType.UPDATE, "p-acme-dev-ingest", QUEUE),
        diagnostic_event(
            "\x1b[31mwarning:\x1b[0m <{%fg 3%}>deprecated<{%reset%}>",
            "warning",
            resource=bucket_urn,
        ),
        diagnostic_event("Program output on stderr", "info#err"),
        diagnostic_event("Creating (3s)...", "info", ephemeral=True),
        summary_event({"create": 1, "update": 1, "same": 5}),
    ]

    run(settings, OperationKind.UPDATE, config, context)

    assert context.expected == [expected_resource_count(config)]
    kinds = [event.type for event in context.events]
    assert kinds == [
        EventType.RESOURCE_STARTED,
        EventType.RESOURCE_FINISHED,
        EventType.RESOURCE_STARTED,
        EventType.RESOURCE_FAILED,
        EventType.DIAGNOSTIC,
        EventType.DIAGNOSTIC,
        EventType.SUMMARY,
    ]
    started, finished, _, failed, warning, info, summary = context.events
    assert (started.step, started.resource, started.resource_type) == ("create", bucket_urn, BUCKET)
    assert started.message == f"create {BUCKET} p-acme-dev-data"
    assert (finished.step, finished.resource) == ("create", bucket_urn)
    assert (failed.step, failed.severity) == ("update", "error")
    assert failed.resource == urn("p-acme-dev-ingest", QUEUE)
    assert warning.severity == "warning"
    assert warning.message == "p-acme-dev-data: warning: deprecated"  # ANSI and colour tags gone
    assert info.severity == "info"
    assert summary.data["changes"] == {"create": 1, "update": 1, "same": 5}
    assert summary.message == "changes: create 1, same 5, update 1"


def test_cli_output_is_kept_as_debug_diagnostics(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.output_lines = ["Updating (acme-dev):", "", "   + aws:s3:Bucket data created"]

    run(settings, OperationKind.UPDATE, config, context)

    debug = [event for event in context.events if event.severity == "debug"]
    assert [event.message for event in debug] == [
        "Updating (acme-dev):",
        "   + aws:s3:Bucket data created",
    ]
    assert all(event.data["stream"] == "stdout" for event in debug)


def test_known_secrets_never_reach_an_event(
    tmp_path: Path, config: PipelineConfig, context: RecordingContext, automation: FakeAutomation
) -> None:
    settings = make_settings(tmp_path, aws_session_token="settings-session-token-1")
    automation.output_lines = [
        f"PULUMI_CONFIG_PASSPHRASE={PASSPHRASE}",
        f"using key {STATIC_SECRET} and token settings-session-token-1",
    ]
    automation.events = [diagnostic_event(f"error: bad passphrase {PASSPHRASE}", "error")]
    automation.fail["up"] = command_error(stderr=f"error: decrypting with {PASSPHRASE}")

    with pytest.raises(EngineError) as raised:
        run(settings, OperationKind.UPDATE, config, context)

    text = context.text() + raised.value.detail
    for secret in (PASSPHRASE, STATIC_SECRET, "settings-session-token-1"):
        assert secret not in text
    assert f"PULUMI_CONFIG_PASSPHRASE={REDACTED}" in context.text()
    assert raised.value.detail == f"pulumi up failed: error: bad passphrase {REDACTED}"


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "sdk_error", "kind", "expected"),
    [
        ("open", auto.StackAlreadyExistsError, OperationKind.CREATE, StackExistsError),
        ("open", auto.StackNotFoundError, OperationKind.UPDATE, StackNotFoundError),
        ("up", auto.ConcurrentUpdateError, OperationKind.UPDATE, ConcurrentUpdateError),
        ("refresh", auto.ConcurrentUpdateError, OperationKind.REFRESH, ConcurrentUpdateError),
        ("destroy", auto.ConcurrentUpdateError, OperationKind.DESTROY, ConcurrentUpdateError),
        ("preview", auto.CommandError, OperationKind.PREVIEW, EngineError),
    ],
)
def test_sdk_errors_are_mapped(
    step: str,
    sdk_error: type[auto.CommandError],
    kind: OperationKind,
    expected: type[EngineError],
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail[step] = command_error(
        sdk_error, stderr="error: the stack is currently locked by"
    )

    with pytest.raises(expected) as raised:
        run(settings, kind, config, context)
    assert type(raised.value) is expected
    # Raised `from None`: the SDK's exception (the whole CLI dump) is not printed with it.
    assert raised.value.__suppress_context__
    assert raised.value.__cause__ is None


def test_a_long_cli_failure_becomes_a_short_detail(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    dump = "\n".join(f"    debug line {i}: " + "x" * 120 for i in range(500))
    cause = "creating S3 Bucket (p-acme-dev-data): BucketAlreadyExists: " + "y" * 400
    automation.events = [
        diagnostic_event("warning: first a warning", "warning"),
        diagnostic_event(cause, "error", resource=urn("p-acme-dev-data", BUCKET)),
        diagnostic_event("error: update failed", "error"),
    ]
    automation.fail["up"] = command_error(stdout=dump, stderr=dump + "\nerror: update failed")

    with pytest.raises(EngineError) as raised:
        run(settings, OperationKind.UPDATE, config, context)

    detail = raised.value.detail
    assert type(raised.value) is EngineError
    assert detail.startswith(
        "pulumi up failed: p-acme-dev-data: creating S3 Bucket (p-acme-dev-data): "
        "BucketAlreadyExists"
    )
    assert len(detail) <= len("pulumi up failed: ") + 300
    assert "debug line" not in detail


def test_without_diagnostics_the_first_error_line_of_stderr_is_the_detail(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail["set_config"] = command_error(
        stderr="some noise\nerror: getting secrets manager: passphrase must be set\nmore noise"
    )

    with pytest.raises(EngineError) as raised:
        run(settings, OperationKind.UPDATE, config, context)

    assert raised.value.detail == (
        "pulumi config set failed: error: getting secrets manager: passphrase must be set"
    )


def test_without_any_error_text_the_exit_code_is_the_detail(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.fail["up"] = command_error(stdout="lots of output", stderr="", code=137)

    with pytest.raises(EngineError) as raised:
        run(settings, OperationKind.UPDATE, config, context)

    assert raised.value.detail == "pulumi up failed: exit code 137"


def test_missing_cli_is_unavailable(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real SDK: LocalWorkspace runs `pulumi version`, which is not there."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(EngineUnavailableError) as raised:
        run(settings, OperationKind.CREATE, config, context)

    assert raised.value.detail == PULUMI_NOT_FOUND
    assert "PROVISIONER_ENGINE=local" in raised.value.detail
    assert list(work_root(settings).iterdir()) == []


# --- cancellation --------------------------------------------------------------------------


def test_cancel_before_start_runs_nothing(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    context.cancel_requested.set()

    with pytest.raises(OperationCancelledError):
        run(settings, OperationKind.CREATE, config, context)
    assert automation.opened == []


def test_cli_failure_after_a_cancel_is_a_cancellation(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    # The runner sets the event and sends SIGINT; the CLI stops and exits non-zero.
    automation.on_call["up"] = context.cancel_requested.set
    automation.fail["up"] = command_error(stderr="error: update canceled")

    with pytest.raises(OperationCancelledError, match="cancelled during pulumi up"):
        run(settings, OperationKind.UPDATE, config, context)
    assert list(work_root(settings).iterdir()) == []


def test_cancel_is_checked_before_each_step(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    # The destroy finished, but the cancel arrived before the stack was removed.
    automation.on_call["destroy"] = context.cancel_requested.set

    with pytest.raises(OperationCancelledError, match="before pulumi stack rm"):
        run(settings, OperationKind.DESTROY, config, context)
    assert "remove_stack" not in automation.methods()


def test_cancel_during_recovery_skips_the_update(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.on_call["refresh"] = context.cancel_requested.set

    with pytest.raises(OperationCancelledError):
        run(settings, OperationKind.UPDATE, config, context, recover=True)
    assert "up" not in automation.methods()


# --- through the real SDK, with a stand-in CLI ---------------------------------------------


def read_cli_calls(log_dir: Path) -> list[tuple[str, dict[str, str]]]:
    calls = []
    for args_file in sorted(log_dir.glob("*.args"), key=lambda path: int(path.stem)):
        env_lines = args_file.with_suffix(".env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in env_lines if "=" in line)
        calls.append((args_file.read_text().strip(), env))
    return calls


def test_real_sdk_select_gets_the_provider_the_backend_and_only_explicit_credentials(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    fake_cli: Callable[[str], Path],
    ambient_aws: dict[str, str],
) -> None:
    log_dir = fake_cli(
        'cp Pulumi.yaml "$FAKE_PULUMI_LOG/project.yaml"\n'
        f'cp Pulumi.{STACK}.yaml "$FAKE_PULUMI_LOG/stack.yaml"\n'
        f"echo \"error: no stack named '{STACK}' found; passphrase {PASSPHRASE}\" >&2; exit 255"
    )

    with pytest.raises(StackNotFoundError):
        run(settings, OperationKind.UPDATE, config, context)

    [(args, env)] = read_cli_calls(log_dir)
    assert args == f"--non-interactive stack select --stack {STACK}"
    # What the CLI found in its work dir when selecting.
    assert yaml.safe_load((log_dir / "stack.yaml").read_text()) == {"secretsprovider": "passphrase"}
    project = yaml.safe_load((log_dir / "project.yaml").read_text())
    assert project["name"] == "market-data-pipeline"
    assert project["runtime"] == "python"
    assert project["backend"] == {"url": settings.resolved_pulumi_backend_url}
    # What the CLI found in its environment.
    assert env["PULUMI_CONFIG_PASSPHRASE"] == PASSPHRASE
    assert env["AWS_ACCESS_KEY_ID"] == STATIC_KEY_ID
    assert env["AWS_SECRET_ACCESS_KEY"] == STATIC_SECRET
    assert env["AWS_REGION"] == "eu-west-1"
    assert "AWS_SESSION_TOKEN" not in env
    assert "AWS_PROFILE" not in env
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
    assert not any(work_root(settings).iterdir())


def test_real_sdk_create_of_an_existing_stack_maps_to_stack_exists(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    fake_cli: Callable[[str], Path],
) -> None:
    log_dir = fake_cli(
        'case "$*" in\n'
        "  *'stack select'*) echo \"error: no stack named 'acme-dev' found\" >&2; exit 255;;\n"
        "  *'stack init'*) echo \"error: stack 'acme-dev' already exists\" >&2; exit 255;;\n"
        "esac\nexit 1"
    )

    with pytest.raises(StackExistsError):
        run(settings, OperationKind.CREATE, config, context)

    args = [call[0] for call in read_cli_calls(log_dir)]
    assert args == [
        f"--non-interactive stack select --stack {STACK}",
        f"--non-interactive stack init {STACK} --secrets-provider passphrase",
    ]
