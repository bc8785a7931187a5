"""The file status store (docs/architecture.md §3) over the DynamoDB status table.

Every write is conditional with the same rules as the state machine's own updateItem states
(`stacks.state_machine`): a write never lowers `statusRank` and never leaves COMPLETED or FAILED,
so late or repeated writes lose quietly (the method returns False). The one exception is
`begin_retry`, which moves a FAILED file back to RECEIVED as a new attempt.

Items that TTL has expired but DynamoDB has not deleted yet (deletion can lag by days) are
treated as absent by the reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from handlers.core import runtime
from handlers.core.status_model import (
    CANARY_ATTRIBUTE,
    OBJECT_KEY_INDEX,
    STATUS_RANK,
    STATUS_RANK_ATTRIBUTE,
    TTL_ATTRIBUTE,
    FileStatus,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "DEFAULT_TTL_DAYS",
    "SYMBOLS_ITEM_BUDGET",
    "FileSummary",
    "RetryNotAllowedError",
    "StatusStore",
    "StatusStoreError",
    "iso_now",
]

DEFAULT_TTL_DAYS: Final = 30
# DynamoDB items are limited to 400 KB. The per-symbol map is stored in the item only while its
# JSON stays under this budget (a few thousand symbols); beyond it the item keeps `symbolCount`
# and `resultKey`, and the full map lives in the results object.
SYMBOLS_ITEM_BUDGET: Final = 200_000
# Fields a summary merge sets; `begin_retry` clears them for the new attempt.
_SUMMARY_FIELDS: Final = ("rowCount", "rejectedRows", "symbols", "symbolCount", "resultKey")

# The state machine's guard (stacks.state_machine): the item exists and is not final.
_NOT_FINAL: Final = "attribute_exists(fileId) AND NOT (#status IN (:completed, :failed))"
_PLACEHOLDER: Final = re.compile(r"[:#][A-Za-z0-9_]+")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class StatusStoreError(Exception):
    """Base of the status store's own failures."""


class RetryNotAllowedError(StatusStoreError):
    """Only a FAILED file can be retried."""

    def __init__(self, file_id: str, status: str | None) -> None:
        self.file_id = file_id
        self.status = status
        state = "unknown" if status is None else f"{status}, not FAILED"
        super().__init__(f"file {file_id} is {state}: only a FAILED file can be retried")


@dataclass(frozen=True)
class FileSummary:
    """What the aggregator merges into the status item (docs/architecture.md §3: `rowCount` is
    rows)."""

    rows: int
    rejected_rows: int
    symbols: Mapping[str, Mapping[str, Any]]
    result_key: str


