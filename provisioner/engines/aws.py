"""AWS access for acting on an environment: credentials resolved explicitly from the settings,
and the data-plane clients built from them.

Used by the pulumi engine (passed to the CLI as environment variables) and by the service's
data-plane routes (file status, DLQs), so both act with the same, configured identity.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.config import Settings
from provisioner.errors import EngineError, EngineUnavailableError

# STS: at least the AWS minimum, at most the one-hour cap that role chaining imposes.
ASSUME_ROLE_MIN_S: Final = 900
ASSUME_ROLE_MAX_S: Final = 3600


@dataclass(frozen=True)
class AwsCredentials:
    source: str  # for logs: assume_role / static / profile / default_chain
    env: dict[str, str]
    secrets: tuple[str, ...] = ()


def resolve_aws_credentials(
    settings: Settings, region: str, tenant: str, session_id: str
) -> AwsCredentials:
    """Credentials for one operation or request on one tenant's environment.

    In order: the role (assumed for short-lived credentials, "{tenant}" filled in), static
    keys, a profile, the service's default chain (resolved and frozen here).
    """
    if (settings.aws_access_key_id is None) != (settings.aws_secret_access_key is None):
        raise EngineUnavailableError(
            "PROVISIONER_AWS_ACCESS_KEY_ID and PROVISIONER_AWS_SECRET_ACCESS_KEY go together"
        )
    if settings.aws_role_arn:
        return _assume_role(settings, region, tenant, session_id)
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        token = (
            settings.aws_session_token.get_secret_value() if settings.aws_session_token else None
        )
        return _static(
            "static",
            settings.aws_access_key_id.get_secret_value(),
            settings.aws_secret_access_key.get_secret_value(),
            token,
        )
    if settings.aws_profile:
        return AwsCredentials("profile", {"AWS_PROFILE": settings.aws_profile})
    try:
        credentials = boto3.Session(region_name=region).get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as exc:
        raise EngineError(f"could not resolve AWS credentials: {type(exc).__name__}") from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise EngineUnavailableError(
            "no AWS credentials: set PROVISIONER_AWS_ROLE_ARN, PROVISIONER_AWS_ACCESS_KEY_ID and "
            "PROVISIONER_AWS_SECRET_ACCESS_KEY, or PROVISIONER_AWS_PROFILE, or give the service "
            "a default AWS credential chain"
        )
    return _static("default_chain", frozen.access_key, frozen.secret_key, frozen.token)


def _assume_role(settings: Settings, region: str, tenant: str, session_id: str) -> AwsCredentials:
    assert settings.aws_role_arn is not None
    # str.replace rather than str.format: an ARN has no other placeholders to honour.
    role_arn = settings.aws_role_arn.replace("{tenant}", tenant)
    key_id, secret, token = (
        settings.aws_access_key_id,
        settings.aws_secret_access_key,
        settings.aws_session_token,
    )
    session_name = ("provisioner-" + re.sub(r"[^\w+=,.@-]", "-", session_id))[:64]
    duration = int(
        min(max(settings.operation_timeout_s + 300, ASSUME_ROLE_MIN_S), ASSUME_ROLE_MAX_S)
    )
    try:
        # The role is assumed with the static keys if any, else the profile, else the chain.
        session = boto3.Session(
            aws_access_key_id=key_id.get_secret_value() if key_id else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            aws_session_token=token.get_secret_value() if key_id and token else None,
            profile_name=None if key_id else settings.aws_profile,
            region_name=region,
        )
        response = session.client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=duration
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise EngineError(f"could not assume role {role_arn}: {code}") from None
    except BotoCoreError as exc:
        raise EngineError(f"could not assume role {role_arn}: {type(exc).__name__}") from None
    credentials = response["Credentials"]
    return _static(
        "assume_role",
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )


def _static(source: str, key_id: str, secret: str, token: str | None) -> AwsCredentials:
    env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    secrets = [secret]
    if token:
        env["AWS_SESSION_TOKEN"] = token
        secrets.append(token)
    return AwsCredentials(source, env, tuple(secrets))


def session_for(credentials: AwsCredentials, region: str) -> boto3.Session:
    """A boto3 session using exactly these credentials."""
    env = credentials.env
    if "AWS_PROFILE" in env:
        return boto3.Session(profile_name=env["AWS_PROFILE"], region_name=region)
    return boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=region,
    )


@dataclass(frozen=True)
class DataPlaneAccess:
    session: boto3.Session
    endpoint_url: str | None = None  # the local emulator; None for real AWS
    # S3 events as this data plane's queues hold them carry the object key raw (the emulator)
    # rather than URL-encoded (AWS); see provisioner.emulator.event_source.
    raw_event_keys: bool = False
    # The local emulator's `LocalHost.durable`; AWS has acknowledged a write when it answers.
    wait_durable: Callable[[], None] | None = None
    # boto3 clients are thread-safe and slow to build: one per service, made on first use.
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _clients_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(  # type: ignore[call-overload]
                    service, endpoint_url=self.endpoint_url
                )
            return self._clients[service]

    def durable(self) -> None:
        if self.wait_durable is not None:
            self.wait_durable()


# Data-plane credentials are reused for this long (assumed roles last at least 15 minutes).
