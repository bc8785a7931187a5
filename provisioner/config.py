"""The service's configuration: one `Settings` object, read from `PROVISIONER_*` variables.

No other module of the service reads `os.environ`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where this service serves local environments' status APIs (the local engine's `apiEndpoint`).
LOCAL_API_PREFIX: Final = "/local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path(".provisioner")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under data_dir"
    )
    engine: Literal["local", "pulumi"] = "local"
    admin_key: SecretStr | None = Field(
        default=None,
        description="Bootstrap admin API key; if unset one is generated into data_dir (0600)",
    )
    # Request bodies larger than this are refused (413) while they stream in, before auth.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    max_concurrent_operations: int = Field(default=2, ge=1, le=64)
    operation_timeout_s: float = Field(default=3600, gt=0)
    # After a cancel or timeout, how long a running operation may take to stop gracefully
    # before its worker process group is killed.
    cancel_grace_s: float = Field(default=60, gt=0)
    # Liveness of running operations; a RUNNING operation whose heartbeat is older than
    # `heartbeat_timeout_s` belongs to a dead replica and becomes INTERRUPTED.
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_timeout_s: float = Field(default=15.0, gt=0)
    log_level: str = "INFO"

    # --- scheduled actions (docs/architecture.md §8) ---
    # Lead times before an environment's expiry at which `environment.expiring` goes out.
    expiry_warnings_minutes: Annotated[tuple[int, ...], NoDecode] = (1440, 60)
    # An operation awaiting approval longer than this is cancelled.
    approval_ttl_minutes: int = Field(default=1440, ge=1, le=525_600)
    # Minutes between drift checks of environments that set no interval of their own; 0: none.
    drift_check_minutes: int = Field(default=0, ge=0, le=525_600)
    # How often each replica's scheduler looks for due work.
    schedule_interval_s: float = Field(default=15.0, gt=0, le=3600)
    # How often each replica samples the data-plane health of READY environments (§8).
    health_interval_s: float = Field(default=60.0, gt=0, le=3600)
    # `files.failed` events per environment and sample; more failures follow in later samples.
    health_max_failed_events: int = Field(default=100, ge=1, le=10_000)
    # The fleet's counts are sampled once per this period (for its charts over time), and
    # samples older than the retention are pruned.
    fleet_sample_interval_s: float = Field(default=60.0, ge=1, le=86_400)
    fleet_sample_retention_hours: int = Field(default=168, ge=1, le=8760)
    log_json: bool = False

    # --- rollouts (docs/architecture.md §7) ---
    # How often each replica's rollout scheduler advances the active rollouts (it is also
    # woken by requests and finished verifications).
    rollout_interval_s: float = Field(default=1.0, gt=0, le=3600)
    # Data-plane verifications one replica runs at once.
    rollout_max_verifications: int = Field(default=8, ge=1, le=256)

    # --- pulumi engine ---
    pulumi_backend_url: str | None = Field(
        default=None, description="file://… (default: under data_dir) or s3://bucket/prefix"
    )
    pulumi_secrets_provider: str = Field(
        default="passphrase", description='"passphrase" or "awskms://alias/…?region=…"'
    )
    pulumi_config_passphrase: SecretStr | None = None
    pulumi_project: str = "market-data-pipeline"
    # AWS credentials for deployments, passed to each operation explicitly. If `aws_role_arn`
    # is set (may contain "{tenant}"), each operation assumes it for short-lived credentials.
    aws_role_arn: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_profile: str | None = None

    # --- local engine ---
    local_aws_host: str = "127.0.0.1"
    local_aws_port: int = Field(default=4566, ge=0, le=65535)
    # Set by the service for its operation workers, which reach the emulator on its internal
    # listener: the published endpoint, which the queue URLs among an environment's outputs
    # name (what its users' clients reach, durably). Unset: local_aws_host:local_aws_port.
    local_published_endpoint: str | None = None
    # Lambda runtime processes shared by every local environment; 0: one per CPU core.
    local_runtime_workers: int = Field(default=0, ge=0, le=64)
    # The emulator's state is saved under DATA_DIR/emulator (provisioner.emulator.persistence):
    # every this many seconds when something changed (0: only at shutdown), and at shutdown
    # after waiting up to `local_drain_timeout_s` for running executions to finish.
    local_snapshot_interval_s: float = Field(default=2.0, ge=0, le=3600)
    local_drain_timeout_s: float = Field(default=30.0, ge=0, le=600)

    # --- webhooks (docs/architecture.md §8) ---
    webhook_allowed_hosts: str = Field(
        default="",
        description=(
            "Comma-separated host names, addresses or CIDR ranges that webhooks may target even "
            "though they are loopback, private, link-local or otherwise non-public (checked "
            "when the app is built: provisioner.webhooks.allowlist)"
        ),
    )
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Backoff: the first retry after `webhook_retry_initial_s`, doubling up to the cap.
    webhook_retry_initial_s: float = Field(default=5.0, gt=0, le=300)
    webhook_retry_max_s: float = Field(default=300.0, gt=0, le=3600)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    webhook_max_in_flight: int = Field(default=8, ge=1, le=256)

    @field_validator("expiry_warnings_minutes", mode="before")
    @classmethod
    def _lead_times(cls, value: object) -> object:
        # "1440,60" in the environment; the largest lead first, each once.
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            leads = sorted({int(part) for part in value}, reverse=True)
            if any(lead <= 0 for lead in leads):
                raise ValueError("lead times must be positive minutes")
            return tuple(leads)
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @cached_property
    def resolved_pulumi_backend_url(self) -> str:
        if self.pulumi_backend_url:
            return self.pulumi_backend_url
        return (self.data_dir / "pulumi-state").resolve().as_uri()

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log and event redactor."""
        secrets = (
            self.admin_key,
            self.pulumi_config_passphrase,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
        )
        return [secret.get_secret_value() for secret in secrets if secret is not None]

    @property
    def public_url(self) -> str:
        """Base URL of this service as seen from the same machine."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
