"""Every name and ARN of one environment, derived once (architecture.md §2, names are a contract).

Pure Python and the bottom of `stacks`: `policies`, `state_machine`, `resources` and `spec` build
on it. ARNs follow AWS's fixed formats from names, account, region and partition; both engines
use `pipeline_arns`, so a policy or a definition never refers to a resource by a second spelling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Literal

from stacks.config import PipelineConfig

__all__ = [
    "ALARMS",
    "API_STAGE",
    "DLQ_ALARMS",
    "FUNCTIONS",
    "QUEUES",
    "STAGE_FUNCTIONS",
    "AlarmKey",
    "FunctionName",
    "PipelineArns",
    "PipelineNames",
    "QueueKey",
    "StageName",
    "arn",
    "bucket_suffix",
    "function_arn",
    "function_log_group",
    "names",
    "pipeline_arns",
]

FunctionName = Literal["ingest", "validator", "processor", "aggregator", "status"]
FUNCTIONS: Final[tuple[FunctionName, ...]] = (
    "ingest",
    "validator",
    "processor",
    "aggregator",
    "status",
)
StageName = Literal["validator", "processor", "aggregator"]
STAGE_FUNCTIONS: Final[tuple[StageName, ...]] = ("validator", "processor", "aggregator")

# The environment's queues: the ingest FIFO, its dead-letter queue, one dead-letter per stage.
QueueKey = Literal["ingest", "ingest-dlq", "validator-dlq", "processor-dlq", "aggregator-dlq"]
QUEUES: Final[tuple[QueueKey, ...]] = (
    "ingest-dlq",
    "validator-dlq",
    "processor-dlq",
    "aggregator-dlq",
    "ingest",
)
STAGE_DLQS: Final[dict[StageName, QueueKey]] = {
    "validator": "validator-dlq",
    "processor": "processor-dlq",
    "aggregator": "aggregator-dlq",
}

# The environment's CloudWatch alarms (docs/architecture.md §8): one on each dead-letter queue's
# depth, one on the state machine's failed executions.
AlarmKey = Literal[
    "ingest-dlq-depth",
    "validator-dlq-depth",
    "processor-dlq-depth",
    "aggregator-dlq-depth",
    "failed-executions",
]
DLQ_ALARMS: Final[dict[AlarmKey, QueueKey]] = {
    "ingest-dlq-depth": "ingest-dlq",
    "validator-dlq-depth": "validator-dlq",
    "processor-dlq-depth": "processor-dlq",
    "aggregator-dlq-depth": "aggregator-dlq",
}
ALARMS: Final[tuple[AlarmKey, ...]] = (*DLQ_ALARMS, "failed-executions")

# The status API's one stage (API Gateway's; the local engine serves the same path).
API_STAGE: Final = "prod"


def function_log_group(function_name: str) -> str:
    """Lambda's log group of a function (the name the Lambda service itself uses)."""
    return f"/aws/lambda/{function_name}"


@dataclass(frozen=True)
class PipelineNames:
    """Every physical name of one environment; all start with `p-{tenant}-{env}`."""

    prefix: str
    bucket: str
    queues: dict[QueueKey, str]
    status_table: str
    state_machine: str
    state_machine_role: str
    functions: dict[FunctionName, str]
    function_roles: dict[FunctionName, str]
    ingest_rule: str
    ingest_source: str
    api: str
    function_log_groups: dict[FunctionName, str]
    state_machine_log_group: str
    api_access_log_group: str
    alarm_topic: str
    alarm_key_alias: str  # the topic's KMS key, found by its alias (a key has no name)
    alarms: dict[AlarmKey, str]

    @property
    def ingest_queue(self) -> str:
        return self.queues["ingest"]

    @property
    def ingest_dlq(self) -> str:
        return self.queues["ingest-dlq"]

    @property
    def stage_dlqs(self) -> dict[StageName, str]:
        return {stage: self.queues[key] for stage, key in STAGE_DLQS.items()}


def bucket_suffix(account_id: str, region: str) -> str:
    """Short, stable, and different for every account and region: S3 names are global."""
    return hashlib.sha256(f"{account_id}:{region}".encode()).hexdigest()[:8]


