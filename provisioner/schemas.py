"""Models every part of the HTTP API shares (docs/architecture.md §5). JSON uses camelCase names."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def _printable(allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not all(character.isprintable() or character in allowed for character in value):
            raise ValueError("must not contain control or formatting characters")
        return value

    return AfterValidator(check)


# Free text a person reads back (the dashboard, the CLI's tables, logs): a control character or
# a bidirectional override in it could rewrite what a terminal or a reader sees.
PlainText = Annotated[str, _printable("")]
PlainLines = Annotated[str, _printable("\n\t")]  # may run over several lines


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code")
    detail: str = Field(description="What was wrong, for a human")


class ValidationErrorBody(ErrorBody):
    errors: list[dict[str, Any]] = Field(description="One entry per invalid field")


# A page's bounds (`limit`, `offset` on every listing); the offset's, so that no value can
# overflow a database integer.
PAGE_LIMIT_MAX = 500
PAGE_OFFSET_MAX = 2**31 - 1


class Page(ApiModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Health(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "unavailable"]
    checks: dict[str, dict[str, Any]]
    code_version: str = Field(alias="codeVersion", description="The service's code version")
