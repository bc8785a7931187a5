"""`PipelineConfig`: everything that distinguishes one pipeline environment from another.

It is the one validation point for names and tunables: the API, the engines and the Pulumi
program all build it, so a bad tenant or name is rejected (422) before anything is created.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# DESIGN §2: no hyphen in the tenant, because the hyphen separates tenant from environment in
# every derived name ("a-b"/"c" would collide with "a"/"b-c").
TENANT_PATTERN: Final = re.compile(r"^[a-z][a-z0-9]{0,19}$")
ENVIRONMENT_PATTERN: Final = re.compile(r"^[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?$")
REGION_PATTERN: Final = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")

# The only values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
     2922, 3288, 3653}
)  # fmt: skip

# Tags the stack sets itself; callers may not override them.
RESERVED_TAG_KEYS: Final = frozenset({"Environment", "Team", "Tenant", "ManagedBy"})
MANAGED_BY: Final = "market-data-provisioner"
# AWS allows 50 tags per resource; four are ours.
MAX_CALLER_TAGS: Final = 50 - len(RESERVED_TAG_KEYS)
_TAG_CHARS: Final = re.compile(r"^[\w\s.:/=+\-@]*$", re.UNICODE)
_LAYER_ARN: Final = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[\w-]+:\d+$")


class PipelineSettings(BaseModel):
    """The tunables of an environment: what `config` holds in the provisioner's API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str | None = Field(default=None, description="Team tag; defaults to the tenant")
    memory_mb: int = Field(default=512, ge=128, le=10240, description="Stage functions' memory")
    stage_timeout_s: int = Field(default=300, ge=1, le=900, description="Stage functions' timeout")
    log_retention_days: int = Field(default=7, description="CloudWatch Logs retention")
    # Bounded: S3 lifecycle days are 32-bit, and a TTL beyond ten years is a mistake.
    glacier_after_days: int = Field(
        default=90, ge=1, le=36500, description="Uploads move to GLACIER after"
    )
    status_ttl_days: int = Field(default=30, ge=1, le=3650, description="Status items expire after")
    api_rate_limit: float = Field(default=1000, gt=0, le=10000, description="Status API req/s")
    api_burst_limit: int = Field(default=2000, gt=0, le=5000, description="Status API burst")
    max_bad_row_ratio: float = Field(
        default=0.01, ge=0, lt=1, description="Share of bad rows above which a file is rejected"
    )
    powertools_layer_arn: str | None = Field(
        default=None, description="Override the AWS-published Powertools layer for the region"
    )
    pandas_layer_arn: str | None = Field(
        default=None,
        description="Override the AWS SDK for pandas layer (pyarrow) of the validator and "
        "processor; needed in regions without a known default (stacks.spec.PANDAS_LAYER_VERSIONS)",
    )

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(days) for days in sorted(LOG_RETENTION_DAYS))
            raise ValueError(f"must be one of the values CloudWatch Logs accepts: {allowed}")
        return value

    @field_validator("team")
    @classmethod
    def _team(cls, value: str | None) -> str | None:
        if value is not None and not (0 < len(value) <= 256 and _TAG_CHARS.match(value)):
            raise ValueError("must be 1-256 characters valid in an AWS tag value")
        return value

    @field_validator("api_burst_limit")
    @classmethod
    def _burst_covers_rate(cls, value: int, info: ValidationInfo) -> int:
        rate = info.data.get("api_rate_limit")
        if rate is not None and value < rate:
            raise ValueError(f"must be at least api_rate_limit ({rate:g})")
        return value

    @field_validator("powertools_layer_arn", "pandas_layer_arn")
    @classmethod
    def _layer_arn(cls, value: str | None) -> str | None:
        if value is not None and not _LAYER_ARN.fullmatch(value):
            raise ValueError("must be a Lambda layer version ARN (arn:aws:lambda:…:layer:…:N)")
        return value


class PipelineConfig(PipelineSettings):
    """One environment's full configuration. Immutable; unknown fields are rejected."""

    tenant: str = Field(description="Tenant id: [a-z][a-z0-9]{0,19}")
    environment: str = Field(description="Environment name: [a-z][a-z0-9-]{0,11}, no trailing -")
    region: str = "us-east-1"
    tags: dict[str, str] = Field(default_factory=dict)

    def settings(self) -> PipelineSettings:
        """The tunables alone (what the API shows as `config`)."""
        return PipelineSettings.model_validate(
            self.model_dump(include=set(PipelineSettings.model_fields))
        )

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not TENANT_PATTERN.match(value):
            raise ValueError(
                "must be 1-20 characters of lowercase letters and digits, starting with a letter "
                "(no hyphen: it separates tenant from environment in resource names)"
            )
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if not ENVIRONMENT_PATTERN.match(value):
            raise ValueError(
                "must be 1-12 characters of lowercase letters, digits and '-', starting with a "
                "letter and not ending with '-'"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_PATTERN.match(value):
            raise ValueError("must be an AWS region code such as us-east-1")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_CALLER_TAGS:
            raise ValueError(f"at most {MAX_CALLER_TAGS} tags")
        for key, tag_value in value.items():
            if key in RESERVED_TAG_KEYS:
                raise ValueError(f"tag {key!r} is set by the provisioner and cannot be overridden")
            if not (0 < len(key) <= 128) or not _TAG_CHARS.match(key):
                raise ValueError(f"tag key {key!r} must be 1-128 valid tag characters")
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r} uses the reserved 'aws:' prefix")
            if len(tag_value) > 256 or not _TAG_CHARS.match(tag_value):
                raise ValueError(f"tag value for {key!r} must be at most 256 valid tag characters")
        return value

    @property
    def stack_name(self) -> str:
        """The Pulumi stack name (DESIGN §2): `{tenant}-{env}`."""
        return f"{self.tenant}-{self.environment}"

    def resource_tags(self) -> dict[str, str]:
        """Tags for every taggable resource: ours first, then the caller's."""
        return {
            "Environment": self.environment,
            "Team": self.team or self.tenant,
            "Tenant": self.tenant,
            "ManagedBy": MANAGED_BY,
            **self.tags,
        }
