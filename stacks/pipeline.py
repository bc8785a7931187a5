"""`FilePipeline`: one pipeline environment as a Pulumi component, built from `stacks.spec`.

Every resource of DESIGN §2 is a child of the component and takes its AWS provider from it.

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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from stacks import spec
from stacks.config import PipelineConfig
from stacks.policies import PolicyDocument

TYPE_TOKEN: Final = "marketdata:pipeline:FilePipeline"

# The repository's Lambda code: the `handlers` package next to the `stacks` package.
HANDLERS_DIR: Final = spec.HANDLERS_DIR
# The handler strings of `spec.function_specs` start with the package name.

# What the component registers, by type: `stacks.program.expected_resource_count` adds these up
# and the tests compare them with what a mocked `pulumi up` registers.
CHILD_RESOURCE_COUNTS: Final[Mapping[str, int]] = {
    "aws:s3/bucket:Bucket": 1,
    "aws:s3/bucketVersioning:BucketVersioning": 1,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
    "aws:s3/bucketPolicy:BucketPolicy": 1,
    "aws:s3/bucketNotification:BucketNotification": 1,
    "aws:cloudwatch/eventRule:EventRule": 1,
    "aws:cloudwatch/eventTarget:EventTarget": 1,
    # ingest, its DLQ, one DLQ per stage
    "aws:sqs/queue:Queue": 2 + len(spec.STAGE_FUNCTIONS),
    "aws:sqs/queuePolicy:QueuePolicy": 1,
    "aws:dynamodb/table:Table": 1,
    "aws:lambda/function:Function": len(spec.FUNCTIONS),
    # one per function and one for the state machine
    "aws:iam/role:Role": len(spec.FUNCTIONS) + 1,
    "aws:iam/rolePolicy:RolePolicy": len(spec.FUNCTIONS) + 1,
    # one per function, the state machine's, the API's access log
    "aws:cloudwatch/logGroup:LogGroup": len(spec.FUNCTIONS) + 2,
    "aws:lambda/eventSourceMapping:EventSourceMapping": 1,
    "aws:sfn/stateMachine:StateMachine": 1,
    "aws:apigateway/restApi:RestApi": 1,
    # /status, /status/{fileId}, /files
    "aws:apigateway/resource:Resource": 3,
    "aws:apigateway/method:Method": 2,
    "aws:apigateway/integration:Integration": 2,
    "aws:lambda/permission:Permission": 1,
    "aws:apigateway/deployment:Deployment": 1,
    "aws:apigateway/stage:Stage": 1,
    "aws:apigateway/methodSettings:MethodSettings": 1,
}

API_ACCESS_LOG_FORMAT: Final = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTime",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "userArn": "$context.identity.userArn",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "path": "$context.path",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "errorMessage": "$context.error.message",
    },
    separators=(",", ":"),
)

# spec's queue attributes (boto3 spelling) → pulumi-aws arguments. An attribute missing here
# fails loudly instead of being dropped.
_QUEUE_ATTRIBUTE_ARGS: Final[Mapping[str, tuple[str, Callable[[str], bool | int]]]] = {
    "FifoQueue": ("fifo_queue", lambda value: value == "true"),
    "ContentBasedDeduplication": ("content_based_deduplication", lambda value: value == "true"),
    "VisibilityTimeout": ("visibility_timeout_seconds", int),
    "MessageRetentionPeriod": ("message_retention_seconds", int),
}


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


def _queue_args(attributes: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(attributes) - set(_QUEUE_ATTRIBUTE_ARGS))
    if unknown:
        raise ValueError(f"no pulumi-aws argument for SQS attributes {unknown}")
    args: dict[str, Any] = {}
    for attribute, value in attributes.items():
        argument, convert = _QUEUE_ATTRIBUTE_ARGS[attribute]
        args[argument] = convert(value)
    return args


def _snake_case_keys(value: Any) -> Any:
    """boto3's spelling of a nested structure (`StorageClass`, `ID`) → pulumi-aws's."""
    if isinstance(value, list):
        return [_snake_case_keys(item) for item in value]
    if isinstance(value, dict):
        return {
            re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower(): _snake_case_keys(item)
            for key, item in value.items()
        }
    return value


def _json(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


def _arn_prefix(partition: str, service: str, region: str, account_id: str) -> str:
    return f"arn:{partition}:{service}:{region}:{account_id}"


class FilePipeline(pulumi.ComponentResource):
    """One isolated market-data pipeline environment (DESIGN §2)."""

    bucket_name: pulumi.Output[str]
    ingest_queue_url: pulumi.Output[str]
    ingest_dlq_url: pulumi.Output[str]
    stage_dlq_urls: dict[spec.StageName, pulumi.Output[str]]
    status_table_name: pulumi.Output[str]
    state_machine_arn: pulumi.Output[str]
    function_names: dict[spec.FunctionName, pulumi.Output[str]]
    api_endpoint: pulumi.Output[str]

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
        account_id = identity.account_id
        # Lifted attribute and item access (`physical.functions[fn]`) gives Output[str] names.
        physical = account_id.apply(lambda account: spec.names(config, account))

        # --- storage ---------------------------------------------------------------------
        bucket = self._bucket(physical.bucket)

        # --- queues ----------------------------------------------------------------------
        ingest_dlq = aws.sqs.Queue(
            f"{name}-ingest-dlq",
            name=physical.ingest_dlq,
            **_queue_args(spec.dlq_attributes()),
            sqs_managed_sse_enabled=True,
            tags=self._tags,
            opts=self._child(),
        )
        ingest_queue = aws.sqs.Queue(
            f"{name}-ingest",
            name=physical.ingest_queue,
            **_queue_args(spec.ingest_queue_attributes()),
            sqs_managed_sse_enabled=True,
            redrive_policy=ingest_dlq.arn.apply(lambda arn: _json(spec.redrive_policy(arn))),
            tags=self._tags,
            opts=self._child(),
        )
        stage_dlqs = {
            stage: aws.sqs.Queue(
                f"{name}-{stage}-dlq",
                name=physical.stage_dlqs[stage],
                **_queue_args(spec.dlq_attributes()),
                sqs_managed_sse_enabled=True,
                tags=self._tags,
                opts=self._child(),
            )
            for stage in spec.STAGE_FUNCTIONS
        }

        # --- status table ----------------------------------------------------------------
        table = self._status_table(physical.status_table)

        # --- S3 → EventBridge → ingest queue ---------------------------------------------
        ingest_rule = aws.cloudwatch.EventRule(
            f"{name}-incoming",
            name=physical.ingest_rule,
            description="Objects created under incoming/ in this environment's bucket",
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
        # Function and state machine ARNs are derived from their names: the state machine
        # invokes the stage functions, the ingest function starts the state machine, and every
        # function depends on its own policy, so taking them from the resources would be a
        # cycle. The format is fixed by AWS; the tests check it against the resources' ARNs.
        arns = pulumi.Output.all(
            partition=partition,
            account=account_id,
            names=physical,
            bucket=bucket.arn,
            ingest_queue=ingest_queue.arn,
            ingest_dlq=ingest_dlq.arn,
            stage_dlqs=pulumi.Output.all(
                *(stage_dlqs[stage].arn for stage in spec.STAGE_FUNCTIONS)
            ),
            table=table.arn,
            rule=ingest_rule.arn,
            log_groups=pulumi.Output.all(*(function_log_groups[fn].arn for fn in spec.FUNCTIONS)),
        ).apply(lambda values: self._pipeline_arns(values))

        aws.sqs.QueuePolicy(
            f"{name}-ingest-policy",
            queue_url=ingest_queue.url,
            policy=arns.apply(lambda a: _json(spec.ingest_queue_policy(a))),
            opts=self._child(),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-incoming-to-ingest",
            rule=ingest_rule.name,
            target_id="ingest-queue",
            arn=ingest_queue.arn,
            sqs_target={"message_group_id": spec.INGEST_MESSAGE_GROUP},
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
                layers=spec.function_layers(fn, config),
                environment={"variables": environment},
                logging_config={
                    "log_format": "Text",
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
            stage_dlqs,
            state_machine_log_group,
        )
        function("ingest", state_machine.arn)
        function("status", arns.state_machine)

        aws.lambda_.EventSourceMapping(
            f"{name}-ingest-source",
            event_source_arn=ingest_queue.arn,
            function_name=functions["ingest"].arn,
            batch_size=spec.INGEST_BATCH_SIZE,
            function_response_types=["ReportBatchItemFailures"],
            enabled=True,
            tags=self._tags,
            # Lambda checks the role's SQS permissions when the mapping is created.
            opts=self._child(depends_on=[role_policies["ingest"]]),
        )

        # --- status API ------------------------------------------------------------------
        api_stage = self._status_api(physical.api, functions["status"], api_log_group)

        # --- outputs ---------------------------------------------------------------------
        self.bucket_name = bucket.bucket
        self.ingest_queue_url = ingest_queue.url
        self.ingest_dlq_url = ingest_dlq.url
        self.stage_dlq_urls = {stage: queue.url for stage, queue in stage_dlqs.items()}
        self.status_table_name = table.name
        self.state_machine_arn = state_machine.arn
        self.function_names = {fn: resource.name for fn, resource in functions.items()}
        self.api_endpoint = api_stage.invoke_url
        self.register_outputs(dict(self.stack_outputs))

    @property
    def stack_outputs(self) -> Mapping[str, pulumi.Output[str]]:
        """The stack outputs of DESIGN §2, under their contract names (`spec.STACK_OUTPUTS`)."""
        outputs = {
            "bucketName": self.bucket_name,
            "ingestQueueUrl": self.ingest_queue_url,
            "ingestDlqUrl": self.ingest_dlq_url,
            "validatorDlqUrl": self.stage_dlq_urls["validator"],
            "processorDlqUrl": self.stage_dlq_urls["processor"],
            "aggregatorDlqUrl": self.stage_dlq_urls["aggregator"],
            "statusTableName": self.status_table_name,
            "stateMachineArn": self.state_machine_arn,
            "validatorFunctionName": self.function_names["validator"],
            "processorFunctionName": self.function_names["processor"],
            "aggregatorFunctionName": self.function_names["aggregator"],
            "ingestFunctionName": self.function_names["ingest"],
            "statusFunctionName": self.function_names["status"],
            "apiEndpoint": self.api_endpoint,
        }
        return {key: outputs[key] for key in spec.STACK_OUTPUTS}

    # --- helpers -----------------------------------------------------------------------------

    def _child(self, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=depends_on)

    def _pipeline_arns(self, values: dict[str, Any]) -> spec.PipelineArns:
        names: spec.PipelineNames = values["names"]
        prefix = _arn_prefix(values["partition"], "lambda", self._config.region, values["account"])
        states = _arn_prefix(values["partition"], "states", self._config.region, values["account"])
        return spec.PipelineArns(
            bucket=values["bucket"],
            ingest_queue=values["ingest_queue"],
            ingest_dlq=values["ingest_dlq"],
            stage_dlqs=dict(zip(spec.STAGE_FUNCTIONS, values["stage_dlqs"], strict=True)),
            status_table=values["table"],
            state_machine=f"{states}:stateMachine:{names.state_machine}",
            functions={fn: f"{prefix}:function:{names.functions[fn]}" for fn in spec.FUNCTIONS},
            function_log_groups=dict(zip(spec.FUNCTIONS, values["log_groups"], strict=True)),
            ingest_rule=values["rule"],
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
            name=pulumi.Output.from_input(name).apply(lambda role_name: f"{role_name}-policy"),
            policy=policy.apply(_json),
            opts=self._child(),
        )
        return role, role_policy

    def _bucket(self, name: pulumi.Input[str]) -> aws.s3.Bucket:
        n = self._name
        bucket = aws.s3.Bucket(
            f"{n}-bucket",
            bucket=name,
            # Destroying an environment empties the versioned bucket (DESIGN §2).
            force_destroy=True,
            tags=self._tags,
            opts=self._child(),
        )
        # S3 rejects concurrent configuration changes of one bucket (OperationAborted), so the
        # sub-resources are applied one after the other.
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{n}-bucket-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._child(),
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{n}-bucket-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=self._child(depends_on=[public_access]),
        )
        versioning = aws.s3.BucketVersioning(
            f"{n}-bucket-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=self._child(depends_on=[encryption]),
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{n}-bucket-lifecycle",
            bucket=bucket.id,
            rules=_snake_case_keys(spec.bucket_lifecycle_rules(self._config)),
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
            eventbridge=True,
            opts=self._child(depends_on=[policy]),
        )
        return bucket

    def _status_table(self, name: pulumi.Input[str]) -> aws.dynamodb.Table:
        schema = spec.status_table_schema()
        keys = {key["KeyType"]: key["AttributeName"] for key in schema["KeySchema"]}
        return aws.dynamodb.Table(
            f"{self._name}-status",
            name=name,
            billing_mode=schema["BillingMode"],
            hash_key=keys["HASH"],
            range_key=keys.get("RANGE"),
            attributes=[
                {"name": attribute["AttributeName"], "type": attribute["AttributeType"]}
                for attribute in schema["AttributeDefinitions"]
            ],
            global_secondary_indexes=[
                {
                    "name": index["IndexName"],
                    "key_schemas": [
                        {"attribute_name": key["AttributeName"], "key_type": key["KeyType"]}
                        for key in index["KeySchema"]
                    ],
                    "projection_type": index["Projection"]["ProjectionType"],
                }
                for index in schema["GlobalSecondaryIndexes"]
            ],
            server_side_encryption={"enabled": schema["SSESpecification"]["Enabled"]},
            ttl={"attribute_name": spec.TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": spec.STATUS_TABLE_PITR},
            # Environments are disposable by design (DESIGN §2: fully destroyable).
            deletion_protection_enabled=False,
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
            type="STANDARD",
            role_arn=role.arn,
            definition=definition,
            logging_configuration={
                "level": "ERROR",
                "include_execution_data": True,
                "log_destination": log_group.arn.apply(lambda arn: f"{arn}:*"),
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
        api = aws.apigateway.RestApi(
            f"{n}-api",
            name=name,
            description="File status of one market-data pipeline environment (IAM-authorized)",
            endpoint_configuration={"types": "REGIONAL"},
            tags=self._tags,
            opts=self._child(),
        )
        status = aws.apigateway.Resource(
            f"{n}-api-status",
            rest_api=api.id,
            parent_id=api.root_resource_id,
            path_part="status",
            opts=self._child(),
        )
        status_by_id = aws.apigateway.Resource(
            f"{n}-api-status-file",
            rest_api=api.id,
            parent_id=status.id,
            path_part="{fileId}",
            opts=self._child(),
        )
        files = aws.apigateway.Resource(
            f"{n}-api-files",
            rest_api=api.id,
            parent_id=api.root_resource_id,
            path_part="files",
            opts=self._child(),
        )
        routes = {
            "status": (status_by_id, {"method.request.path.fileId": True}),
            "files": (files, {"method.request.querystring.key": True}),
        }
        methods: list[aws.apigateway.Method] = []
        integrations: list[aws.apigateway.Integration] = []
        for route, (resource, parameters) in routes.items():
            method = aws.apigateway.Method(
                f"{n}-api-{route}-get",
                rest_api=api.id,
                resource_id=resource.id,
                http_method="GET",
                # Not public: callers sign with SigV4 and need execute-api:Invoke.
                authorization="AWS_IAM",
                request_parameters=parameters,
                opts=self._child(),
            )
            integrations.append(
                aws.apigateway.Integration(
                    f"{n}-api-{route}-integration",
                    rest_api=api.id,
                    resource_id=resource.id,
                    http_method=method.http_method,
                    type="AWS_PROXY",
                    integration_http_method="POST",
                    uri=status_function.invoke_arn,
                    opts=self._child(),
                )
            )
            methods.append(method)

        aws.lambda_.Permission(
            f"{n}-api-invoke-status",
            action="lambda:InvokeFunction",
            function=status_function.name,
            principal="apigateway.amazonaws.com",
            # This API's GET methods only, in its own stage.
            source_arn=api.execution_arn.apply(lambda arn: f"{arn}/{spec.API_STAGE}/GET/*"),
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
            description="Status API",
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
                "format": API_ACCESS_LOG_FORMAT,
            },
            tags=self._tags,
            opts=self._child(),
        )
        aws.apigateway.MethodSettings(
            f"{n}-api-throttling",
            rest_api=api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings={
                "throttling_rate_limit": config.api_rate_limit,
                "throttling_burst_limit": config.api_burst_limit,
                "metrics_enabled": True,
                # Execution logs would go to a log group API Gateway creates itself, outside the
                # 7-day retention; the access log above is the API's log.
                "logging_level": "OFF",
            },
            opts=self._child(),
        )
        return stage
