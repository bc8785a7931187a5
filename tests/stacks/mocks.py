"""Pulumi mocks for the pipeline program: AWS-shaped outputs, and a record of every registration.

`deploy(config)` runs an inline program against them, as `pulumi up` would, and returns what was
registered (inputs resolved, parents, providers, dependencies, options) and the stack's exports.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks, rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _ensure_event_loop

from stacks.config import PipelineConfig

ACCOUNT_ID = "123456789012"
PARTITION = "aws"
PROJECT = "market-data-pipeline"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
SSM_PARAMETER_INVOKE = "aws:ssm/getParameter:getParameter"
PANDAS_LAYER_NAME = "AWSSDKPandas-Python313"
PARTITION_INVOKE = "aws:index/getPartition:getPartition"
AWS_PROVIDER_TYPE = "pulumi:providers:aws"
STACK_TYPE = "pulumi:pulumi:Stack"

Program = Callable[[], None]

# Resource type tokens the tests look resources up by.
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
TABLE = "aws:dynamodb/table:Table"
FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EVENT_SOURCE_MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
REST_API = "aws:apigateway/restApi:RestApi"
API_RESOURCE = "aws:apigateway/resource:Resource"
API_METHOD = "aws:apigateway/method:Method"
API_INTEGRATION = "aws:apigateway/integration:Integration"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
API_DEPLOYMENT = "aws:apigateway/deployment:Deployment"
API_STAGE = "aws:apigateway/stage:Stage"
API_METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
TOPIC_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def _short_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:10]


class AwsMocks(Mocks):
    """Answers like AWS would: ARNs, URLs and ids derived from names, account and region.

    The region is the one the program's AWS provider was registered with. An invoke the program
    was not expected to make fails the deployment, so a new data source cannot go unnoticed.
    """

    def __init__(self, account_id: str = ACCOUNT_ID, partition: str = PARTITION) -> None:
        self.account_id = account_id
        self.partition = partition
        self.region = "us-east-1"
        self.calls: list[MockCallArgs] = []
        self.created: dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        with self._lock:
            self.calls.append(args)
        if args.token == CALLER_IDENTITY:
            return {
                "accountId": self.account_id,
                "arn": f"arn:{self.partition}:iam::{self.account_id}:user/provisioner",
                "id": self.account_id,
                "userId": "AIDATESTPROVISIONER",
            }, []
        if args.token == PARTITION_INVOKE:
            return {
                "partition": self.partition,
                "dnsSuffix": "amazonaws.com",
                "id": self.partition,
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        if args.token == SSM_PARAMETER_INVOKE:
            # AWS's public parameters of the AWS SDK for pandas layer hold the region's ARN.
            name = str(args.args["name"])
            region = name.split("/")[5]
            return {
                "id": name,
                "name": name,
                "type": "String",
                "value": f"arn:aws:lambda:{region}:336392948345:layer:{PANDAS_LAYER_NAME}:42",
                "version": 1,
                "withDecryption": True,
                "arn": f"arn:{self.partition}:ssm:{region}::parameter{name}",
                "insecureValue": "",
            }, []
        raise NotImplementedError(f"the mocks do not answer the invoke {args.token}")

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs: dict[str, Any] = copy.deepcopy(dict(args.inputs))
        if args.typ == AWS_PROVIDER_TYPE and "region" in inputs:
            self.region = inputs["region"]
        resource_id, extra = self._outputs(args.typ, args.name, inputs)
        outputs = {**inputs, **extra}
        with self._lock:
            self.created[(args.typ, args.name)] = (resource_id, inputs, outputs)
        return resource_id, outputs

    def _outputs(
        self, typ: str, logical: str, inputs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        name = str(inputs.get("name", logical))
        region, account = self.region, self.account_id
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs["bucket"]
            return bucket, {"arn": f"arn:{self.partition}:s3:::{bucket}", "bucket": bucket}
        if typ == "aws:sqs/queue:Queue":
            url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
            return url, {"arn": self._arn("sqs", name), "url": url}
        if typ == "aws:dynamodb/table:Table":
            return name, {"arn": self._arn("dynamodb", f"table/{name}")}
        if typ == "aws:lambda/function:Function":
            arn = self._arn("lambda", f"function:{name}")
            invoke = (
                f"arn:{self.partition}:apigateway:{region}:lambda:path/2015-03-31/functions/"
                f"{arn}/invocations"
            )
            return name, {"arn": arn, "invokeArn": invoke, "qualifiedArn": f"{arn}:$LATEST"}
        if typ == "aws:iam/role:Role":
            return name, {"arn": f"arn:{self.partition}:iam::{account}:role/{name}"}
        if typ == "aws:iam/rolePolicy:RolePolicy":
            return f"{inputs['role']}:{name}", {}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            # pulumi-aws v7 reports a log group's ARN without the trailing ":*".
            return name, {"arn": self._arn("logs", f"log-group:{name}")}
        if typ == "aws:cloudwatch/eventRule:EventRule":
            return name, {"arn": self._arn("events", f"rule/{name}")}
        if typ == "aws:sfn/stateMachine:StateMachine":
            arn = self._arn("states", f"stateMachine:{name}")
            return arn, {"arn": arn}
        if typ == KMS_KEY:
            key_id = str(uuid.UUID(hashlib.sha256(logical.encode()).hexdigest()[:32]))
            return key_id, {"keyId": key_id, "arn": self._arn("kms", f"key/{key_id}")}
        if typ == KMS_ALIAS:
            return name, {"arn": self._arn("kms", name)}
        if typ == TOPIC:
            arn = self._arn("sns", name)
            return arn, {"arn": arn}
        if typ == TOPIC_SUBSCRIPTION:
            arn = f"{inputs['topic']}:{_short_id(typ, logical)}"
            return arn, {"arn": arn}
        if typ == METRIC_ALARM:
            return name, {"arn": self._arn("cloudwatch", f"alarm:{name}")}
        if typ == "aws:apigateway/restApi:RestApi":
            api_id = _short_id(typ, logical)
            return api_id, {
                "rootResourceId": _short_id("root", logical),
                "executionArn": self._arn("execute-api", api_id),
                "arn": f"arn:{self.partition}:apigateway:{region}::/restapis/{api_id}",
            }
        if typ == "aws:apigateway/stage:Stage":
            api_id, stage = inputs["restApi"], inputs["stageName"]
            return f"ags-{api_id}-{stage}", {
                "invokeUrl": f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                "executionArn": f"{self._arn('execute-api', api_id)}/{stage}",
            }
        return _short_id(typ, logical), {}


@dataclass(frozen=True)
class Registration:
    """What the engine was asked to register, as it would receive it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    dependencies: tuple[str, ...]
    protect: bool
    retain_on_delete: bool


