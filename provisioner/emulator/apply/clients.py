"""The boto3 clients of one region, for the applier, the local runtime and the emulator's tests."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_sts import STSClient


class AwsClients:
    """The boto3 clients the applier (and the emulator's tests) use, for one region.

    Each client is created on first use (building one costs tens of milliseconds).
    """

    def __init__(
        self,
        session: boto3.session.Session,
        *,
        region: str,
        endpoint_url: str | None = None,
    ) -> None:
        self.region = region
        self._session = session
        self._options: dict[str, Any] = {
            "region_name": region,
            "config": Config(
                retries={"max_attempts": 3, "mode": "standard"},
                # Path-style S3 URLs: an emulator on an IP address has no per-bucket hosts.
                s3={"addressing_style": "path"},
            ),
        }
        if endpoint_url is not None:
            self._options["endpoint_url"] = endpoint_url

    @classmethod
    def for_endpoint(
        cls,
        endpoint_url: str,
        *,
        region: str,
        access_key_id: str = "testing",
        secret_access_key: str = "testing",
    ) -> AwsClients:
        """Clients of an emulator at `endpoint_url` (its credentials are never checked)."""
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        return cls(session, region=region, endpoint_url=endpoint_url)

    @classmethod
    def from_session(
        cls, session: boto3.session.Session | None = None, *, region: str
    ) -> AwsClients:
        """Clients of a session (default: the ambient one, e.g. inside `moto.mock_aws`)."""
        return cls(session or boto3.session.Session(region_name=region), region=region)

    def __repr__(self) -> str:
        return f"AwsClients(region={self.region!r}, endpoint={self._options.get('endpoint_url')!r})"

    @cached_property
    def s3(self) -> S3Client:
        return self._session.client("s3", **self._options)

    @cached_property
    def sqs(self) -> SQSClient:
        return self._session.client("sqs", **self._options)

    @cached_property
    def events(self) -> EventBridgeClient:
        return self._session.client("events", **self._options)

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", **self._options)

    @cached_property
    def stepfunctions(self) -> SFNClient:
        return self._session.client("stepfunctions", **self._options)

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._session.client("lambda", **self._options)

    @cached_property
    def iam(self) -> IAMClient:
        return self._session.client("iam", **self._options)

    @cached_property
    def logs(self) -> CloudWatchLogsClient:
        return self._session.client("logs", **self._options)

    @cached_property
    def sts(self) -> STSClient:
        return self._session.client("sts", **self._options)

    # No type stubs are installed for these three services (Any, like an unstubbed client).
    @cached_property
    def sns(self) -> Any:
        return self._session.client("sns", **self._options)

    @cached_property
    def cloudwatch(self) -> Any:
        return self._session.client("cloudwatch", **self._options)

    @cached_property
    def kms(self) -> Any:
        return self._session.client("kms", **self._options)

    def account_id(self) -> str:
        return self.sts.get_caller_identity()["Account"]
