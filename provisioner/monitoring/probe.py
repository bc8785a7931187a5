"""One reading of an environment's data plane: alarm states, DLQ depths, the last hour's file
outcomes and the failures since a watermark. The same for both engines (boto3 on the host's
data-plane clients: AWS itself, or the local emulator).

The file outcomes come from a scan of the status table filtered on `updatedAt` (the table has no
index by time); a scan reads the whole table, so it stops after `SCAN_LIMIT` items and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from handlers.core.status_store import iso_now
from provisioner.engines.base import DataPlane
from stacks import spec
from stacks.config import PipelineConfig

DLQ_OUTPUTS: Final = {
    "ingest": "ingestDlqUrl",
    "validator": "validatorDlqUrl",
    "processor": "processorDlqUrl",
    "aggregator": "aggregatorDlqUrl",
}
SCAN_LIMIT: Final = 100_000
WINDOW: Final = timedelta(hours=1)
_PROJECTION: Final = "fileId, #s, updatedAt, objectKey, stage, #e, attempt"


@dataclass(frozen=True)
class FailedFile:
    file_id: str
    attempt: int
    updated_at: str
    object_key: str | None
    stage: str | None
    error: Mapping[str, Any] | None

    @property
    def key(self) -> str:
        """One failure of one attempt (a retried file that fails again fails anew)."""
        return f"{self.file_id}#{self.attempt}"


@dataclass(frozen=True)
class Reading:
    alarms: list[dict[str, str]]
    dlq_depths: dict[str, int]
    completed_last_hour: int
    failed_last_hour: int
    failures: list[FailedFile] = field(default_factory=list)  # updatedAt >= `failures_since`
    truncated: bool = False

    def health(self) -> dict[str, Any]:
        """The public `health` object (without `checkedAt`)."""
        states = {alarm["state"] for alarm in self.alarms}
        if "ALARM" in states:
            status = "ALARM"
        elif states == {"OK"}:
            status = "OK"
        else:
            status = "UNKNOWN"  # INSUFFICIENT_DATA, or no alarm found
        return {
            "status": status,
            "alarms": self.alarms,
            "dlqDepths": self.dlq_depths,
            "completedLastHour": self.completed_last_hour,
            "failedLastHour": self.failed_last_hour,
        }


def read(
    access: DataPlane,
    config: PipelineConfig,
    outputs: Mapping[str, str],
    now: datetime,
    failures_since: str,
) -> Reading:
    """Read the data plane; boto errors propagate (the sampler keeps the previous sample)."""
    names = spec.names(config, _account(outputs))
    found = access.client("cloudwatch").describe_alarms(AlarmNames=list(names.alarms.values()))
    states = {alarm["AlarmName"]: alarm["StateValue"] for alarm in found["MetricAlarms"]}
    alarms = [
        {"name": names.alarms[key], "state": states.get(names.alarms[key], "INSUFFICIENT_DATA")}
        for key in spec.ALARMS
    ]
    sqs = access.client("sqs")
    depths = {
        stage: int(
            sqs.get_queue_attributes(
                QueueUrl=outputs[output], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        for stage, output in DLQ_OUTPUTS.items()
    }
    hour_ago = iso_now(now - WINDOW)  # the status items' own format
    since = min(hour_ago, failures_since)
    completed = failed = scanned = 0
    failures: list[FailedFile] = []
    truncated = False
    pages = (
        access.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=outputs["statusTableName"],
            FilterExpression="updatedAt >= :since AND #s IN (:completed, :failed)",
            ProjectionExpression=_PROJECTION,
            ExpressionAttributeNames={"#s": "status", "#e": "error"},
            ExpressionAttributeValues={
                ":since": {"S": since},
                ":completed": {"S": "COMPLETED"},
                ":failed": {"S": "FAILED"},
            },
        )
    )
    for page in pages:
        scanned += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            status, updated = item["status"]["S"], item["updatedAt"]["S"]
            if updated >= hour_ago:
                completed += status == "COMPLETED"
                failed += status == "FAILED"
            if status == "FAILED" and updated >= failures_since:
                failures.append(_failed_file(item))
        if scanned >= SCAN_LIMIT:
            truncated = True
            break
    failures.sort(key=lambda failure: (failure.updated_at, failure.key))
    return Reading(alarms, depths, completed, failed, failures, truncated)


def _account(outputs: Mapping[str, str]) -> str:
    # arn:aws:states:{region}:{account}:stateMachine:{name}
    return outputs["stateMachineArn"].split(":")[4]


def _failed_file(item: Mapping[str, Any]) -> FailedFile:
    error = item.get("error", {}).get("M")
    return FailedFile(
        file_id=item["fileId"]["S"],
        attempt=int(item.get("attempt", {}).get("N", "1")),
        updated_at=item["updatedAt"]["S"],
        object_key=item.get("objectKey", {}).get("S"),
        stage=item.get("stage", {}).get("S"),
        error=(
            {key: value.get("S") for key, value in error.items() if "S" in value} if error else None
        ),
    )
