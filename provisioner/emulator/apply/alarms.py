"""Renderers of the model's alarms (docs/architecture.md §8): the topic's KMS key (found by its
alias), the encrypted topic with its policy and optional e-mail subscription, the metric alarms.

moto stores alarms but never evaluates them; `provisioner.emulator.alarm_evaluation` plays
CloudWatch for the local engine.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from provisioner.emulator.apply.plan import Context, Plan, Resource, absent, plan_tags
from stacks import spec

_KEY_MISSING = ("NotFoundException",)
_TOPIC_MISSING = ("NotFound", "NotFoundException")


def _alarm_key(ctx: Context) -> Mapping[str, Any] | None:
    """The environment's alarm key, found by its alias; None if it has none (yet)."""
    try:
        metadata: Mapping[str, Any] = ctx.clients.kms.describe_key(KeyId=ctx.names.alarm_key_alias)[
            "KeyMetadata"
        ]
    except ClientError as exc:
        if absent(exc, *_KEY_MISSING):
            return None
        raise
    return None if metadata.get("KeyState") == "PendingDeletion" else metadata


def alarm_key_arn(ctx: Context) -> str | None:
    key = _alarm_key(ctx)
    return None if key is None else str(key["Arn"])


class AlarmKey(Resource):
    kind = "key"

    def plan(self, ctx: Context) -> Plan:
        kms = ctx.clients.kms
        settings = spec.ALARM_KEY
        policy = spec.alarm_key_policy(ctx.account_id)
        key = _alarm_key(ctx)
        plan = Plan(key is not None)
        if key is None:

            def create() -> None:
                key = kms.create_key(
                    Policy=json.dumps(policy),
                    Description=settings.description,
                    KeyUsage=settings.usage,
                    KeySpec=settings.spec,
                    Tags=[{"TagKey": k, "TagValue": v} for k, v in ctx.tags.items()],
                )["KeyMetadata"]
                if settings.rotation:
                    kms.enable_key_rotation(KeyId=key["KeyId"])
                kms.create_alias(AliasName=self.name, TargetKeyId=key["KeyId"])

            plan.change("key", create)
            return plan
        key_id = str(key["KeyId"])  # moto takes some calls by id only
        if key.get("Description") != settings.description:
            plan.change(
                "description",
                lambda: kms.update_key_description(KeyId=key_id, Description=settings.description),
            )
        current = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        if current != policy:
            plan.change(
                "policy",
                lambda: kms.put_key_policy(
                    KeyId=key_id, PolicyName="default", Policy=json.dumps(policy)
                ),
            )
        rotation = kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
        if rotation != settings.rotation:
            toggle = kms.enable_key_rotation if settings.rotation else kms.disable_key_rotation
            plan.change("rotation", lambda: toggle(KeyId=key_id))
        tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
        plan_tags(
            plan,
            tags,
            ctx.tags,
            lambda new: kms.tag_resource(
                KeyId=key_id, Tags=[{"TagKey": k, "TagValue": v} for k, v in new.items()]
            ),
            lambda keys: kms.untag_resource(KeyId=key_id, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        key = _alarm_key(ctx)
        if key is None:
            return False
        kms = ctx.clients.kms
        kms.delete_alias(AliasName=self.name)
        kms.schedule_key_deletion(
            KeyId=key["KeyId"], PendingWindowInDays=spec.ALARM_KEY.deletion_window_days
        )
        return True


class AlarmTopic(Resource):
    kind = "topic"

    def _attributes(self, ctx: Context) -> Mapping[str, str] | None:
        try:
            attributes: Mapping[str, str] = ctx.clients.sns.get_topic_attributes(
                TopicArn=ctx.arns.alarm_topic
            )["Attributes"]
        except ClientError as exc:
            if absent(exc, *_TOPIC_MISSING):
                return None
            raise
        return attributes

    def _desired(self, ctx: Context) -> dict[str, str]:
        desired = {
            "DisplayName": spec.ALARM_TOPIC.display_name,
            "Policy": json.dumps(spec.alarm_topic_policy(ctx.arns, ctx.account_id)),
        }
        if spec.ALARM_TOPIC.encrypted:
            key_arn = alarm_key_arn(ctx)
            if key_arn is None:
                # The key comes first in the inventory: only a plan gets here without it.
                raise ClientError(
                    {"Error": {"Code": "NotFoundException", "Message": "no alarm key"}},
                    "DescribeKey",
                )
            desired["KmsMasterKeyId"] = key_arn
        return desired

    def plan(self, ctx: Context) -> Plan:
        sns = ctx.clients.sns
        topic = ctx.arns.alarm_topic
        desired = self._desired(ctx)
        current = self._attributes(ctx)
        plan = Plan(current is not None)
        if current is None:
            plan.change(
                "topic",
                lambda: sns.create_topic(
                    Name=self.name,
                    Attributes=desired,
                    Tags=[{"Key": k, "Value": v} for k, v in ctx.tags.items()],
                ),
            )
        else:
            for name, value in desired.items():
                if not _same_attribute(name, current.get(name), value):
                    set_attribute = functools.partial(
                        sns.set_topic_attributes,
                        TopicArn=topic,
                        AttributeName=name,
                        AttributeValue=value,
                    )
                    plan.change("policy" if name == "Policy" else name, set_attribute)
            tags = sns.list_tags_for_resource(ResourceArn=topic)["Tags"]
            plan_tags(
                plan,
                {t["Key"]: t["Value"] for t in tags},
                ctx.tags,
                lambda new: sns.tag_resource(
                    ResourceArn=topic, Tags=[{"Key": k, "Value": v} for k, v in new.items()]
                ),
                lambda keys: sns.untag_resource(ResourceArn=topic, TagKeys=keys),
            )
        self._plan_subscription(ctx, plan, exists=current is not None)
        return plan

    def _plan_subscription(self, ctx: Context, plan: Plan, *, exists: bool) -> None:
        """The config's e-mail address subscribed, and no other address of ours."""
        sns = ctx.clients.sns
        topic = ctx.arns.alarm_topic
        protocol = spec.ALARM_TOPIC.email_protocol
        wanted = ctx.config.alarm_email
        subscriptions: list[Mapping[str, Any]] = (
            sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] if exists else []
        )
        emails = [s for s in subscriptions if s.get("Protocol") == protocol]
        for stale in emails:
            if stale.get("Endpoint") != wanted and stale["SubscriptionArn"].startswith("arn:"):
                unsubscribe = functools.partial(
                    sns.unsubscribe, SubscriptionArn=stale["SubscriptionArn"]
                )
                plan.change("e-mail subscription", unsubscribe)
        if wanted is not None and not any(s.get("Endpoint") == wanted for s in emails):
            plan.change(
                "e-mail subscription",
                lambda: sns.subscribe(TopicArn=topic, Protocol=protocol, Endpoint=wanted),
            )

    def delete(self, ctx: Context) -> bool:
        if self._attributes(ctx) is None:
            return False
        ctx.clients.sns.delete_topic(TopicArn=ctx.arns.alarm_topic)
        return True


def _same_attribute(name: str, current: str | None, desired: str) -> bool:
    if name == "Policy":
        return current is not None and json.loads(current) == json.loads(desired)
    return current == desired


def metric_alarm_args(settings: spec.AlarmSettings, topic_arn: str) -> dict[str, Any]:
    """One alarm of the model in CloudWatch's spelling (PutMetricAlarm), except name and tags."""
    return {
        "AlarmDescription": settings.description,
        "Namespace": settings.namespace,
        "MetricName": settings.metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in settings.dimensions.items()],
        "Statistic": settings.statistic,
        "Period": settings.period_s,
        "EvaluationPeriods": settings.evaluation_periods,
        "DatapointsToAlarm": settings.datapoints_to_alarm,
        "Threshold": float(settings.threshold),
        "ComparisonOperator": settings.comparison,
        "TreatMissingData": settings.treat_missing_data,
        "ActionsEnabled": settings.actions_enabled,
        "AlarmActions": [topic_arn],
        "OKActions": [topic_arn],
    }


