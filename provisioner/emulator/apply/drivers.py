"""apply, plan and destroy: every resource of the model's inventory, one after the other."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, cast

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.apply.alarms import AlarmKey, AlarmTopic, MetricAlarm
from provisioner.emulator.apply.clients import AwsClients
from provisioner.emulator.apply.compute import (
    EventSourceMapping,
    Function,
    Role,
    Rule,
    StateMachine,
)
from provisioner.emulator.apply.plan import Context, PlannedResource, Resource, ResourceStep, absent
from provisioner.emulator.apply.progress import (
    Phase,
    ProgressSink,
    ResourceProgress,
    StopCheck,
    ignore_progress,
    never_stop,
)
from provisioner.emulator.apply.storage import Bucket, LogGroup, Queue, Table
from provisioner.errors import EngineError, OperationCancelledError
from stacks import spec
from stacks.config import PipelineConfig

logger = structlog.get_logger(__name__)


def _role(ctx: Context, item: spec.InventoryItem) -> Resource:
    if item.key == "state-machine":
        return Role(
            ctx.names.state_machine_role,
            item.type,
            trust=lambda c: spec.state_machine_assume_role_policy(
                c.account_id, c.arns.state_machine
            ),
            policy=lambda c: spec.state_machine_policy(c.arns),
        )
    fn = _function_key(item)
    return Role(
        ctx.names.function_roles[fn],
        item.type,
        trust=lambda _ctx: spec.lambda_assume_role_policy(),
        policy=lambda c: spec.function_policy(fn, c.arns),
    )


def _function_key(item: spec.InventoryItem) -> spec.FunctionName:
    kind, _, fn = item.key.partition(":")
    if kind != "function" or fn not in spec.FUNCTIONS:
        raise ValueError(f"not a function's inventory key: {item.key}")
    return fn


def _log_group(ctx: Context, item: spec.InventoryItem) -> Resource:
    names = ctx.names
    if item.key == "state-machine":
        return LogGroup(names.state_machine_log_group, item.type)
    if item.key == "api-access":
        return LogGroup(names.api_access_log_group, item.type)
    return LogGroup(names.function_log_groups[_function_key(item)], item.type)


def _queue(ctx: Context, item: spec.InventoryItem) -> Resource:
    key = cast("spec.QueueKey", item.key.removeprefix("queue:"))
    return Queue(ctx.names.queues[key], item.type, spec.queue_settings()[key])


def _alarm(ctx: Context, item: spec.InventoryItem) -> Resource:
    key = cast("spec.AlarmKey", item.key.removeprefix("alarm:"))
    return MetricAlarm(ctx.names.alarms[key], item.type, key)


# The inventory's resource types the emulator holds as resources of its own, and their renderers.
_RENDERERS: Final[dict[str, Callable[[Context, spec.InventoryItem], Resource]]] = {
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:sqs/queue:Queue": _queue,
    "aws:s3/bucket:Bucket": lambda ctx, item: Bucket(ctx.names.bucket, item.type),
    "aws:dynamodb/table:Table": lambda ctx, item: Table(ctx.names.status_table, item.type),
    "aws:iam/role:Role": _role,
    "aws:lambda/function:Function": lambda ctx, item: Function(
        ctx.names.functions[_function_key(item)], item.type, _function_key(item)
    ),
    "aws:sfn/stateMachine:StateMachine": lambda ctx, item: StateMachine(
        ctx.names.state_machine, item.type
    ),
    "aws:cloudwatch/eventRule:EventRule": lambda ctx, item: Rule(ctx.names.ingest_rule, item.type),
    "aws:lambda/eventSourceMapping:EventSourceMapping": lambda ctx, item: EventSourceMapping(
        ctx.names.ingest_source, item.type
    ),
    "aws:kms/key:Key": lambda ctx, item: AlarmKey(ctx.names.alarm_key_alias, item.type),
    "aws:sns/topic:Topic": lambda ctx, item: AlarmTopic(ctx.names.alarm_topic, item.type),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
}


def _resources(ctx: Context) -> list[Resource]:
    """The environment's own resources, in the inventory's order (destroy runs it backwards)."""
    return [
        _RENDERERS[item.type](ctx, item)
        for item in spec.inventory(ctx.config)
        if item.local == "resource"
    ]


def planned_resources(
    config: PipelineConfig, *, account_id: str = MOTO_ACCOUNT_ID
) -> list[PlannedResource]:
    """What `apply_pipeline` manages, in order: for progress counting and previews."""
    return [PlannedResource(r.name, r.type) for r in _resources(Context(config, None, account_id))]


# --- apply and destroy ----------------------------------------------------------------------


_DONE: Final[dict[str, str]] = {
    "create": "created",
    "update": "updated",
    "same": "unchanged",
    "delete": "deleted",
}
_DOING: Final[dict[str, str]] = {
    "create": "creating",
    "update": "updating",
    "same": "checked",
    "delete": "deleting",
}


def _event(
    phase: Phase,
    resource: Resource,
    step: ResourceStep,
    message: str,
    changes: list[str] | None = None,
) -> ResourceProgress:
    return ResourceProgress(
        phase=phase,
        message=message,
        resource=resource.name,
        resource_type=resource.type,
        step=step,
        changes=None if changes is None else tuple(changes),
    )


def _run_each(
    ctx: Context,
    resources: list[Resource],
    work: Callable[[Resource], Iterator[ResourceProgress]],
    on_event: ProgressSink,
    should_stop: StopCheck,
    operation: str,
) -> None:
    for index, resource in enumerate(resources):
        if should_stop():
            logger.info("emulator.apply.cancelled", operation=operation, done=index)
            raise OperationCancelledError(
                f"{operation} cancelled after {index} of {len(resources)} resources"
            )
        try:
            for event in work(resource):
                on_event(event)
        except (ClientError, BotoCoreError) as exc:
            detail = f"{resource.kind} {resource.name}: {exc}"
            on_event(_event(Phase.FAILED, resource, "same", detail))
            logger.warning(
                "emulator.apply.resource_failed",
                operation=operation,
                resource=resource.name,
                error=str(exc),
            )
            raise EngineError(f"{operation} failed at {detail}") from exc
        except EngineError as exc:
            on_event(_event(Phase.FAILED, resource, "same", exc.detail))
            raise


def apply_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    api_endpoint: str,
    on_event: ProgressSink = ignore_progress,
    should_stop: StopCheck = never_stop,
    retry: spec.RetryPolicy | None = None,
) -> dict[str, str]:
    """Create or update every resource of the environment; return its stack outputs.

    Reports STARTED and FINISHED per resource with step `create`, `update` or `same` (and
    `changes`, what differed); checks `should_stop` between resources and
    raises `OperationCancelledError` when it is set. Boto failures become `EngineError`.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = Context(config, clients, account_id, retry)

    def apply_one(resource: Resource) -> Iterator[ResourceProgress]:
        plan = resource.plan(ctx)
        step = plan.step
        data = list(plan.changes)
        what = f" ({', '.join(plan.changes)})" if plan.changes else ""
        yield _event(
            Phase.STARTED,
            resource,
            step,
            f"{_DOING[step]} {resource.kind} {resource.name}{what}",
            data,
        )
        for action in plan.actions:
            action()
        yield _event(
            Phase.FINISHED,
            resource,
            step,
            f"{_DONE[step]} {resource.kind} {resource.name}{what}",
            data,
        )

    _run_each(ctx, _resources(ctx), apply_one, on_event, should_stop, "apply")
    try:
        outputs = _outputs(ctx, api_endpoint)
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"apply could not read the stack outputs: {exc}") from exc
    logger.info("emulator.apply.done", environment=config.stack_name)
    return outputs


