"""`FilePipeline`: one pipeline environment as a Pulumi component, built from `stacks.spec`.
Every resource of architecture.md §2 is a child of the component and takes its AWS provider from it.

The status API is not public: both methods use `AWS_IAM` authorization, so a caller needs
SigV4-signed requests and `execute-api:Invoke` on this API. Its stage writes JSON access logs,
which API Gateway can only do once the account's CloudWatch Logs role is set
(`apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<arn>`),
once per account and region. That setting is an account-wide singleton shared by every API of
the account, so this component does not manage it: an operator sets it before the first stack.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from handlers.core.routes import STATUS_ROUTES, resource_paths
from stacks import spec
from stacks.config import PipelineConfig
from stacks.pipeline_alarms import alarm_topic
from stacks.policies import PolicyDocument

TYPE_TOKEN: Final = "marketdata:pipeline:FilePipeline"

# The repository's Lambda code: the `handlers` package next to the `stacks` package.
HANDLERS_DIR: Final = spec.HANDLERS_DIR


@dataclass(frozen=True)
class FilePipelineArgs:
    """What one environment is made of: its configuration and the code its functions run."""

    config: PipelineConfig
    handlers_dir: Path = HANDLERS_DIR
    retry: spec.RetryPolicy = field(default_factory=spec.RetryPolicy)


def handlers_archive(handlers_dir: Path = HANDLERS_DIR) -> pulumi.AssetArchive:
    """The functions' code: `spec.handler_sources`, so the same tree never redeploys them."""
    return pulumi.AssetArchive(
        {name: pulumi.FileAsset(path) for name, path in spec.handler_sources(handlers_dir)}
    )


