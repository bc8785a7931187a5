"""The pipeline's Amazon States Language definition, built from resource ARNs.

RecordReceived → Validate → Process → Aggregate → RecordCompleted, with a status write before
and after every stage. Status writes are direct `dynamodb:updateItem` integrations guarded by
the rank condition of docs/architecture.md §3, so a late or repeated write never lowers a
file's status and never leaves COMPLETED or FAILED; a write that loses that race ends the
execution quietly
(`Superseded`), because a newer or final state already stands.

Every stage task retries Lambda service errors and transient SDK errors raised in handler code
(exponential backoff, full jitter) and catches everything else: the failure is described as
`{stage, type, message}`, recorded as FAILED, sent to that stage's FIFO DLQ, and the execution
fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from handlers.core.errors import BUSINESS_ERRORS, RETRYABLE_FUNCTION_ERRORS
from handlers.core.status_model import STATUS_RANK, STATUS_RANK_ATTRIBUTE, FileStatus
from stacks.naming import STAGE_FUNCTIONS as STAGES
from stacks.naming import StageName as Stage

State = dict[str, Any]

# Errors of the Lambda service itself (not of the handler); always safe to retry.
LAMBDA_SERVICE_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# Step Functions and DynamoDB spell the service prefix differently depending on the integration
# version; a rank condition that fails must be recognised in both spellings.
CONDITIONAL_CHECK_FAILED: Final = (
    "DynamoDB.ConditionalCheckFailedException",
    "DynamoDb.ConditionalCheckFailedException",
)
DYNAMODB_TRANSIENT_ERRORS: Final = (
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.AmazonDynamoDBException",
)
# Errors whose Cause is the Lambda error payload (JSON with errorMessage): ours, and a function
# timing out. Any other error's Cause is recorded as it comes.
JSON_CAUSE_ERRORS: Final = (*BUSINESS_ERRORS, *RETRYABLE_FUNCTION_ERRORS, "Sandbox.Timedout")


@dataclass(frozen=True)
class StageStates:
    task: str  # the Lambda task state
    running: FileStatus  # written before the task
    done: FileStatus  # written after it (COMPLETED for the last stage)
    mark_running: str
    mark_done: str


STAGE_STATES: Final[dict[Stage, StageStates]] = {
    "validator": StageStates(
        "Validate", FileStatus.VALIDATING, FileStatus.VALIDATED, "MarkValidating", "MarkValidated"
    ),
    "processor": StageStates(
        "Process", FileStatus.PROCESSING, FileStatus.PROCESSED, "MarkProcessing", "MarkProcessed"
    ),
    "aggregator": StageStates(
        "Aggregate",
        FileStatus.AGGREGATING,
        FileStatus.COMPLETED,
        "MarkAggregating",
        "RecordCompleted",
    ),
}

SUPERSEDED: Final = "Superseded"
RECORD_FAILED: Final = "RecordFailed"
NOTIFY_DLQ: Final = "SendToStageDlq"
FAILED: Final = "Failed"


@dataclass(frozen=True)
class RetryPolicy:
    """Retry of a stage task. The defaults are production's; tests may shorten the interval."""

    interval_s: int = 2
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_s: int = 60


@dataclass(frozen=True)
class StateMachineTargets:
    """What the definition refers to."""

    status_table: str
    functions: dict[Stage, str]  # function ARNs
    stage_dlq_urls: dict[Stage, str]


def _status_key() -> dict[str, Any]:
    return {"fileId": {"S.$": "$.fileId"}}


def _names() -> dict[str, str]:
    return {"#status": "status", "#rank": STATUS_RANK_ATTRIBUTE, "#stage": "stage"}


def _rank(status: FileStatus) -> dict[str, str]:
    return {"N": str(STATUS_RANK[status])}


def _terminal_values() -> dict[str, Any]:
    return {":completed": {"S": FileStatus.COMPLETED}, ":failed": {"S": FileStatus.FAILED}}


