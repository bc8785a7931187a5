"""IAM and resource policies of one pipeline, as JSON documents built from `naming.pipeline_arns`.

Least privilege: every Allow names its actions (no "*" action) and its resources. The only
`"Resource": "*"` statements are those AWS requires (Step Functions log delivery) and those of
the alarm key's policy, where "*" means the key itself.
"""

from __future__ import annotations

from typing import Any, Final

from stacks.naming import STAGE_FUNCTIONS, FunctionName, PipelineArns

PolicyDocument = dict[str, Any]

_VERSION: Final = "2012-10-17"


def _document(*statements: dict[str, Any]) -> PolicyDocument:
    return {"Version": _VERSION, "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def lambda_assume_role_policy() -> PolicyDocument:
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )


def state_machine_assume_role_policy(
    account_id: str, state_machine_arn_prefix: str
) -> PolicyDocument:
    """Trust Step Functions, only on behalf of this account's state machine (confused deputy)."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": state_machine_arn_prefix},
            },
        }
    )


def _logs(arns: PipelineArns, function: FunctionName) -> dict[str, Any]:
    log_group = arns.function_log_groups[function]
    return _allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group}:*"])


def function_policy(function: FunctionName, arns: PipelineArns) -> PolicyDocument:
    """The inline policy of one function's role: only what its handler calls."""
    bucket = arns.bucket
    table = arns.status_table
    statements: dict[FunctionName, list[dict[str, Any]]] = {
        "ingest": [
            _allow(
                "ConsumeIngestQueue",
                [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                [arns.ingest_queue],
            ),
            _allow("RecordReceived", ["dynamodb:PutItem"], [table]),
            _allow("StartPipeline", ["states:StartExecution"], [arns.state_machine]),
        ],
        "validator": [
            _allow(
                "ReadUploads",
                ["s3:GetObject", "s3:GetObjectVersion"],
                [f"{bucket}/incoming/*"],
            ),
        ],
        "processor": [
            _allow(
                "ReadUploads",
                ["s3:GetObject", "s3:GetObjectVersion"],
                [f"{bucket}/incoming/*"],
            ),
            _allow("WriteWork", ["s3:PutObject"], [f"{bucket}/work/*"]),
        ],
        "aggregator": [
            _allow("ReadAndClearWork", ["s3:GetObject", "s3:DeleteObject"], [f"{bucket}/work/*"]),
            # GetObject too: a retried Aggregate whose work object is gone finishes from the
            # results it already published.
            _allow("PublishResults", ["s3:PutObject", "s3:GetObject"], [f"{bucket}/results/*"]),
            _allow("MergeSummary", ["dynamodb:UpdateItem"], [table]),
        ],
        "status": [
            _allow(
                "ReadStatus",
                ["dynamodb:GetItem", "dynamodb:Query"],
                [table, f"{table}/index/*"],
            ),
        ],
    }
    return _document(*statements[function], _logs(arns, function))


def state_machine_policy(arns: PipelineArns) -> PolicyDocument:
    stage_functions = [arns.functions[stage] for stage in STAGE_FUNCTIONS]
    return _document(
        _allow(
            "InvokeStages",
            ["lambda:InvokeFunction"],
            # Qualified ARNs (versions, aliases) too.
            stage_functions + [f"{arn}:*" for arn in stage_functions],
        ),
        _allow("WriteStatus", ["dynamodb:UpdateItem"], [arns.status_table]),
        _allow("DeadLetter", ["sqs:SendMessage"], list(arns.stage_dlqs.values())),
        # Vended log delivery: these actions do not support resource-level permissions.
        _allow(
            "DeliverLogs",
            [
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ],
            ["*"],
        ),
    )


def ingest_queue_policy(arns: PipelineArns) -> PolicyDocument:
    """Only this environment's EventBridge rule may send to the ingest queue."""
    return _document(
        {
            "Sid": "FromIngestRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arns.ingest_queue,
            "Condition": {"ArnEquals": {"aws:SourceArn": arns.ingest_rule}},
        }
    )


def bucket_policy(bucket_arn: str) -> PolicyDocument:
    """Deny every request that does not use TLS (1.2 or later)."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return _document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyOutdatedTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
    )


def alarm_topic_policy(arns: PipelineArns, account_id: str) -> PolicyDocument:
    """Only this environment's alarms may publish to its alarm topic: CloudWatch on their behalf."""
    return _document(
        {
            "Sid": "FromOwnAlarms",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": arns.alarm_topic,
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": sorted(arns.alarms.values())},
            },
        }
    )


# The account's key administration (AWS's default "key administrators" statement): without it
# nobody could change or delete the key, since a key policy is the root of its access.
_KEY_ADMINISTRATION: Final = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]


def alarm_key_policy(account_id: str, partition: str = "aws") -> PolicyDocument:
    """The alarm topic's key: the account administers it, CloudWatch encrypts what it publishes.

    SNS encrypts a message with the publisher's permissions, so CloudWatch needs
    kms:GenerateDataKey* and kms:Decrypt on the key; the key encrypts nothing but the topic.
    """
    return _document(
        {
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": _KEY_ADMINISTRATION,
            "Resource": "*",
        },
        {
            "Sid": "CloudWatchPublishes",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
        },
    )