class MetricAlarm(Resource):
    kind = "alarm"

    def __init__(self, name: str, type: str, key: spec.AlarmKey) -> None:
        super().__init__(name, type)
        self.key = key

    def _current(self, ctx: Context) -> Mapping[str, Any] | None:
        found = ctx.clients.cloudwatch.describe_alarms(AlarmNames=[self.name])["MetricAlarms"]
        return found[0] if found else None

    def plan(self, ctx: Context) -> Plan:
        cloudwatch = ctx.clients.cloudwatch
        settings = spec.alarm_settings(ctx.names, ctx.arns.state_machine)[self.key]
        desired = metric_alarm_args(settings, ctx.arns.alarm_topic)
        current = self._current(ctx)
        plan = Plan(current is not None)
        differing = (
            sorted(key for key, value in desired.items() if current.get(key) != value)
            if current is not None
            else ["alarm"]
        )
        if differing:
            tags = [{"Key": k, "Value": v} for k, v in ctx.tags.items()]
            plan.change(
                ", ".join(differing),
                lambda: cloudwatch.put_metric_alarm(AlarmName=self.name, Tags=tags, **desired),
            )
        if current is not None:
            arn = ctx.arns.alarms[self.key]
            tags_now = cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"]
            plan_tags(
                plan,
                {t["Key"]: t["Value"] for t in tags_now},
                ctx.tags,
                lambda new: cloudwatch.tag_resource(
                    ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in new.items()]
                ),
                lambda keys: cloudwatch.untag_resource(ResourceARN=arn, TagKeys=keys),
            )
        return plan

    def delete(self, ctx: Context) -> bool:
        if self._current(ctx) is None:
            return False
        ctx.clients.cloudwatch.delete_alarms(AlarmNames=[self.name])
        return True