def _status_write(
    targets: StateMachineTargets,
    status: FileStatus,
    stage: str,
    next_state: str,
    extra_set: str = "",
    extra_values: dict[str, Any] | None = None,
) -> State:
    """updateItem that moves the file to `status` if its rank allows it."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Parameters": {
            "TableName": targets.status_table,
            "Key": _status_key(),
            "UpdateExpression": (
                "SET #status = :status, #rank = :rank, #stage = :stage, updatedAt = :now"
                + extra_set
            ),
            "ConditionExpression": (
                "attribute_exists(fileId) AND #rank <= :rank "
                "AND NOT (#status IN (:completed, :failed))"
            ),
            "ExpressionAttributeNames": _names(),
            "ExpressionAttributeValues": {
                ":status": {"S": status},
                ":rank": _rank(status),
                ":stage": {"S": stage},
                ":now": {"S.$": "$$.State.EnteredTime"},
                **_terminal_values(),
                **(extra_values or {}),
            },
        },
        "ResultPath": None,
        "Retry": [_dynamodb_retry()],
        "Catch": [{"ErrorEquals": list(CONDITIONAL_CHECK_FAILED), "Next": SUPERSEDED}],
        "Next": next_state,
    }


def _dynamodb_retry() -> dict[str, Any]:
    return {
        "ErrorEquals": list(DYNAMODB_TRANSIENT_ERRORS),
        "IntervalSeconds": 1,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    }


def _stage_payload(stage: Stage) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "fileId.$": "$.fileId",
        "bucket.$": "$.bucket",
        "objectKey.$": "$.objectKey",
        "versionId.$": "$.versionId",
        "attempt.$": "$.attempt",
    }
    if stage in ("processor", "aggregator"):
        payload["validation.$"] = "$.validation"
    if stage == "aggregator":
        payload["processing.$"] = "$.processing"
    return payload


_RESULT_PATHS: Final[dict[Stage, str]] = {
    "validator": "$.validation",
    "processor": "$.processing",
    "aggregator": "$.aggregation",
}


def _stage_task(
    targets: StateMachineTargets, stage: Stage, retry: RetryPolicy, next_state: str
) -> State:
    task_name = STAGE_STATES[stage].task
    retry_common = {
        "IntervalSeconds": retry.interval_s,
        "MaxAttempts": retry.max_attempts,
        "BackoffRate": retry.backoff_rate,
        "MaxDelaySeconds": retry.max_delay_s,
        "JitterStrategy": "FULL",
    }
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": targets.functions[stage], "Payload": _stage_payload(stage)},
        "ResultSelector": {"result.$": "$.Payload"},
        "ResultPath": _RESULT_PATHS[stage],
        "OutputPath": "$",
        "Retry": [
            {"ErrorEquals": list(LAMBDA_SERVICE_ERRORS), **retry_common},
            {"ErrorEquals": list(RETRYABLE_FUNCTION_ERRORS), **retry_common},
        ],
        "Catch": [
            {
                "ErrorEquals": list(JSON_CAUSE_ERRORS),
                "ResultPath": "$.caught",
                "Next": f"Describe{task_name}Error",
            },
            {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.caught",
                "Next": f"Describe{task_name}Failure",
            },
        ],
        "Next": next_state,
    }


def _describe_failure(targets: StateMachineTargets, stage: Stage, json_cause: bool) -> State:
    """Pass state that shapes the caught error into `$.failure` = {stage, type, message, dlqUrl}.

    A Lambda function error's Cause is its JSON error payload; intrinsics cannot take a path into
    their own result, so that case parses here and picks `errorMessage` in the next Pass state.
    """
    failure: dict[str, Any] = {
        "stage": stage,
        "type.$": "$.caught.Error",
        "dlqUrl": targets.stage_dlq_urls[stage],
    }
    if json_cause:
        return {
            "Type": "Pass",
            "Parameters": {**failure, "cause.$": "States.StringToJson($.caught.Cause)"},
            "ResultPath": "$.failure",
            "Next": f"Pick{STAGE_STATES[stage].task}ErrorMessage",
        }
    return {
        "Type": "Pass",
        "Parameters": {**failure, "message.$": "$.caught.Cause"},
        "ResultPath": "$.failure",
        "Next": RECORD_FAILED,
    }


def _pick_error_message(stage: Stage) -> State:
    return {
        "Type": "Pass",
        "Parameters": {
            "stage.$": "$.failure.stage",
            "type.$": "$.failure.type",
            "dlqUrl.$": "$.failure.dlqUrl",
            "message.$": "$.failure.cause.errorMessage",
        },
        "ResultPath": "$.failure",
        "Next": RECORD_FAILED,
    }


def _record_failed(targets: StateMachineTargets) -> State:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Parameters": {
            "TableName": targets.status_table,
            "Key": _status_key(),
            "UpdateExpression": (
                "SET #status = :status, #rank = :rank, #stage = :stage, #error = :error, "
                "updatedAt = :now"
            ),
            "ConditionExpression": (
                "attribute_exists(fileId) AND NOT (#status IN (:completed, :failed))"
            ),
            "ExpressionAttributeNames": {**_names(), "#error": "error"},
            "ExpressionAttributeValues": {
                ":status": {"S": FileStatus.FAILED},
                ":rank": _rank(FileStatus.FAILED),
                ":stage": {"S.$": "$.failure.stage"},
                ":error": {
                    "M": {
                        "stage": {"S.$": "$.failure.stage"},
                        "type": {"S.$": "$.failure.type"},
                        "message": {"S.$": "$.failure.message"},
                    }
                },
                ":now": {"S.$": "$$.State.EnteredTime"},
                **_terminal_values(),
            },
        },
        "ResultPath": None,
        "Retry": [_dynamodb_retry()],
        "Catch": [{"ErrorEquals": list(CONDITIONAL_CHECK_FAILED), "Next": SUPERSEDED}],
        "Next": NOTIFY_DLQ,
    }


def _notify_dlq() -> State:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage",
        "Parameters": {
            "QueueUrl.$": "$.failure.dlqUrl",
            "MessageBody": {
                "fileId.$": "$.fileId",
                "bucket.$": "$.bucket",
                "objectKey.$": "$.objectKey",
                "versionId.$": "$.versionId",
                "attempt.$": "$.attempt",
                "stage.$": "$.failure.stage",
                "error": {
                    "stage.$": "$.failure.stage",
                    "type.$": "$.failure.type",
                    "message.$": "$.failure.message",
                },
                "executionArn.$": "$$.Execution.Id",
            },
            "MessageGroupId.$": "$.fileId",
            # One message per attempt, even when the same failure repeats within SQS's
            # five-minute deduplication window.
            "MessageDeduplicationId.$": "$$.Execution.Name",
        },
        "ResultPath": None,
        "Retry": [
            {
                "ErrorEquals": ["States.TaskFailed"],
                "IntervalSeconds": 1,
                "MaxAttempts": 3,
                "BackoffRate": 2.0,
                "JitterStrategy": "FULL",
            }
        ],
        "Next": FAILED,
    }


def state_machine_definition(
    targets: StateMachineTargets, retry: RetryPolicy | None = None, timeout_s: int | None = None
) -> dict[str, Any]:
    """The full ASL document. `timeout_s` bounds a whole execution (default: one hour;
    `stacks.spec.execution_timeout_s` derives the bound from the configuration)."""
    retry = retry or RetryPolicy()
    states: dict[str, State] = {
        "RecordReceived": _status_write(
            targets,
            FileStatus.RECEIVED,
            "ingest",
            "MarkValidating",
            extra_set=", executionArn = :execution",
            extra_values={":execution": {"S.$": "$$.Execution.Id"}},
        ),
    }
    for index, stage in enumerate(STAGES):
        names = STAGE_STATES[stage]
        last = index == len(STAGES) - 1
        after_done = "Completed" if last else STAGE_STATES[STAGES[index + 1]].mark_running
        states[names.mark_running] = _status_write(targets, names.running, stage, names.task)
        states[names.task] = _stage_task(targets, stage, retry, names.mark_done)
        states[names.mark_done] = _status_write(targets, names.done, stage, after_done)
        states[f"Describe{names.task}Error"] = _describe_failure(targets, stage, json_cause=True)
        states[f"Pick{names.task}ErrorMessage"] = _pick_error_message(stage)
        states[f"Describe{names.task}Failure"] = _describe_failure(targets, stage, json_cause=False)
    states["Completed"] = {"Type": "Succeed"}
    states[RECORD_FAILED] = _record_failed(targets)
    states[NOTIFY_DLQ] = _notify_dlq()
    states[FAILED] = {
        "Type": "Fail",
        "Error": "FileFailed",
        "Cause": "The file failed a pipeline stage; its status item holds the stage and reason.",
    }
    states[SUPERSEDED] = {
        "Type": "Succeed",
        "Comment": "The status already moved past this write (a newer attempt or a final state).",
    }
    return {
        "Comment": "Market-data file pipeline: validate, process, aggregate; status in DynamoDB.",
        "StartAt": "RecordReceived",
        "TimeoutSeconds": timeout_s or 3600,
        "States": states,
    }
