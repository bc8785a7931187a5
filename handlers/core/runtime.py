"""Per-invocation plumbing shared by the handlers: environment, AWS clients, log context.

Configuration is read from the environment at every invocation (never frozen at import), because
the local engine runs several environments' functions in one process, one after another. boto3
clients are the one thing cached per process: they are keyed by service, region and endpoint
(boto3 honours AWS_ENDPOINT_URL, which is how the local emulator is reached), so a different
endpoint gets its own client; `reset_clients()` drops them (tests).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Final

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from handlers.core.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "bind_invocation",
    "dynamodb",
    "env_float",
    "env_int",
    "require_env",
    "reset_clients",
    "s3",
    "stepfunctions",
]

# Standard retry mode: throttling and 5xx are retried with backoff inside the SDK first; what
# still fails propagates and the state machine retries the task by the error's class name.
_CLIENT_CONFIG: Final = Config(retries={"mode": "standard", "max_attempts": 4})
_clients: dict[tuple[str, str | None, str | None], Any] = {}
_lock = threading.Lock()


def require_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def env_float(name: str, default: float, *, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} is not a number") from None
    if not low <= value <= high:
        raise ConfigurationError(f"environment variable {name} must be within [{low}, {high}]")
    return value


def env_int(name: str, default: int, *, low: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} is not an integer") from None
    if value < low:
        raise ConfigurationError(f"environment variable {name} must be at least {low}")
    return value


def _client(service: str) -> Any:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    key = (service, region, endpoint)
    client = _clients.get(key)
    if client is None:
        # boto3's default session is not thread-safe to create clients from: one session per
        # client, under a lock.
        with _lock:
            client = _clients.get(key)
            if client is None:
                session = boto3.session.Session(region_name=region)
                factory: Any = session.client  # the stubs type each service name separately
                client = factory(service, endpoint_url=endpoint, config=_CLIENT_CONFIG)
                _clients[key] = client
    return client


def s3() -> S3Client:
    client: S3Client = _client("s3")
    return client


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def stepfunctions() -> SFNClient:
    client: SFNClient = _client("stepfunctions")
    return client


def reset_clients() -> None:
    """Forget every cached client (tests switch endpoints and mocks between cases)."""
    with _lock:
        _clients.clear()


def bind_invocation(logger: Logger) -> None:
    """Log keys and level of this invocation, from this function's environment."""
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
    logger.append_keys(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined"),
        tenant=os.environ.get("PIPELINE_TENANT"),
        environment=os.environ.get("PIPELINE_ENVIRONMENT"),
    )