class RecordingMonitor(MockMonitor):
    """The mock monitor, keeping each registration's parent, provider, dependencies, options."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.registered_outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        registration = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            provider=request.provider,
            dependencies=tuple(request.dependencies),
            protect=request.protect,
            retain_on_delete=request.retainOnDelete,
        )
        with self._lock:
            self.registrations.append(registration)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        _ensure_event_loop()  # deserializing may meet resource references
        outputs = rpc.deserialize_properties(request.outputs)
        with self._lock:
            self.registered_outputs[request.urn] = dict(outputs)
        return super().RegisterResourceOutputs(request)


@dataclass(frozen=True)
class RegisteredResource:
    registration: Registration
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def type(self) -> str:
        return self.registration.type

    @property
    def name(self) -> str:
        return self.registration.name

    @property
    def urn(self) -> str:
        return self.registration.urn


@dataclass
class Deployment:
    """Everything one mocked `pulumi up` registered, invoked, logged and exported."""

    stack: Registration
    resources: list[RegisteredResource]
    exports: dict[str, Any]
    calls: list[MockCallArgs]
    registered_outputs: dict[str, dict[str, Any]]
    engine_messages: list[logging.LogRecord] = field(default_factory=list)

    def of_type(self, typ: str) -> list[RegisteredResource]:
        return [resource for resource in self.resources if resource.type == typ]

    def one(self, typ: str, name: str | None = None) -> RegisteredResource:
        """The only resource of `typ` (whose logical name ends with `name`, if given)."""
        found = [r for r in self.of_type(typ) if name is None or r.name.endswith(name)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of {typ} named *{name}: {found}")
        return found[0]

    def named(self, typ: str, physical_name: str) -> RegisteredResource:
        """The only resource of `typ` whose `name` input is `physical_name`."""
        found = [r for r in self.of_type(typ) if r.inputs.get("name") == physical_name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of {typ} with name {physical_name}")
        return found[0]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def deploy(
    config: PipelineConfig,
    program: Program | None = None,
    mocks: AwsMocks | None = None,
) -> Deployment:
    """Run `program` (default: `stacks.program.pipeline_program(config)`) under the mocks.

    Each run gets a fresh context, hence its own Pulumi settings and root stack resource, so
    runs do not see each other's resources or exports.
    """
    if program is None:
        from stacks.program import pipeline_program

        program = pipeline_program(config)
    return contextvars.Context().run(_deploy, config, program, mocks or AwsMocks())


def _deploy(config: PipelineConfig, program: Program, mocks: AwsMocks) -> Deployment:
    # The mocks run on the thread's current event loop, which an `asyncio.run` earlier in this
    # process (another module's test on the same xdist worker) leaves unset.
    _ensure_event_loop()
    monitor = RecordingMonitor(mocks)
    collect = _Collect()
    # Not from logging.getLogger: one unregistered logger per run, nothing kept globally.
    logger = logging.Logger(f"{__name__}.engine")
    logger.addHandler(collect)
    pulumi.runtime.set_mocks(
        mocks,
        project=PROJECT,
        stack=config.stack_name,
        preview=False,
        logger=logger,
        monitor=monitor,
    )
    exports: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def run() -> pulumi.Output[None]:
        program()
        root = pulumi.runtime.get_root_resource()
        assert root is not None
        return pulumi.Output.from_input(root.outputs).apply(exports.update)  # type: ignore[attr-defined]

    run()
    stacks = [r for r in monitor.registrations if r.type == STACK_TYPE]
    if len(stacks) != 1:
        raise AssertionError(f"expected one root stack resource, got {stacks}")
    resources = [
        RegisteredResource(registration, *mocks.created[(registration.type, registration.name)])
        for registration in monitor.registrations
        if registration.type != STACK_TYPE
    ]
    return Deployment(
        stacks[0],
        resources,
        exports,
        list(mocks.calls),
        dict(monitor.registered_outputs),
        collect.records,
    )
