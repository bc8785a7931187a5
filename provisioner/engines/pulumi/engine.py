"""The production engine: one Pulumi stack per environment, driven through the Automation API.

The package `provisioner.engines.pulumi` is the only one that imports `pulumi.automation`, and
(see `workspace.scrubbed_environ`) the only one that touches `os.environ`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pulumi.automation as auto
import structlog

from provisioner.config import Settings
from provisioner.engines.aws import AwsCredentials, resolve_aws_credentials
from provisioner.engines.base import (
    EngineHealth,
    OperationContext,
    OperationRequest,
    OperationResult,
)
from provisioner.engines.pulumi.errors import raise_if_cancelled
from provisioner.engines.pulumi.events import (
    EventSink,
)
from provisioner.engines.pulumi.operation import StackOperation
from provisioner.engines.pulumi.workspace import (
    ensure_file_backend,
    probe_env,
    remove_work_dir,
    scrubbed_environ,
)
from provisioner.errors import (
    EngineUnavailableError,
)
from provisioner.logging import SecretRedactor
from stacks.config import PipelineConfig

logger = structlog.get_logger(__name__)

MINIMUM_CLI_VERSION: Final = (3, 181)
VERSION_TIMEOUT_S: Final = 10.0
_VERSION: Final = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


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
        raise_if_cancelled(context, "start")
        passphrase = self._passphrase()
        # Credentials are resolved before the environment is scrubbed: the default chain may
        # legitimately read the worker's own AWS_* variables (web identity, container role).
        aws = resolve_aws_credentials(
            self._settings, config.region, config.tenant, request.operation_id
        )
        redact = SecretRedactor([*aws.secrets, *self._settings.secret_values()], min_length=1)
        env_vars = self._env_vars(config, aws, passphrase)
        ensure_file_backend(self._settings.resolved_pulumi_backend_url)
        work_dir = self._make_work_dir(config.stack_name, request.operation_id)
        log.info("pulumi.operation.started", aws_credentials=aws.source, work_dir=str(work_dir))
        operation = StackOperation(
            request=request,
            context=context,
            sink=EventSink(context, redact),
            redact=redact,
            log=log,
            project=self._settings.pulumi_project,
            opts=self._workspace_options(config, work_dir, env_vars),
        )
        try:
            with scrubbed_environ():
                result = operation.execute()
        finally:
            remove_work_dir(work_dir, log)
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
                env=probe_env(),
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
