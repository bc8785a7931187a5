"""`PipelineConfig`: everything that distinguishes one pipeline environment from another.

It is the one validation point for names and tunables: the API, the engines and the Pulumi
program all build it, so a bad tenant or name is rejected (422) before anything is created.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Final

import botocore.loaders
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# docs/architecture.md §2: no hyphen in the tenant, because the hyphen separates tenant from
# environment in every derived name ("a-b"/"c" would collide with "a"/"b-c").
# Patterns are used with `fullmatch` only (docs/architecture.md §9): `$` would let a trailing
# newline through.
TENANT_PATTERN: Final = re.compile(r"[a-z][a-z0-9]{0,19}")
ENVIRONMENT_PATTERN: Final = re.compile(r"[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?")
REGION_PATTERN: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
# The partition every engine deploys to (ARNs are built as arn:aws:…).
AWS_PARTITION: Final = "aws"

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
MAX_TAG_KEY_LENGTH: Final = 128
MAX_TAG_VALUE_LENGTH: Final = 256
# AWS's tag rule: Unicode letters, digits and spaces, and these (no tabs, no newlines).
_TAG_PUNCTUATION: Final = frozenset("_.:/=+-@")
# An e-mail address as SNS takes it: one @, a dotted domain, no spaces; 254 is SMTP's limit.
EMAIL_PATTERN: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
MAX_EMAIL_LENGTH: Final = 254
_LAYER_ARN: Final = re.compile(r"arn:aws:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+")


@cache
def aws_regions() -> frozenset[str]:
    """The partition's regions, from botocore's endpoint data (what the AWS SDK knows)."""
    endpoints = botocore.loaders.create_loader().load_data("endpoints")
    for partition in endpoints["partitions"]:
        if partition["partition"] == AWS_PARTITION:
            return frozenset(partition["regions"])
    raise LookupError(f"botocore's endpoint data has no {AWS_PARTITION!r} partition")


def is_tag_text(text: str) -> bool:
    """Whether every character is one AWS allows in a tag key or value."""
    return all(
        char in _TAG_PUNCTUATION
        or unicodedata.category(char)[0] in ("L", "N")
        or unicodedata.category(char) == "Zs"
        for char in text
    )


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
        "processor (default: AWS's published ARN of the pinned release for the region)",
    )
    alarm_email: str | None = Field(
        default=None,
        description="E-mail address subscribed to the environment's alarm topic (SNS asks it "
        "to confirm first)",
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
        if value is not None and not (
            0 < len(value) <= MAX_TAG_VALUE_LENGTH and is_tag_text(value)
        ):
            raise ValueError("must be 1-256 characters valid in an AWS tag value")
        return value

    @field_validator("api_burst_limit")
    @classmethod
    def _burst_covers_rate(cls, value: int, info: ValidationInfo) -> int:
        rate = info.data.get("api_rate_limit")
        if rate is not None and value < rate:
            raise ValueError(f"must be at least api_rate_limit ({rate:g})")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _alarm_email(cls, value: str | None) -> str | None:
        if value is not None and not (
            len(value) <= MAX_EMAIL_LENGTH and EMAIL_PATTERN.fullmatch(value)
        ):
            raise ValueError("must be an e-mail address (name@example.com)")
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
        if not TENANT_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-20 characters of lowercase letters and digits, starting with a letter "
                "(no hyphen: it separates tenant from environment in resource names)"
            )
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if not ENVIRONMENT_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-12 characters of lowercase letters, digits and '-', starting with a "
                "letter and not ending with '-'"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_PATTERN.fullmatch(value) or value not in aws_regions():
            raise ValueError(
                f"must be a region of the {AWS_PARTITION} partition, such as us-east-1"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_CALLER_TAGS:
            raise ValueError(f"at most {MAX_CALLER_TAGS} tags")
        # AWS compares tag keys case-insensitively ("Duplicate tag keys"), so do we.
        reserved = {key.lower() for key in RESERVED_TAG_KEYS}
        seen: set[str] = set()
        for key, tag_value in value.items():
            folded = key.lower()
            if folded in reserved:
                raise ValueError(f"tag {key!r} is set by the provisioner and cannot be overridden")
            if folded in seen:
                raise ValueError(f"tag key {key!r} repeats another key (keys ignore case)")
            seen.add(folded)
            if not (0 < len(key) <= MAX_TAG_KEY_LENGTH) or not is_tag_text(key):
                raise ValueError(f"tag key {key!r} must be 1-128 valid tag characters")
            if folded.startswith("aws:"):
                raise ValueError(f"tag key {key!r} uses the reserved 'aws:' prefix")
            if len(tag_value) > MAX_TAG_VALUE_LENGTH or not is_tag_text(tag_value):
                raise ValueError(f"tag value for {key!r} must be at most 256 valid tag characters")
        return value

    @property
    def stack_name(self) -> str:
        """The Pulumi stack name (docs/architecture.md §2): `{tenant}-{env}`."""
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
