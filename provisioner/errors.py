"""The one error hierarchy of the service. Each error knows its HTTP status and error code;
`provisioner.exception_handlers` maps them to `{"error": code, "detail": text}` once."""

from __future__ import annotations

from typing import Any


class ProvisionerError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ProvisionerError):
    status_code = 404
    code = "not_found"


class ConflictError(ProvisionerError):
    status_code = 409
    code = "conflict"


class AuthenticationError(ProvisionerError):
    status_code = 401
    code = "unauthorized"


class PermissionDeniedError(ProvisionerError):
    status_code = 403
    code = "forbidden"


class InvalidRequestError(ProvisionerError):
    status_code = 422
    code = "invalid_request"


class ValidationFailed(InvalidRequestError):
    """422 with one entry per invalid field."""

    code = "validation_error"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        )


class UnavailableError(ProvisionerError):
    status_code = 503
    code = "unavailable"


# --- engine failures: recorded on the operation (FAILED with the reason), never tracebacks ---


class EngineError(ProvisionerError):
    """An engine operation failed; `detail` is safe to show (no secrets, no CLI dump)."""

    code = "engine_error"


class EngineUnavailableError(EngineError):
    """The engine cannot run at all (e.g. the Pulumi CLI is not installed)."""

    status_code = 503
    code = "engine_unavailable"


class StackExistsError(EngineError):
    status_code = 409
    code = "stack_exists"


class StackNotFoundError(EngineError):
    status_code = 404
    code = "stack_not_found"


class ConcurrentUpdateError(EngineError):
    status_code = 409
    code = "concurrent_update"


class OperationCancelledError(EngineError):
    code = "cancelled"