def _outputs(ctx: Context, api_endpoint: str) -> dict[str, str]:
    names = ctx.names
    return spec.stack_outputs(
        bucket_name=names.bucket,
        queue_urls={key: ctx.queue_url(name) for key, name in names.queues.items()},
        table_name=names.status_table,
        state_machine_arn=ctx.arns.state_machine,
        function_names=names.functions,
        api_endpoint=api_endpoint,
        alarm_topic_arn=ctx.arns.alarm_topic,
    )


def plan_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    on_event: ProgressSink = ignore_progress,
    should_stop: StopCheck = never_stop,
    retry: spec.RetryPolicy | None = None,
) -> dict[str, int]:
    """What `apply_pipeline` would do, resource by resource, without writing anything.

    The local engine's preview (the plan of an update) and refresh (drift: resources that are
    missing or differ from the model). Returns the count of resources by step.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = Context(config, clients, account_id, retry)
    counts: dict[str, int] = {}

    def plan_one(resource: Resource) -> Iterator[ResourceProgress]:
        try:
            plan = resource.plan(ctx)
            step, changes = plan.step, list(plan.changes)
        except ClientError as exc:
            # Planning reads what the resource refers to; missing dependencies mean that the
            # environment is (partly) gone, so this resource would be created too.
            if not absent(exc, *_MISSING_CODES):
                raise
            step, changes = "create", []
        counts[step] = counts.get(step, 0) + 1
        what = f" ({', '.join(changes)})" if changes else ""
        yield _event(
            Phase.FINISHED,
            resource,
            step,
            f"{resource.kind} {resource.name}: {_PLANNED[step]}{what}",
            changes,
        )

    _run_each(ctx, _resources(ctx), plan_one, on_event, should_stop, "plan")
    return counts


_PLANNED: Final[dict[str, str]] = {
    "create": "would be created",
    "update": "would be updated",
    "same": "up to date",
    "delete": "would be deleted",
}
# Error codes meaning "does not exist" across the services the plan reads.
_MISSING_CODES: Final = (
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NoSuchBucket",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "StateMachineDoesNotExist",
    "NotFound",
    "NotFoundException",
    "404",
)


def destroy_pipeline(
    config: PipelineConfig,
    clients: AwsClients,
    *,
    on_event: ProgressSink = ignore_progress,
    should_stop: StopCheck = never_stop,
) -> None:
    """Delete every resource of the environment, the versioned bucket's contents included.

    A resource that is already gone is reported with step `same`; destroying an environment
    that does not exist succeeds.
    """
    try:
        account_id = clients.account_id()
    except (ClientError, BotoCoreError) as exc:
        raise EngineError(f"the AWS emulator is not reachable: {exc}") from exc
    ctx = Context(config, clients, account_id)

    def destroy_one(resource: Resource) -> Iterator[ResourceProgress]:
        yield _event(
            Phase.STARTED,
            resource,
            "delete",
            f"deleting {resource.kind} {resource.name}",
        )
        existed = resource.delete(ctx)
        step: ResourceStep = "delete" if existed else "same"
        message = (
            f"deleted {resource.kind} {resource.name}"
            if existed
            else f"{resource.kind} {resource.name} was already absent"
        )
        yield _event(Phase.FINISHED, resource, step, message)

    _run_each(ctx, list(reversed(_resources(ctx))), destroy_one, on_event, should_stop, "destroy")
    logger.info("emulator.destroy.done", environment=config.stack_name)
