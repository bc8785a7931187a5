"""The pipeline's resources as plain data: names, attributes, environments and policies.

Pure Python (no pulumi import): `stacks.pipeline` turns it into Pulumi resources, the local
engine applies it to the AWS emulator with boto3, and the tests assert against it, so the three
can never disagree about a name or a setting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from handlers.core.status_model import OBJECT_KEY_INDEX, TTL_ATTRIBUTE
from stacks.config import PipelineConfig
from stacks.policies import (
    PipelineArns,
    bucket_policy,
    function_policy,
    ingest_queue_policy,
    lambda_assume_role_policy,
    state_machine_assume_role_policy,
    state_machine_policy,
)
from stacks.state_machine import RetryPolicy, StateMachineTargets, state_machine_definition

__all__ = [
    "API_STAGE",
    "FUNCTIONS",
    "INCOMING_PREFIX",
    "RESULTS_PREFIX",
    "STACK_OUTPUTS",
    "STAGE_FUNCTIONS",
    "WORK_PREFIX",
    "FunctionName",
    "bucket_lifecycle_rules",
    "FunctionSpec",
    "PipelineArns",
    "PipelineNames",
    "RetryPolicy",
    "StateMachineTargets",
    "bucket_policy",
    "dlq_attributes",
    "execution_timeout_s",
    "function_environment",
    "function_layers",
    "function_policy",
    "function_specs",
    "ingest_queue_attributes",
    "ingest_queue_policy",
    "ingest_rule_event_pattern",
    "lambda_assume_role_policy",
    "names",
    "pandas_layer_arn",
    "powertools_layer_arn",
    "redrive_policy",
    "state_machine_assume_role_policy",
    "state_machine_definition",
    "state_machine_policy",
    "status_table_schema",
    "TTL_ATTRIBUTE",
    "STATUS_TABLE_PITR",
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

# Object key prefixes (DESIGN §2): uploads, intermediate per-file work, published results.
INCOMING_PREFIX: Final = "incoming/"
WORK_PREFIX: Final = "work/"
RESULTS_PREFIX: Final = "results/"

API_STAGE: Final = "prod"
LAMBDA_RUNTIME: Final = "python3.13"
LAMBDA_ARCHITECTURE: Final = "x86_64"
INGEST_MEMORY_MB: Final = 256
INGEST_TIMEOUT_S: Final = 30
STATUS_MEMORY_MB: Final = 256
STATUS_TIMEOUT_S: Final = 10
INGEST_BATCH_SIZE: Final = 10
MAX_RECEIVE_COUNT: Final = 3
# AWS's guidance for an SQS event source: visibility timeout at least six times the function's.
VISIBILITY_TIMEOUT_FACTOR: Final = 6
INGEST_RETENTION_S: Final = 4 * 24 * 3600
DLQ_RETENTION_S: Final = 14 * 24 * 3600
# Every event of the ingest FIFO shares one group: order does not matter, one group keeps the
# EventBridge target simple; throughput is bounded by the batch size and fine for file drops.
INGEST_MESSAGE_GROUP: Final = "incoming"

# The stack outputs (DESIGN §2, a contract): every engine reports exactly these, all strings.
STACK_OUTPUTS: Final[tuple[str, ...]] = (
    "bucketName",
    "ingestQueueUrl",
    "ingestDlqUrl",
    "validatorDlqUrl",
    "processorDlqUrl",
    "aggregatorDlqUrl",
    "statusTableName",
    "stateMachineArn",
    "validatorFunctionName",
    "processorFunctionName",
    "aggregatorFunctionName",
    "ingestFunctionName",
    "statusFunctionName",
    "apiEndpoint",
)

# AWS-published Powertools for AWS Lambda (Python) v3 layer; account 017000801446 publishes it
# in every commercial region. Overridable per environment (config.powertools_layer_arn).
POWERTOOLS_LAYER_ACCOUNT: Final = "017000801446"
POWERTOOLS_LAYER_VERSION: Final = 27


def powertools_layer_arn(config: PipelineConfig) -> str:
    if config.powertools_layer_arn:
        return config.powertools_layer_arn
    return (
        f"arn:aws:lambda:{config.region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-python313-{LAMBDA_ARCHITECTURE}:{POWERTOOLS_LAYER_VERSION}"
    )


# AWS-published "AWS SDK for pandas" layer: the market-data core's pyarrow (the validator and the
# processor import it; the other functions do not load it). Pinned to release 3.16.1, whose
# Python 3.13 layers bundle pyarrow 20.0.0, the version pyproject.toml pins and the tests run:
# release 3.17.0 (pyarrow 24) is avoided, its Python 3.12-3.14 layers crash on any datetime64
# (aws/aws-sdk-pandas#3393). Unlike Powertools, the layer's version number differs per region
# for one release, so a region gets a default only when its 3.16.1 number was read from the
# release's published table (docs: aws-sdk-pandas.readthedocs.io/en/3.16.1/layers.html);
# elsewhere config.pandas_layer_arn must be set (the deployment fails with a message naming it).
PANDAS_LAYER_ACCOUNT: Final = "336392948345"
PANDAS_LAYER_RELEASE: Final = "3.16.1"
PANDAS_LAYER_VERSIONS: Final[Mapping[str, int]] = MappingProxyType({"af-south-1": 11})
# The functions whose code imports pyarrow (handlers.core.marketdata).
ARROW_FUNCTIONS: Final[tuple[FunctionName, ...]] = ("validator", "processor")


def pandas_layer_arn(config: PipelineConfig) -> str:
    if config.pandas_layer_arn:
        return config.pandas_layer_arn
    version = PANDAS_LAYER_VERSIONS.get(config.region)
    if version is None:
        raise ValueError(
            f"no known AWS SDK for pandas {PANDAS_LAYER_RELEASE} layer version for region "
            f"{config.region}: set pandas_layer_arn (AWSSDKPandas-Python313, x86_64)"
        )
    return (
        f"arn:aws:lambda:{config.region}:{PANDAS_LAYER_ACCOUNT}:layer:"
        f"AWSSDKPandas-Python313:{version}"
    )


def function_layers(fn: FunctionName, config: PipelineConfig) -> list[str]:
    """Powertools for every function; the pandas layer (pyarrow) for those that need it."""
    layers = [powertools_layer_arn(config)]
    if fn in ARROW_FUNCTIONS:
        layers.append(pandas_layer_arn(config))
    return layers


@dataclass(frozen=True)
class PipelineNames:
    """Every physical name of one environment; all start with `p-{tenant}-{env}`."""

    prefix: str
    bucket: str
    ingest_queue: str
    ingest_dlq: str
    stage_dlqs: dict[StageName, str]
    status_table: str
    state_machine: str
    state_machine_role: str
    functions: dict[FunctionName, str]
    function_roles: dict[FunctionName, str]
    ingest_rule: str
    api: str
    function_log_groups: dict[FunctionName, str]
    state_machine_log_group: str
    api_access_log_group: str


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
        ingest_queue=f"{prefix}-ingest.fifo",
        ingest_dlq=f"{prefix}-ingest-dlq.fifo",
        stage_dlqs={stage: f"{prefix}-{stage}-dlq.fifo" for stage in STAGE_FUNCTIONS},
        status_table=f"{prefix}-status",
        state_machine=state_machine,
        state_machine_role=f"{prefix}-sfn-role",
        functions=functions,
        function_roles={fn: f"{name}-role" for fn, name in functions.items()},
        ingest_rule=f"{prefix}-incoming",
        api=api,
        function_log_groups={fn: f"/aws/lambda/{name}" for fn, name in functions.items()},
        state_machine_log_group=f"/aws/vendedlogs/states/{state_machine}",
        api_access_log_group=f"/aws/apigateway/{api}/access",
    )


# --- bucket ---------------------------------------------------------------------------------

# Noncurrent versions spend this long in GLACIER before they expire: its minimum storage
# duration, so expiring them never incurs an early-deletion charge.
GLACIER_MINIMUM_DAYS: Final = 90
ABORT_MULTIPART_AFTER_DAYS: Final = 7
# Per-file intermediates under work/ are deleted by the aggregator; a failed file leaves them.
WORK_EXPIRATION_DAYS: Final = 7


def bucket_lifecycle_rules(config: PipelineConfig) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules, in boto3's spelling (PutBucketLifecycleConfiguration).

    Everything moves to GLACIER after `glacier_after_days`; nothing current ever expires except
    abandoned intermediates under work/.
    """
    days = config.glacier_after_days
    return [
        {
            "ID": "archive-to-glacier",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "Transitions": [{"Days": days, "StorageClass": "GLACIER"}],
            "NoncurrentVersionTransitions": [{"NoncurrentDays": days, "StorageClass": "GLACIER"}],
            "NoncurrentVersionExpiration": {"NoncurrentDays": days + GLACIER_MINIMUM_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_AFTER_DAYS},
        },
        {
            "ID": "expire-abandoned-work",
            "Status": "Enabled",
            "Filter": {"Prefix": WORK_PREFIX},
            "Expiration": {"Days": WORK_EXPIRATION_DAYS},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        },
    ]


