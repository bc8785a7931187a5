"""API-key requests and responses, and rows → responses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from provisioner.auth.models import ApiKeyRow
from provisioner.auth.service import SCOPE_RULE, is_valid_scope
from provisioner.schemas import ApiModel, PlainText

Scope = str


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description='"admin" or "tenant:<tenant id>"', examples=["tenant:acme"])
    description: PlainText = Field(default="", max_length=200)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not is_valid_scope(value):
            raise ValueError(SCOPE_RULE)
        return value


class ApiKeyPublic(ApiModel):
    id: str
    scope: Scope
    prefix: str = Field(description="First characters of the key, to recognise it")
    description: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret key. Shown once; store it now.")


def api_key_public(row: ApiKeyRow) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)
