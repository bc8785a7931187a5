"""Renderers of the model's compute and wiring: roles, functions, the state machine, the ingest
rule and the ingest event source mapping."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from provisioner.emulator.apply.plan import (
    Context,
    Plan,
    Resource,
    absent,
    contains,
    json_attribute,
    plan_tags,
)
from stacks import spec

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import TagTypeDef as IAMTagTypeDef


class Role(Resource):
    kind = "role"

    def __init__(
        self,
        name: str,
        type: str,
        trust: Callable[[Context], Mapping[str, Any]],
        policy: Callable[[Context], Mapping[str, Any]],
    ) -> None:
        super().__init__(name, type)
        self._trust = trust
        self._policy = policy
        self.policy_name = spec.role_policy_name(name)

    def plan(self, ctx: Context) -> Plan:
        iam = ctx.clients.iam
        trust = dict(self._trust(ctx))
        policy = dict(self._policy(ctx))
        try:
            role: Mapping[str, Any] | None = iam.get_role(RoleName=self.name)["Role"]
        except ClientError as exc:
            if not absent(exc, "NoSuchEntity"):
                raise
            role = None
        plan = Plan(role is not None)
        put_policy = lambda: iam.put_role_policy(  # noqa: E731
            RoleName=self.name, PolicyName=self.policy_name, PolicyDocument=json.dumps(policy)
        )
        if role is None:
            role_tags: list[IAMTagTypeDef] = [
                {"Key": key, "Value": value} for key, value in ctx.tags.items()
            ]
            plan.change(
                "role",
                lambda: iam.create_role(
                    RoleName=self.name, AssumeRolePolicyDocument=json.dumps(trust), Tags=role_tags
                ),
            )
            plan.change("policy", put_policy)
            return plan
        if _policy_document(role["AssumeRolePolicyDocument"]) != trust:
            plan.change(
                "trust policy",
                lambda: iam.update_assume_role_policy(
                    RoleName=self.name, PolicyDocument=json.dumps(trust)
                ),
            )
        inline = iam.list_role_policies(RoleName=self.name)["PolicyNames"]
        current_policy = (
            _policy_document(
                iam.get_role_policy(RoleName=self.name, PolicyName=self.policy_name)[
                    "PolicyDocument"
                ]
            )
            if self.policy_name in inline
            else None
        )
        if current_policy != policy:
            plan.change("policy", put_policy)
        # Exactly one inline policy and no managed policy (they grant more than the spec).
        for extra in (name for name in inline if name != self.policy_name):
            plan.change(
                f"policy {extra}",
                partial(iam.delete_role_policy, RoleName=self.name, PolicyName=extra),
            )
        attached = iam.list_attached_role_policies(RoleName=self.name)["AttachedPolicies"]
        for managed in attached:
            arn = managed["PolicyArn"]
            plan.change(
                f"managed policy {arn}",
                partial(iam.detach_role_policy, RoleName=self.name, PolicyArn=arn),
            )
        current_tags = {
            t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=self.name)["Tags"]
        }
        plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: iam.tag_role(
                RoleName=self.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            ),
            lambda keys: iam.untag_role(RoleName=self.name, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        iam = ctx.clients.iam
        try:
            for name in iam.list_role_policies(RoleName=self.name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=self.name, PolicyName=name)
            for managed in iam.list_attached_role_policies(RoleName=self.name)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=self.name, PolicyArn=managed["PolicyArn"])
            iam.delete_role(RoleName=self.name)
        except ClientError as exc:
            if absent(exc, "NoSuchEntity"):
                return False
            raise
        return True


def _policy_document(document: Any) -> Any:
    # IAM returns documents URL-encoded; boto3 usually decodes them already.
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


class Function(Resource):
    kind = "function"

    def __init__(self, name: str, type: str, function: spec.FunctionName) -> None:
        super().__init__(name, type)
        self.function = function

    def _configuration(self, ctx: Context) -> dict[str, Any]:
        fn_spec = spec.function_specs(ctx.config)[self.function]
        environment = spec.function_environment(
            self.function, ctx.config, ctx.names, ctx.arns.state_machine
        )
        return {
            "Role": ctx.arns.function_roles[self.function],
            "Handler": fn_spec.handler,
            "Runtime": spec.LAMBDA_RUNTIME,
            "Description": fn_spec.description,
            "Timeout": fn_spec.timeout_s,
            "MemorySize": fn_spec.memory_mb,
            "Environment": {"Variables": environment},
        }

    def plan(self, ctx: Context) -> Plan:
        lambda_ = ctx.clients.lambda_
        desired = self._configuration(ctx)
        code_sha = base64.b64encode(hashlib.sha256(ctx.code).digest()).decode()
        try:
            current: Mapping[str, Any] | None = lambda_.get_function(FunctionName=self.name)[
                "Configuration"
            ]
        except ClientError as exc:
            if not absent(exc, "ResourceNotFoundException"):
                raise
            current = None
        plan = Plan(current is not None)
        if current is None:
            plan.change(
                "function",
                lambda: lambda_.create_function(
                    FunctionName=self.name,
                    Code={"ZipFile": ctx.code},
                    Architectures=[spec.LAMBDA_ARCHITECTURE],
                    Tags=ctx.tags,
                    **desired,
                ),
            )
            return plan
        differing = sorted(key for key, value in desired.items() if current.get(key) != value)
        if differing:
            plan.change(
                ", ".join(differing),
                lambda: lambda_.update_function_configuration(FunctionName=self.name, **desired),
            )
        if current.get("CodeSha256") != code_sha:
            plan.change(
                "code",
                lambda: lambda_.update_function_code(FunctionName=self.name, ZipFile=ctx.code),
            )
        arn = current["FunctionArn"]
        plan_tags(
            plan,
            lambda_.list_tags(Resource=arn).get("Tags", {}),
            ctx.tags,
            lambda tags: lambda_.tag_resource(Resource=arn, Tags=tags),
            lambda keys: lambda_.untag_resource(Resource=arn, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        try:
            ctx.clients.lambda_.delete_function(FunctionName=self.name)
        except ClientError as exc:
            if absent(exc, "ResourceNotFoundException"):
                return False
            raise
        return True


class StateMachine(Resource):
    kind = "state machine"

    def _desired(self, ctx: Context) -> dict[str, Any]:
        names = ctx.names
        targets = spec.StateMachineTargets(
            status_table=names.status_table,
            functions={stage: ctx.arns.functions[stage] for stage in spec.STAGE_FUNCTIONS},
            stage_dlq_urls={
                stage: ctx.queue_url(names.stage_dlqs[stage]) for stage in spec.STAGE_FUNCTIONS
            },
        )
        settings = spec.STATE_MACHINE
        log_destination = spec.log_destination(ctx.arns.state_machine_log_group)
        return {
            "definition": spec.state_machine_definition(
                targets, ctx.retry, spec.execution_timeout_s(ctx.config, ctx.retry)
            ),
            "roleArn": ctx.arns.state_machine_role,
            "loggingConfiguration": {
                "level": settings.log_level,
                "includeExecutionData": settings.log_execution_data,
                "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": log_destination}}],
            },
        }

    def _describe(self, ctx: Context) -> Mapping[str, Any] | None:
        try:
            return ctx.clients.stepfunctions.describe_state_machine(
                stateMachineArn=ctx.arns.state_machine
            )
        except ClientError as exc:
            if absent(exc, "StateMachineDoesNotExist"):
                return None
            raise

    def plan(self, ctx: Context) -> Plan:
        sfn = ctx.clients.stepfunctions
        arn = ctx.arns.state_machine
        desired = self._desired(ctx)
        definition = json.dumps(desired["definition"])
        current = self._describe(ctx)
        plan = Plan(current is not None)
        if current is None:
            plan.change(
                "state machine",
                lambda: sfn.create_state_machine(
                    name=self.name,
                    definition=definition,
                    roleArn=desired["roleArn"],
                    type=spec.STATE_MACHINE.type,
                    loggingConfiguration=desired["loggingConfiguration"],
                    tags=[{"key": key, "value": value} for key, value in ctx.tags.items()],
                ),
            )
            return plan
        differing = []
        if json.loads(current["definition"]) != desired["definition"]:
            differing.append("definition")
        if current.get("roleArn") != desired["roleArn"]:
            differing.append("role")
        if not contains(desired["loggingConfiguration"], current.get("loggingConfiguration")):
            differing.append("logging")
        if differing:
            plan.change(
                ", ".join(differing),
                lambda: sfn.update_state_machine(
                    stateMachineArn=arn,
                    definition=definition,
                    roleArn=desired["roleArn"],
                    loggingConfiguration=desired["loggingConfiguration"],
                ),
            )
        current_tags = {
            t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]
        }
        plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: sfn.tag_resource(
                resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()]
            ),
            lambda keys: sfn.untag_resource(resourceArn=arn, tagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        if self._describe(ctx) is None:
            return False
        ctx.clients.stepfunctions.delete_state_machine(stateMachineArn=ctx.arns.state_machine)
        return True


class Rule(Resource):
    kind = "event rule"

    def plan(self, ctx: Context) -> Plan:
        events = ctx.clients.events
        settings = spec.INGEST_RULE
        state = spec.rule_state(settings)
        pattern = spec.ingest_rule_event_pattern(ctx.names.bucket)
        target = {
            "Id": settings.target_id,
            "Arn": ctx.arns.ingest_queue,
            "SqsParameters": {"MessageGroupId": settings.message_group},
        }
        put_rule = lambda: events.put_rule(  # noqa: E731
            Name=self.name,
            EventPattern=json.dumps(pattern),
            State=state,
            Description=settings.description,
            Tags=[{"Key": key, "Value": value} for key, value in ctx.tags.items()],
        )
        put_target = lambda: events.put_targets(  # noqa: E731
            Rule=self.name,
            Targets=[target],  # type: ignore[list-item]
        )
        try:
            rule: Mapping[str, Any] | None = events.describe_rule(Name=self.name)
        except ClientError as exc:
            if not absent(exc, "ResourceNotFoundException"):
                raise
            rule = None
        plan = Plan(rule is not None)
        if rule is None:
            plan.change("rule", put_rule)
            plan.change("target", put_target)
            return plan
        if (
            json_attribute(rule.get("EventPattern")) != pattern
            or rule.get("State") != state
            or rule.get("Description") != settings.description
        ):
            plan.change("pattern", put_rule)
        targets = events.list_targets_by_rule(Rule=self.name)["Targets"]
        ours = [t for t in targets if t["Id"] == settings.target_id]
        if len(ours) != 1 or not contains(target, ours[0]):
            plan.change("target", put_target)
        extra = [t["Id"] for t in targets if t["Id"] != settings.target_id]
        if extra:
            plan.change("targets", lambda: events.remove_targets(Rule=self.name, Ids=extra))
        arn = ctx.arns.ingest_rule
        current_tags = {
            t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=arn)["Tags"]
        }
        plan_tags(
            plan,
            current_tags,
            ctx.tags,
            lambda tags: events.tag_resource(
                ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            ),
            lambda keys: events.untag_resource(ResourceARN=arn, TagKeys=keys),
        )
        return plan

    def delete(self, ctx: Context) -> bool:
        events = ctx.clients.events
        try:
            targets = events.list_targets_by_rule(Rule=self.name)["Targets"]
        except ClientError as exc:
            if absent(exc, "ResourceNotFoundException"):
                return False
            raise
        if targets:
            events.remove_targets(Rule=self.name, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=self.name)
        return True


class EventSourceMapping(Resource):
    """The ingest queue → ingest function mapping (stored in moto; `event_source` runs it)."""

    kind = "event source mapping"

    def _find(self, ctx: Context) -> list[Mapping[str, Any]]:
        try:
            mappings = ctx.clients.lambda_.list_event_source_mappings(
                EventSourceArn=ctx.arns.ingest_queue,
                FunctionName=ctx.names.functions["ingest"],
            )["EventSourceMappings"]
        except ClientError as exc:
            if absent(exc, "ResourceNotFoundException"):
                return []
            raise
        return [m for m in mappings if m.get("EventSourceArn") == ctx.arns.ingest_queue]

    def plan(self, ctx: Context) -> Plan:
        lambda_ = ctx.clients.lambda_
        source = spec.INGEST_SOURCE
        settings: dict[str, Any] = {
            "BatchSize": source.batch_size,
            "FunctionResponseTypes": spec.event_source_response_types(source),
        }
        mappings = self._find(ctx)
        plan = Plan(bool(mappings))
        if not mappings:
            plan.change(
                "mapping",
                lambda: lambda_.create_event_source_mapping(
                    EventSourceArn=ctx.arns.ingest_queue,
                    FunctionName=ctx.names.functions["ingest"],
                    Enabled=source.enabled,
                    Tags=ctx.tags,
                    **settings,
                ),
            )
            return plan
        first, *duplicates = mappings
        if not contains(settings, first) or first.get("State") not in ("Enabled", "Enabling"):
            uuid = first["UUID"]
            plan.change(
                "settings",
                lambda: lambda_.update_event_source_mapping(
                    UUID=uuid, Enabled=source.enabled, **settings
                ),
            )
        for duplicate in duplicates:
            uuid = duplicate["UUID"]
            plan.change(
                "duplicate mapping",
                partial(lambda_.delete_event_source_mapping, UUID=uuid),
            )
        arn = first.get("EventSourceMappingArn")
        if arn:
            plan_tags(
                plan,
                lambda_.list_tags(Resource=arn).get("Tags", {}),
                ctx.tags,
                lambda tags: lambda_.tag_resource(Resource=arn, Tags=tags),
                lambda keys: lambda_.untag_resource(Resource=arn, TagKeys=keys),
            )
        return plan

    def delete(self, ctx: Context) -> bool:
        mappings = self._find(ctx)
        for mapping in mappings:
            ctx.clients.lambda_.delete_event_source_mapping(UUID=mapping["UUID"])
        return bool(mappings)
