"""Request and response models of `/admin/webhooks` (docs/architecture.md §8), in camelCase."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from provisioner.schemas import ApiModel
from provisioner.webhooks.allowlist import HostRefusedError, parse_url
from provisioner.webhooks.models import EVENT_TYPES, DeliveryState
from stacks.config import TENANT_PATTERN

MIN_SECRET_LENGTH = 16


class WebhookCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2048,
        description="http(s) URL that receives a POST per event",
        examples=["https://hooks.example.com/provisioner"],
    )
    events: list[str] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="Event types to receive: " + ", ".join(EVENT_TYPES),
        examples=[["operation.failed"]],
    )
    secret: str | None = Field(
        default=None,
        min_length=MIN_SECRET_LENGTH,
        max_length=256,
        description="HMAC-SHA256 key for the signatures; generated if absent (shown once)",
    )
    tenant: str | None = Field(
        default=None,
        description="Receive only this tenant's events (forced for tenant keys)",
        json_schema_extra={"pattern": TENANT_PATTERN.pattern},
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parse_url(value)
        except HostRefusedError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [event for event in value if event not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")
        return list(dict.fromkeys(value))

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and TENANT_PATTERN.fullmatch(value) is None:
            raise ValueError(f"must match {TENANT_PATTERN.pattern}")
        return value


class WebhookPublic(ApiModel):
    id: str
    url: str
    events: list[str]
    tenant: str | None
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret; shown only in this response")


class DeliveryPublic(ApiModel):
    id: str = Field(description="The delivery id: the body's `id` and X-Provisioner-Delivery")
    type: str
    state: DeliveryState
    attempts: int
    last_status: int | None = Field(description="HTTP status of the last attempt, if any")
    last_error: str | None = Field(description="Why the last attempt failed, if it did")
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