def _json(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


class FilePipeline(pulumi.ComponentResource):
    """One isolated market-data pipeline environment (docs/architecture.md §2)."""

    bucket_name: pulumi.Output[str]
    queue_urls: dict[spec.QueueKey, pulumi.Output[str]]
    status_table_name: pulumi.Output[str]
    state_machine_arn: pulumi.Output[str]
    function_names: dict[spec.FunctionName, pulumi.Output[str]]
    api_endpoint: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: FilePipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._name = name
        self._args = args
        config = args.config
        self._config = config
        self._tags = config.resource_tags()

        invoke_opts = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke_opts)
        partition = aws.get_partition_output(opts=invoke_opts).partition
        pandas_layer: pulumi.Output[str] = (
            pulumi.Output.from_input(config.pandas_layer_arn)
            if config.pandas_layer_arn
            else aws.ssm.get_parameter_output(
                name=spec.pandas_layer_parameter(config), opts=invoke_opts
            ).value
        )
        account_id = identity.account_id
        # Lifted attribute and item access (`physical.functions[fn]`) gives Output[str] names.
        physical = account_id.apply(lambda account: spec.names(config, account))
        # Every ARN is derived from names (`spec.pipeline_arns`, as the local engine does): the
        # state machine invokes the stage functions, the ingest function starts the state
        # machine, and every function depends on its own policy, so taking them from the
        # resources would be a cycle. The tests check them against the resources' ARNs.
        arns = pulumi.Output.all(account_id, partition).apply(
            lambda values: spec.pipeline_arns(config, values[0], values[1])
        )

        # --- storage ---------------------------------------------------------------------
        bucket = self._bucket(physical.bucket)

        # --- queues (dead-letter queues first: the ingest queue redrives to its DLQ) -------
        queues: dict[spec.QueueKey, aws.sqs.Queue] = {}
        for key, settings in spec.queue_settings().items():
            queues[key] = self._queue(key, physical.queues[key], settings, queues)

        # --- status table ----------------------------------------------------------------
        table = self._status_table(physical.status_table)

        # --- S3 → EventBridge → ingest queue ---------------------------------------------
        rule = spec.INGEST_RULE
        ingest_rule = aws.cloudwatch.EventRule(
            f"{name}-incoming",
            name=physical.ingest_rule,
            description=rule.description,
            state=spec.rule_state(rule),
            event_pattern=bucket.bucket.apply(
                lambda bucket_name: _json(spec.ingest_rule_event_pattern(bucket_name))
            ),
            tags=self._tags,
            opts=self._child(),
        )

        # --- log groups ------------------------------------------------------------------
        function_log_groups = {
            fn: self._log_group(f"{name}-{fn}-logs", physical.function_log_groups[fn])
            for fn in spec.FUNCTIONS
        }
        state_machine_log_group = self._log_group(
            f"{name}-pipeline-logs", physical.state_machine_log_group
        )
        api_log_group = self._log_group(f"{name}-api-access-logs", physical.api_access_log_group)

        # --- policies --------------------------------------------------------------------
        aws.sqs.QueuePolicy(
            f"{name}-ingest-policy",
            queue_url=queues["ingest"].url,
            policy=arns.apply(lambda a: _json(spec.ingest_queue_policy(a))),
            opts=self._child(),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-incoming-to-ingest",
            rule=ingest_rule.name,
            target_id=rule.target_id,
            arn=queues["ingest"].arn,
            sqs_target={"message_group_id": rule.message_group},
            opts=self._child(),
        )

        # --- functions -------------------------------------------------------------------
        specs = spec.function_specs(config)
        archive = handlers_archive(args.handlers_dir)
        roles: dict[spec.FunctionName, aws.iam.Role] = {}
        role_policies: dict[spec.FunctionName, aws.iam.RolePolicy] = {}
        for fn in spec.FUNCTIONS:
            roles[fn], role_policies[fn] = self._role(
                f"{name}-{fn}",
                physical.function_roles[fn],
                spec.lambda_assume_role_policy(),
                arns.apply(functools.partial(spec.function_policy, fn)),
            )

        functions: dict[spec.FunctionName, aws.lambda_.Function] = {}

        def function(fn: spec.FunctionName, state_machine_arn: pulumi.Input[str]) -> None:
            fn_spec = specs[fn]
            environment = pulumi.Output.all(physical, state_machine_arn).apply(
                lambda values: spec.function_environment(fn, config, values[0], values[1])
            )
            functions[fn] = aws.lambda_.Function(
                f"{name}-{fn}",
                name=physical.functions[fn],
                description=fn_spec.description,
                role=roles[fn].arn,
                runtime=spec.LAMBDA_RUNTIME,
                architectures=[spec.LAMBDA_ARCHITECTURE],
                handler=fn_spec.handler,
                code=archive,
                memory_size=fn_spec.memory_mb,
                timeout=fn_spec.timeout_s,
                layers=pandas_layer.apply(lambda arn: spec.function_layers(fn, config, arn)),
                environment={"variables": environment},
                logging_config={
                    "log_format": spec.FUNCTION_LOG_FORMAT,
                    "log_group": function_log_groups[fn].name,
                },
                tags=self._tags,
                # The log group exists first (so Lambda never creates one without retention)
                # and the policy is attached before the first invocation.
                opts=self._child(depends_on=[function_log_groups[fn], role_policies[fn]]),
            )

        # Only the ingest function reads STATE_MACHINE_ARN (spec.function_environment); the
        # stage functions must exist before the state machine, so they get the derived ARN.
        for stage in spec.STAGE_FUNCTIONS:
            function(stage, arns.state_machine)

        state_machine = self._state_machine(
            physical.state_machine_role,
            physical.state_machine,
            arns,
            account_id,
            table,
            {stage: functions[stage] for stage in spec.STAGE_FUNCTIONS},
            {stage: queues[key] for stage, key in spec.STAGE_DLQS.items()},
            state_machine_log_group,
        )
        function("ingest", state_machine.arn)
        function("status", arns.state_machine)

        source = spec.INGEST_SOURCE
        aws.lambda_.EventSourceMapping(
            f"{name}-ingest-source",
            event_source_arn=queues["ingest"].arn,
            function_name=functions["ingest"].arn,
            batch_size=source.batch_size,
            function_response_types=spec.event_source_response_types(source),
            enabled=source.enabled,
            tags=self._tags,
            # Lambda checks the role's SQS permissions when the mapping is created.
            opts=self._child(depends_on=[role_policies["ingest"]]),
        )

        # --- status API ------------------------------------------------------------------
        api_stage = self._status_api(physical.api, functions["status"], api_log_group)

        # --- alarms (stacks.pipeline_alarms) and outputs ------------------------------------
        self.alarm_topic_arn = alarm_topic(
            name, config, physical, arns, account_id, partition, self._tags, self._child
        ).arn
        self.bucket_name = bucket.bucket
        self.queue_urls = {key: queue.url for key, queue in queues.items()}
        self.status_table_name = table.name
        self.state_machine_arn = state_machine.arn
        self.function_names = {fn: resource.name for fn, resource in functions.items()}
        self.api_endpoint = api_stage.invoke_url
        self.register_outputs(dict(self.stack_outputs))

    @property
    def stack_outputs(self) -> Mapping[str, pulumi.Output[str]]:
        """The contract's stack outputs (docs/architecture.md §2), from `spec.stack_outputs`."""
        return spec.stack_outputs(
            bucket_name=self.bucket_name,
            queue_urls=self.queue_urls,
            table_name=self.status_table_name,
            state_machine_arn=self.state_machine_arn,
            function_names=self.function_names,
            api_endpoint=self.api_endpoint,
            alarm_topic_arn=self.alarm_topic_arn,
        )

    # --- helpers -----------------------------------------------------------------------------

    def _child(self, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=depends_on)

    def _queue(
        self,
        key: spec.QueueKey,
        name: pulumi.Input[str],
        settings: spec.QueueSettings,
        created: Mapping[spec.QueueKey, aws.sqs.Queue],
    ) -> aws.sqs.Queue:
        redrive: pulumi.Input[str] | None = None
        if settings.dead_letter_queue is not None:
            redrive = created[settings.dead_letter_queue].arn.apply(
                lambda arn: _json(spec.redrive_policy(arn))
            )
        return aws.sqs.Queue(
            f"{self._name}-{key}",
            name=name,
            fifo_queue=settings.fifo,
            content_based_deduplication=settings.content_based_deduplication,
            deduplication_scope=settings.deduplication_scope,
            fifo_throughput_limit=settings.throughput_limit,
            visibility_timeout_seconds=settings.visibility_timeout_s,
            message_retention_seconds=settings.retention_s,
            max_message_size=settings.max_message_bytes,
            delay_seconds=settings.delivery_delay_s,
            receive_wait_time_seconds=settings.receive_wait_s,
            sqs_managed_sse_enabled=settings.managed_encryption,
            redrive_policy=redrive,
            tags=self._tags,
            opts=self._child(),
        )

    def _log_group(self, resource_name: str, name: pulumi.Input[str]) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            resource_name,
            name=name,
            retention_in_days=self._config.log_retention_days,
            tags=self._tags,
            opts=self._child(),
        )

    def _role(
        self,
        resource_name: str,
        name: pulumi.Input[str],
        trust: pulumi.Input[PolicyDocument],
        policy: pulumi.Output[PolicyDocument],
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """A role with exactly one inline policy; never a managed policy (they grant more)."""
        role = aws.iam.Role(
            f"{resource_name}-role",
            name=name,
            assume_role_policy=pulumi.Output.from_input(trust).apply(_json),
            tags=self._tags,
            opts=self._child(),
        )
        role_policy = aws.iam.RolePolicy(
            f"{resource_name}-policy",
            role=role.id,
            name=pulumi.Output.from_input(name).apply(spec.role_policy_name),
            policy=policy.apply(_json),
            opts=self._child(),
        )
        return role, role_policy

    def _bucket(self, name: pulumi.Input[str]) -> aws.s3.Bucket:
        n = self._name
        settings = spec.BUCKET
        bucket = aws.s3.Bucket(
            f"{n}-bucket",
            bucket=name,
            force_destroy=settings.empty_on_destroy,
            tags=self._tags,
            opts=self._child(),
        )
        # S3 rejects concurrent configuration changes of one bucket (OperationAborted), so the
        # sub-resources are applied one after the other.
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{n}-bucket-public-access",
            bucket=bucket.id,
            block_public_acls=settings.block_public_acls,
            block_public_policy=settings.block_public_policy,
            ignore_public_acls=settings.ignore_public_acls,
            restrict_public_buckets=settings.restrict_public_buckets,
            opts=self._child(),
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{n}-bucket-encryption",
            bucket=bucket.id,
            rules=[
                {"apply_server_side_encryption_by_default": {"sse_algorithm": settings.encryption}}
            ],
            opts=self._child(depends_on=[public_access]),
        )
        versioning = aws.s3.BucketVersioning(
            f"{n}-bucket-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": spec.versioning_status(settings)},
            opts=self._child(depends_on=[encryption]),
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{n}-bucket-lifecycle",
            bucket=bucket.id,
            rules=[_lifecycle_rule(rule) for rule in spec.lifecycle_rules(self._config)],
            # Versioning must be on before rules about noncurrent versions apply.
            opts=self._child(depends_on=[versioning]),
        )
        policy = aws.s3.BucketPolicy(
            f"{n}-bucket-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: _json(spec.bucket_policy(arn))),
            opts=self._child(depends_on=[lifecycle]),
        )
        aws.s3.BucketNotification(
            f"{n}-bucket-notification",
            bucket=bucket.id,
            eventbridge=settings.eventbridge_notifications,
            opts=self._child(depends_on=[policy]),
        )
        return bucket

    def _status_table(self, name: pulumi.Input[str]) -> aws.dynamodb.Table:
        table = spec.STATUS_TABLE
        return aws.dynamodb.Table(
            f"{self._name}-status",
            name=name,
            billing_mode=spec.billing_mode(table),
            hash_key=table.partition_key,
            attributes=[
                {"name": attribute, "type": spec.KEY_TYPE_CODES[kind]}
                for attribute, kind in table.key_types.items()
            ],
            global_secondary_indexes=[
                {
                    "name": index.name,
                    "key_schemas": [
                        {"attribute_name": attribute, "key_type": key_type}
                        for attribute, key_type in spec.index_keys(index)
                    ],
                    "projection_type": index.projection,
                }
                for index in table.indexes
            ],
            server_side_encryption={"enabled": table.encrypted},
            ttl={"attribute_name": table.ttl_attribute, "enabled": table.ttl_enabled},
            point_in_time_recovery={"enabled": table.point_in_time_recovery},
            deletion_protection_enabled=table.deletion_protection,
            tags=self._tags,
            opts=self._child(),
        )

    def _state_machine(
        self,
        role_name: pulumi.Output[str],
        name: pulumi.Output[str],
        arns: pulumi.Output[spec.PipelineArns],
        account_id: pulumi.Output[str],
        table: aws.dynamodb.Table,
        functions: Mapping[spec.StageName, aws.lambda_.Function],
        stage_dlqs: Mapping[spec.StageName, aws.sqs.Queue],
        log_group: aws.cloudwatch.LogGroup,
    ) -> aws.sfn.StateMachine:
        config = self._config
        retry = self._args.retry
        settings = spec.STATE_MACHINE
        trust = pulumi.Output.all(account_id, arns.state_machine).apply(
            lambda values: spec.state_machine_assume_role_policy(values[0], values[1])
        )
        role, role_policy = self._role(
            f"{self._name}-pipeline",
            role_name,
            trust,
            arns.apply(spec.state_machine_policy),
        )
        definition = pulumi.Output.all(
            table=table.name,
            functions=pulumi.Output.all(*(functions[s].arn for s in spec.STAGE_FUNCTIONS)),
            dlq_urls=pulumi.Output.all(*(stage_dlqs[s].url for s in spec.STAGE_FUNCTIONS)),
        ).apply(
            lambda values: json.dumps(
                spec.state_machine_definition(
                    spec.StateMachineTargets(
                        status_table=values["table"],
                        functions=dict(zip(spec.STAGE_FUNCTIONS, values["functions"], strict=True)),
                        stage_dlq_urls=dict(
                            zip(spec.STAGE_FUNCTIONS, values["dlq_urls"], strict=True)
                        ),
                    ),
                    retry,
                    spec.execution_timeout_s(config, retry),
                )
            )
        )
        return aws.sfn.StateMachine(
            f"{self._name}-pipeline",
            name=name,
            type=settings.type,
            role_arn=role.arn,
            definition=definition,
            logging_configuration={
                "level": settings.log_level,
                "include_execution_data": settings.log_execution_data,
                "log_destination": log_group.arn.apply(spec.log_destination),
            },
            tags=self._tags,
            # Step Functions checks at creation that the role may deliver the logs.
            opts=self._child(depends_on=[role_policy]),
        )

    def _status_api(
        self,
        name: pulumi.Output[str],
        status_function: aws.lambda_.Function,
        access_log_group: aws.cloudwatch.LogGroup,
    ) -> aws.apigateway.Stage:
        n = self._name
        config = self._config
        settings = spec.API
        api = aws.apigateway.RestApi(
            f"{n}-api",
            name=name,
            description=settings.description,
            endpoint_configuration={"types": settings.endpoint_type},
            tags=self._tags,
            opts=self._child(),
        )
        # One API Gateway resource per path segment of the routes, parents first.
        resources: dict[str, aws.apigateway.Resource] = {}
        for path in resource_paths():
            parent, _, part = path.rpartition("/")
            resources[path] = aws.apigateway.Resource(
                f"{n}-api-{spec.API_RESOURCE_KEYS[path]}",
                rest_api=api.id,
                parent_id=resources[parent].id if parent else api.root_resource_id,
                path_part=part,
                opts=self._child(),
            )
        methods: list[aws.apigateway.Method] = []
        integrations: list[aws.apigateway.Integration] = []
        for route in STATUS_ROUTES:
            resource = resources[route.resource]
            method = aws.apigateway.Method(
                f"{n}-api-{route.key}-{route.method.lower()}",
                rest_api=api.id,
                resource_id=resource.id,
                http_method=route.method,
                authorization=settings.authorization,
                request_parameters=spec.api_request_parameters(route),
                opts=self._child(),
            )
            integrations.append(
                aws.apigateway.Integration(
                    f"{n}-api-{route.key}-integration",
                    rest_api=api.id,
                    resource_id=resource.id,
                    http_method=method.http_method,
                    type=settings.integration,
                    integration_http_method=settings.integration_method,
                    uri=status_function.invoke_arn,
                    opts=self._child(),
                )
            )
            methods.append(method)

        aws.lambda_.Permission(
            f"{n}-api-invoke-status",
            action="lambda:InvokeFunction",
            function=status_function.name,
            principal=settings.invoke_principal,
            source_arn=api.execution_arn.apply(spec.api_invoke_source_arn),
            opts=self._child(),
        )

        # A deployment is a snapshot: redeploy whenever a method or integration changes.
        redeployment = pulumi.Output.all(
            *(
                pulumi.Output.all(
                    method.id,
                    method.authorization,
                    integration.id,
                    integration.uri,
                    integration.type,
                )
                for method, integration in zip(methods, integrations, strict=True)
            )
        ).apply(lambda values: hashlib.sha256(_json(values).encode()).hexdigest())
        deployment = aws.apigateway.Deployment(
            f"{n}-api-deployment",
            rest_api=api.id,
            description=settings.deployment_description,
            triggers={"redeployment": redeployment},
            opts=self._child(depends_on=[*methods, *integrations]),
        )
        stage = aws.apigateway.Stage(
            f"{n}-api-stage",
            rest_api=api.id,
            deployment=deployment.id,
            stage_name=spec.API_STAGE,
            access_log_settings={
                "destination_arn": access_log_group.arn,
                "format": settings.access_log_format,
            },
            tags=self._tags,
            opts=self._child(),
        )
        aws.apigateway.MethodSettings(
            f"{n}-api-throttling",
            rest_api=api.id,
            stage_name=stage.stage_name,
            method_path=settings.throttled_methods,
            settings={
                "throttling_rate_limit": config.api_rate_limit,
                "throttling_burst_limit": config.api_burst_limit,
                "metrics_enabled": settings.metrics_enabled,
                "logging_level": settings.execution_log_level,
            },
            opts=self._child(),
        )
        return stage


def _lifecycle_rule(rule: spec.LifecycleRule) -> Any:
    """One model lifecycle rule as pulumi-aws's BucketLifecycleConfiguration rule."""
    rendered: dict[str, Any] = {
        "id": rule.id,
        "status": spec.lifecycle_status(rule),
        "filter": {"prefix": rule.prefix},
    }
    storage = spec.ARCHIVE_STORAGE_CLASS
    if rule.archive_after_days is not None:
        rendered["transitions"] = [{"days": rule.archive_after_days, "storage_class": storage}]
    if rule.archive_noncurrent_after_days is not None:
        rendered["noncurrent_version_transitions"] = [
            {"noncurrent_days": rule.archive_noncurrent_after_days, "storage_class": storage}
        ]
    if rule.expire_after_days is not None:
        rendered["expiration"] = {"days": rule.expire_after_days}
    if rule.expire_noncurrent_after_days is not None:
        rendered["noncurrent_version_expiration"] = {
            "noncurrent_days": rule.expire_noncurrent_after_days
        }
    if rule.abort_multipart_after_days is not None:
        rendered["abort_incomplete_multipart_upload"] = {
            "days_after_initiation": rule.abort_multipart_after_days
        }
    return rendered
