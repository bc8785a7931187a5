"""The resource model's alarms (docs/architecture.md §8): the alarm topic, its KMS key and one
CloudWatch alarm per dead-letter queue and for failed executions, decided once for both engines.

Part of the resource model (`stacks.resources` holds the rest); reached through `stacks.spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from stacks.naming import DLQ_ALARMS, AlarmKey, PipelineNames

__all__ = [
    "ALARM_KEY",
    "ALARM_PERIOD_S",
    "ALARM_TOPIC",
    "AlarmKeySettings",
    "AlarmSettings",
    "AlarmTopicSettings",
    "alarm_settings",
]


@dataclass(frozen=True)
class AlarmTopicSettings:
    display_name: str
    # SNS has no service-owned key, and CloudWatch cannot publish to a topic under SNS's
    # AWS-managed key (alias/aws/sns: its key policy cannot grant CloudWatch kms:Decrypt and
    # kms:GenerateDataKey*), so the topic has a key of its own (`ALARM_KEY`).
    encrypted: bool
    email_protocol: Literal["email"]


ALARM_TOPIC: Final = AlarmTopicSettings(
    display_name="Pipeline alarms", encrypted=True, email_protocol="email"
)


@dataclass(frozen=True)
class AlarmKeySettings:
    """The topic's customer-managed KMS key (`policies.alarm_key_policy`)."""

    description: str
    rotation: bool
    # KMS never deletes a key at once; the shortest window it accepts (destroyable, §2).
    deletion_window_days: int
    usage: Literal["ENCRYPT_DECRYPT"]
    spec: Literal["SYMMETRIC_DEFAULT"]


ALARM_KEY: Final = AlarmKeySettings(
    description="Encrypts the pipeline environment's alarm topic",
    rotation=True,
    deletion_window_days=7,
    usage="ENCRYPT_DECRYPT",
    spec="SYMMETRIC_DEFAULT",
)


@dataclass(frozen=True)
class AlarmSettings:
    """One CloudWatch metric alarm; its actions are the alarm topic, in ALARM and back to OK."""

    description: str
    namespace: str
    metric: str
    dimensions: Mapping[str, str]
    statistic: Literal["Maximum", "Sum"]
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: Literal["GreaterThanThreshold"]
    # No datapoint means nothing arrived (a queue without messages, no failed execution).
    treat_missing_data: Literal["notBreaching"]
    actions_enabled: bool


# CloudWatch's finest period for SQS and Step Functions metrics (both publish every minute).
ALARM_PERIOD_S: Final = 60


def alarm_settings(names: PipelineNames, state_machine_arn: str) -> dict[AlarmKey, AlarmSettings]:
    """Every alarm of the environment: any message in a dead-letter queue, any failed execution."""

    def alarm(
        description: str,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        statistic: Literal["Maximum", "Sum"],
    ) -> AlarmSettings:
        return AlarmSettings(
            description=description,
            namespace=namespace,
            metric=metric,
            dimensions=dimensions,
            statistic=statistic,
            period_s=ALARM_PERIOD_S,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            threshold=0,
            comparison="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            actions_enabled=True,
        )

    settings: dict[AlarmKey, AlarmSettings] = {
        key: alarm(
            f"Messages in the dead-letter queue {names.queues[queue]}",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": names.queues[queue]},
            "Maximum",
        )
        for key, queue in DLQ_ALARMS.items()
    }
    settings["failed-executions"] = alarm(
        f"Failed executions of the state machine {names.state_machine}",
        "AWS/States",
        "ExecutionsFailed",
        {"StateMachineArn": state_machine_arn},
        "Sum",
    )
    return settings
