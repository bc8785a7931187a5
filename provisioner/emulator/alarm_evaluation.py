"""CloudWatch's alarm evaluation, played for the local engine (moto stores alarms, never
evaluates them).

For each alarm of the model (`stacks.alarm_resources.alarm_settings`) the metric is computed
from the emulator itself, as AWS would publish it: a dead-letter queue's
`ApproximateNumberOfMessagesVisible` is the queue's visible messages now, the state machine's
`ExecutionsFailed` is the number of executions that failed within the alarm's period. The
alarm's threshold and comparison then decide its state, and `SetAlarmState` records a change,
so an alarm read from the emulator really goes to ALARM and back to OK.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog

from provisioner.emulator.apply.clients import AwsClients
from stacks import spec
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

_COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
}


def _dlq_depth(clients: AwsClients, alarm: spec.AlarmSettings, now: datetime) -> float | None:
    url = clients.sqs.get_queue_url(QueueName=alarm.dimensions["QueueName"])["QueueUrl"]
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return float(attributes["ApproximateNumberOfMessages"])


def _failed_executions(
    clients: AwsClients, alarm: spec.AlarmSettings, now: datetime
) -> float | None:
    since = now - timedelta(seconds=alarm.period_s)
    failed = 0
    paginator = clients.stepfunctions.get_paginator("list_executions")
    pages = paginator.paginate(
        stateMachineArn=alarm.dimensions["StateMachineArn"], statusFilter="FAILED"
    )
    for page in pages:
        for execution in page["executions"]:
            stopped = execution.get("stopDate")
            if stopped is not None and stopped >= since:
                failed += 1
    # CloudWatch publishes no datapoint for a period without failures.
    return float(failed) if failed else None


_METRICS: Final[
    dict[tuple[str, str], Callable[[AwsClients, spec.AlarmSettings, datetime], float | None]]
] = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): _dlq_depth,
    ("AWS/States", "ExecutionsFailed"): _failed_executions,
}


def alarm_state(alarm: spec.AlarmSettings, value: float | None) -> str:
    """ALARM or OK for one datapoint (None: no datapoint, which the model treats as OK)."""
    if value is None:
        return "OK" if alarm.treat_missing_data == "notBreaching" else "INSUFFICIENT_DATA"
    return "ALARM" if _COMPARISONS[alarm.comparison](value, alarm.threshold) else "OK"


def evaluate_alarms(
    clients: AwsClients, config: PipelineConfig, account_id: str, now: datetime
) -> dict[str, str]:
    """Evaluate the environment's alarms in the emulator; return each alarm's state by name."""
    names = spec.names(config, account_id)
    arns = spec.pipeline_arns(config, account_id)
    cloudwatch = clients.cloudwatch
    current = {
        alarm["AlarmName"]: alarm["StateValue"]
        for alarm in cloudwatch.describe_alarms(AlarmNames=list(names.alarms.values()))[
            "MetricAlarms"
        ]
    }
    states: dict[str, str] = {}
    for key, alarm in spec.alarm_settings(names, arns.state_machine).items():
        name = names.alarms[key]
        if name not in current:
            continue  # not (yet) applied
        value = _METRICS[alarm.namespace, alarm.metric](clients, alarm, now)
        state = alarm_state(alarm, value)
        states[name] = state
        if current[name] != state:
            shown = "no datapoint" if value is None else f"1 datapoint [{value:g}]"
            cloudwatch.set_alarm_state(
                AlarmName=name,
                StateValue=state,
                StateReason=f"{shown} against the threshold ({alarm.threshold:g}), "
                "evaluated by the local engine",
            )
            log.info("emulator.alarm_state_changed", alarm=name, state=state, value=value)
    return states