# --- queues ---------------------------------------------------------------------------------


def ingest_queue_attributes() -> dict[str, str]:
    """SQS attributes of the ingest FIFO queue (the redrive policy is added with the DLQ ARN)."""
    return {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_FACTOR * INGEST_TIMEOUT_S),
        "MessageRetentionPeriod": str(INGEST_RETENTION_S),
    }


def dlq_attributes() -> dict[str, str]:
    """SQS attributes of every dead-letter FIFO queue (ingest and the three stages)."""
    return {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
        "MessageRetentionPeriod": str(DLQ_RETENTION_S),
    }


def redrive_policy(dlq_arn: str) -> dict[str, Any]:
    return {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}


def ingest_rule_event_pattern(bucket: str) -> dict[str, Any]:
    """EventBridge pattern: objects created in this bucket under incoming/."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"prefix": INCOMING_PREFIX}]},
        },
    }


# --- status table ---------------------------------------------------------------------------


# The table's other settings (DESIGN §2) are separate API calls: TTL on `expirationTime`
# (handlers.core.status_model.TTL_ATTRIBUTE) and point-in-time recovery, both always on.
STATUS_TABLE_PITR: Final = True


def status_table_schema() -> dict[str, Any]:
    """DynamoDB CreateTable arguments except the table name, in boto3's spelling."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "fileId", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "fileId", "AttributeType": "S"},
            {"AttributeName": "objectKey", "AttributeType": "S"},
            {"AttributeName": "receivedAt", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OBJECT_KEY_INDEX,
                # Sorted by arrival, so "every version of a key, newest first" is one query.
                "KeySchema": [
                    {"AttributeName": "objectKey", "KeyType": "HASH"},
                    {"AttributeName": "receivedAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "SSESpecification": {"Enabled": True},
    }


# --- functions ------------------------------------------------------------------------------

# The functions' code is the repository's `handlers` package, zipped under a `handlers/` root so
# that handler strings such as `handlers.ingest.lambda_handler` resolve.
HANDLERS_PACKAGE: Final = "handlers"
HANDLERS_DIR: Final = Path(__file__).resolve().parents[1] / HANDLERS_PACKAGE


def handler_sources(handlers_dir: Path = HANDLERS_DIR) -> list[tuple[str, Path]]:
    """(archive name, file) of every Python source of the package, in sorted order: only
    `*.py`, no `__pycache__`, no hidden files, so the same tree always gives the same code."""
    root = handlers_dir.resolve()
    if not (root / "__init__.py").is_file():
        raise ValueError(f"{root} is not a Python package (no __init__.py)")
    sources = sorted(
        path
        for path in root.rglob("*.py")
        if path.is_file()
        and not any(
            part == "__pycache__" or part.startswith(".") for part in path.relative_to(root).parts
        )
    )
    return [(f"{HANDLERS_PACKAGE}/{path.relative_to(root).as_posix()}", path) for path in sources]


@dataclass(frozen=True)
class FunctionSpec:
    name: FunctionName
    handler: str  # module.function inside the handlers/ package
    memory_mb: int
    timeout_s: int
    description: str


def function_specs(config: PipelineConfig) -> dict[FunctionName, FunctionSpec]:
    stage = {"memory_mb": config.memory_mb, "timeout_s": config.stage_timeout_s}
    return {
        "ingest": FunctionSpec(
            "ingest",
            "handlers.ingest.lambda_handler",
            INGEST_MEMORY_MB,
            INGEST_TIMEOUT_S,
            "Starts one execution per uploaded object version",
        ),
        "validator": FunctionSpec(
            "validator", "handlers.validator.lambda_handler", **stage, description="Validates"
        ),
        "processor": FunctionSpec(
            "processor",
            "handlers.processor.lambda_handler",
            **stage,
            description="Computes per-symbol statistics",
        ),
        "aggregator": FunctionSpec(
            "aggregator",
            "handlers.aggregator.lambda_handler",
            **stage,
            description="Publishes results and the file summary",
        ),
        "status": FunctionSpec(
            "status",
            "handlers.status_api.lambda_handler",
            STATUS_MEMORY_MB,
            STATUS_TIMEOUT_S,
            "Serves the file status REST API",
        ),
    }


# Slack for the status writes and state transitions around the stage tasks.
_EXECUTION_OVERHEAD_S: Final = 300


def execution_timeout_s(config: PipelineConfig, retry: RetryPolicy | None = None) -> int:
    """An execution's TimeoutSeconds: above the worst case of every stage, retries included.

    A timed-out execution never records FAILED (no Catch runs), so the bound must not cut a
    legitimate run short: each stage may run once plus every attempt of both its retriers, each
    attempt up to the stage timeout and each wait up to the retry's maximum delay.
    """
    retry = retry or RetryPolicy()
    attempts = 1 + 2 * retry.max_attempts
    per_stage = attempts * config.stage_timeout_s + (attempts - 1) * retry.max_delay_s
    return len(STAGE_FUNCTIONS) * per_stage + _EXECUTION_OVERHEAD_S


def function_environment(
    function: FunctionName,
    config: PipelineConfig,
    pipeline_names: PipelineNames,
    state_machine_arn: str,
) -> dict[str, str]:
    """Environment variables of one function: exactly what its handler reads, nothing more."""
    common = {
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PIPELINE_TENANT": config.tenant,
        "PIPELINE_ENVIRONMENT": config.environment,
    }
    table = {"STATUS_TABLE_NAME": pipeline_names.status_table}
    specific: dict[FunctionName, dict[str, str]] = {
        "ingest": {
            **table,
            "STATE_MACHINE_ARN": state_machine_arn,
            "STATUS_TTL_DAYS": str(config.status_ttl_days),
        },
        "validator": {"MAX_BAD_ROW_RATIO": repr(config.max_bad_row_ratio)},
        "processor": {"WORK_PREFIX": WORK_PREFIX},
        "aggregator": {**table, "RESULTS_PREFIX": RESULTS_PREFIX},
        "status": table,
    }
    return {**common, **specific[function]}
