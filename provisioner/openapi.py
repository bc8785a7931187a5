"""The OpenAPI document, adjusted to what the service really returns.

FastAPI documents every request-validation error as its own `HTTPValidationError`; our handler
answers with `{"error", "detail", "errors"}` instead, so the document says that.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from provisioner.schemas import ValidationErrorBody


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["HTTPValidationError"] = ValidationErrorBody.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.pop("ValidationError", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
