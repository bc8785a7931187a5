"""The alarms of one environment as Pulumi resources (docs/architecture.md §8): the topic's key,
the encrypted topic and its policy, the optional e-mail subscription, one alarm per metric.

Part of the Pulumi renderer (`stacks.pipeline` calls `alarm_topic`); it only renders the model
(`stacks.alarm_resources.alarm_settings`, `ALARM_TOPIC`, `ALARM_KEY`, `stacks.policies`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from stacks import spec
from stacks.config import PipelineConfig

ChildOptions = Callable[[], pulumi.ResourceOptions]


def alarm_topic(
    name: str,
    config: PipelineConfig,
    physical: pulumi.Output[spec.PipelineNames],
    arns: pulumi.Output[spec.PipelineArns],
    account_id: pulumi.Output[str],
    partition: pulumi.Output[str],
    tags: dict[str, str],
    child: ChildOptions,
) -> aws.sns.Topic:
    """Render the alarm resources; return the topic (its ARN is a stack output)."""
    settings = spec.ALARM_KEY
    key = aws.kms.Key(
        f"{name}-alarm-key",
        description=settings.description,
        key_usage=settings.usage,
        customer_master_key_spec=settings.spec,
        enable_key_rotation=settings.rotation,
        deletion_window_in_days=settings.deletion_window_days,
        policy=pulumi.Output.all(account_id, partition).apply(
            lambda values: json.dumps(spec.alarm_key_policy(values[0], values[1]), sort_keys=True)
        ),
        tags=tags,
        opts=child(),
    )
    aws.kms.Alias(
        f"{name}-alarm-key-alias",
        name=physical.alarm_key_alias,
        target_key_id=key.key_id,
        opts=child(),
    )
    topic = aws.sns.Topic(
        f"{name}-alarms",
        name=physical.alarm_topic,
        display_name=spec.ALARM_TOPIC.display_name,
        kms_master_key_id=key.arn if spec.ALARM_TOPIC.encrypted else None,
        tags=tags,
        opts=child(),
    )
    aws.sns.TopicPolicy(
        f"{name}-alarms-policy",
        arn=topic.arn,
        policy=pulumi.Output.all(arns, account_id).apply(
            lambda values: json.dumps(spec.alarm_topic_policy(values[0], values[1]), sort_keys=True)
        ),
        opts=child(),
    )
    if config.alarm_email is not None:
        # SNS mails the address a confirmation link; until it is followed nothing is delivered.
        aws.sns.TopicSubscription(
            f"{name}-alarms-email",
            topic=topic.arn,
            protocol=spec.ALARM_TOPIC.email_protocol,
            endpoint=config.alarm_email,
            opts=child(),
        )
    alarms = pulumi.Output.all(physical, arns).apply(
        lambda values: spec.alarm_settings(values[0], values[1].state_machine)
    )
    for key_name in spec.ALARMS:
        alarm = alarms.apply(lambda all_alarms, k=key_name: all_alarms[k])  # type: ignore[misc]
        aws.cloudwatch.MetricAlarm(
            f"{name}-{key_name}",
            name=physical.alarms[key_name],
            alarm_description=alarm.description,
            namespace=alarm.namespace,
            metric_name=alarm.metric,
            dimensions=alarm.dimensions.apply(dict),
            statistic=alarm.statistic,
            period=alarm.period_s,
            evaluation_periods=alarm.evaluation_periods,
            datapoints_to_alarm=alarm.datapoints_to_alarm,
            threshold=alarm.threshold,
            comparison_operator=alarm.comparison,
            treat_missing_data=alarm.treat_missing_data,
            actions_enabled=alarm.actions_enabled,
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            tags=tags,
            opts=child(),
        )
    return topic