def iso_now(now: datetime | None = None) -> str:
    """UTC, millisecond precision, `Z`: the shape of Step Functions' `$$.State.EnteredTime`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class StatusStore:
    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock

    @classmethod
    def from_env(cls) -> StatusStore:
        return cls(runtime.require_env("STATUS_TABLE_NAME"))

    @property
    def client(self) -> DynamoDBClient:
        return self._client or runtime.dynamodb()

    # -- writes --

    def record_received(
        self,
        file_id: str,
        *,
        bucket: str,
        object_key: str,
        version_id: str,
        ttl_days: int = DEFAULT_TTL_DAYS,
        canary: bool = False,
    ) -> bool:
        """Create the item as RECEIVED; False if the file is already known. A canary's item
        carries `canary: true` (only then: ordinary items keep the §3 fields alone)."""
        now = self._clock()
        item: dict[str, Any] = {
            "fileId": file_id,
            "bucket": bucket,
            "objectKey": object_key,
            "versionId": version_id,
            "status": FileStatus.RECEIVED.value,
            STATUS_RANK_ATTRIBUTE: STATUS_RANK[FileStatus.RECEIVED],
            "stage": "ingest",
            "receivedAt": iso_now(now),
            "updatedAt": iso_now(now),
            TTL_ATTRIBUTE: _expiration(now, ttl_days),
            "attempt": 1,
        }
        if canary:
            item[CANARY_ATTRIBUTE] = True
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_to_item(item),
                ConditionExpression="attribute_not_exists(fileId)",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def advance(self, file_id: str, status: FileStatus, stage: str) -> bool:
        """Move to `status` unless that lowers the rank or leaves a final state."""
        if status is FileStatus.FAILED:
            raise ValueError("use fail() to record a failure")
        return self._update(
            file_id,
            "SET #status = :status, #rank = :rank, #stage = :stage, updatedAt = :now",
            _NOT_FINAL + " AND #rank <= :rank",
            {":status": status.value, ":rank": STATUS_RANK[status], ":stage": stage},
        )

    def fail(self, file_id: str, *, stage: str, error_type: str, message: str) -> bool:
        """Record FAILED with its reason, from any state that is not final."""
        error = {"stage": stage, "type": error_type, "message": message[:1000]}
        return self._update(
            file_id,
            "SET #status = :status, #rank = :rank, #stage = :stage, #error = :error, "
            "updatedAt = :now",
            _NOT_FINAL,
            {
                ":status": FileStatus.FAILED.value,
                ":rank": STATUS_RANK[FileStatus.FAILED],
                ":stage": stage,
                ":error": error,
            },
            {"#error": "error"},
        )

    def merge_summary(self, file_id: str, summary: FileSummary) -> bool:
        """Store the file's figures while it is not final (the aggregator, before COMPLETED)."""
        values: dict[str, Any] = {
            ":rows": summary.rows,
            ":rejected": summary.rejected_rows,
            ":count": len(summary.symbols),
            ":key": summary.result_key,
        }
        expression = (
            "SET rowCount = :rows, rejectedRows = :rejected, symbolCount = :count, "
            "resultKey = :key, updatedAt = :now"
        )
        if symbols_fit_item(summary.symbols):
            expression += ", symbols = :symbols"
            values[":symbols"] = summary.symbols
        else:
            expression += " REMOVE symbols"
        return self._update(
            file_id,
            expression,
            _NOT_FINAL,
            values,
        )

    def begin_retry(self, file_id: str, *, ttl_days: int | None = None) -> int:
        """Start a new attempt of a FAILED file: RECEIVED again, `attempt` + 1, the previous
        error kept as `lastError`. Returns the new attempt number; one conditional write."""
        now = self._clock()
        values: dict[str, Any] = {
            ":received": FileStatus.RECEIVED.value,
            ":rank": STATUS_RANK[FileStatus.RECEIVED],
            ":stage": "ingest",
            ":now": iso_now(now),
            ":failed": FileStatus.FAILED.value,
            ":one": 1,
            ":zero": 0,
        }
        expression = (
            "SET #status = :received, #rank = :rank, #stage = :stage, updatedAt = :now, "
            "lastError = #error, attempt = if_not_exists(attempt, :zero) + :one"
        )
        if ttl_days is not None:
            expression += f", {TTL_ATTRIBUTE} = :expires"
            values[":expires"] = _expiration(now, ttl_days)
        expression += " REMOVE #error, executionArn, " + ", ".join(_SUMMARY_FIELDS)
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={"fileId": {"S": file_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(fileId) AND #status = :failed",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#rank": STATUS_RANK_ATTRIBUTE,
                    "#stage": "stage",
                    "#error": "error",
                },
                ExpressionAttributeValues=_to_values(values),
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            old = exc.response.get("Item")
            status = _from_item(old).get("status") if isinstance(old, Mapping) else None
            raise RetryNotAllowedError(file_id, None if status is None else str(status)) from exc
        attempt = _from_item(response["Attributes"])["attempt"]
        return int(attempt)

    def _update(
        self,
        file_id: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        all_values = {
            **values,
            ":now": iso_now(self._clock()),
            ":completed": FileStatus.COMPLETED.value,
            ":failed": FileStatus.FAILED.value,
        }
        all_names = {"#status": "status", "#rank": STATUS_RANK_ATTRIBUTE, "#stage": "stage"}
        all_names.update(names or {})
        # DynamoDB rejects unused placeholders: pass exactly those the expressions mention.
        used = set(_PLACEHOLDER.findall(f"{expression} {condition}"))
        used_names = {k: v for k, v in all_names.items() if k in used}
        used_values = {k: v for k, v in all_values.items() if k in used}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"fileId": {"S": file_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=used_names,
                ExpressionAttributeValues=_to_values(used_values),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    # -- reads --

    def get(self, file_id: str) -> dict[str, Any] | None:
        """The status item as plain Python values, or None if unknown or expired."""
        response = self.client.get_item(
            TableName=self.table_name, Key={"fileId": {"S": file_id}}, ConsistentRead=True
        )
        raw = response.get("Item")
        if raw is None:
            return None
        item = _from_item(raw)
        return None if self._expired(item) else item

    def by_object_key(self, object_key: str) -> list[dict[str, Any]]:
        """Every live version's item for a key, newest first (GSI on objectKey, receivedAt)."""
        items: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            IndexName=OBJECT_KEY_INDEX,
            KeyConditionExpression="objectKey = :key",
            ExpressionAttributeValues={":key": {"S": object_key}},
            ScanIndexForward=False,
        )
        for page in pages:
            for raw in page.get("Items", []):
                item = _from_item(raw)
                if not self._expired(item):
                    items.append(item)
        return items

    def scan_items(self, *, max_items: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to `max_items` live items in table order, and whether more exist.

        A full table scan: for the provisioner's listings, never on the data path (no function
        role is allowed dynamodb:Scan).
        """
        items: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name):
            for raw in page.get("Items", []):
                item = _from_item(raw)
                if self._expired(item):
                    continue
                if len(items) == max_items:
                    return items, True
                items.append(item)
        return items, False

    def _expired(self, item: Mapping[str, Any]) -> bool:
        expires = item.get(TTL_ATTRIBUTE)
        return isinstance(expires, int) and expires < self._clock().timestamp()


def symbols_fit_item(symbols: Mapping[str, Any]) -> bool:
    """Whether the per-symbol map is small enough to live in the status item."""
    return len(json.dumps(symbols, separators=(",", ":"))) <= SYMBOLS_ITEM_BUDGET


def _expiration(now: datetime, ttl_days: int) -> int:
    return int((now + timedelta(days=ttl_days)).timestamp())


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _to_dynamo(value: Any) -> Any:
    """Python values as the serializer wants them: floats become exact-enough Decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    """Plain JSON-ready values: Decimals become int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value


def _to_item(item: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    return {key: _serializer.serialize(_to_dynamo(value)) for key, value in item.items()}


def _to_values(values: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    return _to_item(values)


def _from_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in raw.items()}