def names(config: PipelineConfig, account_id: str) -> PipelineNames:
    prefix = f"p-{config.tenant}-{config.environment}"
    # The status function is "-status-api" so it does not share a name with the status table.
    functions: dict[FunctionName, str] = {
        fn: f"{prefix}-{'status-api' if fn == 'status' else fn}" for fn in FUNCTIONS
    }
    state_machine = f"{prefix}-pipeline"
    api = f"{prefix}-api"
    return PipelineNames(
        prefix=prefix,
        bucket=f"{prefix}-{bucket_suffix(account_id, config.region)}",
        queues={key: f"{prefix}-{key}.fifo" for key in QUEUES},
        status_table=f"{prefix}-status",
        state_machine=state_machine,
        state_machine_role=f"{prefix}-sfn-role",
        functions=functions,
        function_roles={fn: f"{name}-role" for fn, name in functions.items()},
        ingest_rule=f"{prefix}-incoming",
        ingest_source=f"{prefix}-ingest-source",
        api=api,
        function_log_groups={fn: function_log_group(name) for fn, name in functions.items()},
        state_machine_log_group=f"/aws/vendedlogs/states/{state_machine}",
        api_access_log_group=f"/aws/apigateway/{api}/access",
        alarm_topic=f"{prefix}-alarms",
        alarm_key_alias=f"alias/{prefix}-alarms",
        alarms={key: f"{prefix}-{key}" for key in ALARMS},
    )


@dataclass(frozen=True)
class PipelineArns:
    """The ARNs the policies and the definition refer to. Log group ARNs end without `:*`."""

    bucket: str
    queues: dict[QueueKey, str]
    status_table: str
    state_machine: str
    state_machine_role: str
    functions: dict[FunctionName, str]
    function_roles: dict[FunctionName, str]
    function_log_groups: dict[FunctionName, str]
    state_machine_log_group: str
    log_groups: dict[str, str]  # every log group's ARN, by name
    ingest_rule: str
    alarm_topic: str
    alarms: dict[AlarmKey, str]

    @property
    def ingest_queue(self) -> str:
        return self.queues["ingest"]

    @property
    def ingest_dlq(self) -> str:
        return self.queues["ingest-dlq"]

    @property
    def stage_dlqs(self) -> dict[StageName, str]:
        return {stage: self.queues[key] for stage, key in STAGE_DLQS.items()}


def arn(partition: str, service: str, region: str, account_id: str, resource: str) -> str:
    """AWS's ARN format; IAM's and S3's ARNs have an empty region (S3's an empty account too)."""
    return f"arn:{partition}:{service}:{region}:{account_id}:{resource}"


def function_arn(region: str, account_id: str, function_name: str, partition: str = "aws") -> str:
    return arn(partition, "lambda", region, account_id, f"function:{function_name}")


def pipeline_arns(config: PipelineConfig, account_id: str, partition: str = "aws") -> PipelineArns:
    """Every ARN of the environment, from its names (AWS's fixed formats)."""
    physical = names(config, account_id)

    region = config.region

    def regional(service: str, resource: str) -> str:
        return arn(partition, service, region, account_id, resource)

    def role(name: str) -> str:
        return arn(partition, "iam", "", account_id, f"role/{name}")

    def log_group(name: str) -> str:
        return regional("logs", f"log-group:{name}")

    return PipelineArns(
        bucket=arn(partition, "s3", "", "", physical.bucket),
        queues={key: regional("sqs", name) for key, name in physical.queues.items()},
        status_table=regional("dynamodb", f"table/{physical.status_table}"),
        state_machine=regional("states", f"stateMachine:{physical.state_machine}"),
        state_machine_role=role(physical.state_machine_role),
        functions={
            fn: function_arn(region, account_id, name, partition)
            for fn, name in physical.functions.items()
        },
        function_roles={fn: role(name) for fn, name in physical.function_roles.items()},
        function_log_groups={
            fn: log_group(group) for fn, group in physical.function_log_groups.items()
        },
        state_machine_log_group=log_group(physical.state_machine_log_group),
        log_groups={
            name: log_group(name)
            for name in (
                *physical.function_log_groups.values(),
                physical.state_machine_log_group,
                physical.api_access_log_group,
            )
        },
        ingest_rule=regional("events", f"rule/{physical.ingest_rule}"),
        alarm_topic=regional("sns", physical.alarm_topic),
        alarms={
            key: regional("cloudwatch", f"alarm:{name}") for key, name in physical.alarms.items()
        },
    )
