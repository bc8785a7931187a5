"""The pipeline's functions as plain data, and the one import of the whole model.

Pure Python (no pulumi import). Names and ARNs are `stacks.naming`, every other resource
property is `stacks.resources`, policies `stacks.policies`, the definition
`stacks.state_machine`; this module adds the functions (handlers, memory, timeouts, their
environments, code) and re-exports the rest, so `from stacks import spec` reaches it all.
`stacks.pipeline` and the emulator's applier only render it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from handlers.core.status_model import TTL_ATTRIBUTE
from stacks.alarm_resources import ALARM_KEY, ALARM_TOPIC, AlarmSettings, alarm_settings
from stacks.config import PipelineConfig
from stacks.naming import (
    ALARMS,
    API_STAGE,
    DLQ_ALARMS,
    FUNCTIONS,
    QUEUES,
    STAGE_DLQS,
    STAGE_FUNCTIONS,
    AlarmKey,
    FunctionName,
    PipelineArns,
    PipelineNames,
    QueueKey,
    StageName,
    bucket_suffix,
    function_arn,
    function_log_group,
    names,
    pipeline_arns,
)
from stacks.policies import (
    alarm_key_policy,
    alarm_topic_policy,
    bucket_policy,
    function_policy,
    ingest_queue_policy,
    lambda_assume_role_policy,
    state_machine_assume_role_policy,
    state_machine_policy,
)
from stacks.resources import (
    API,
    API_RESOURCE_KEYS,
    ARCHIVE_STORAGE_CLASS,
    BUCKET,
    DLQ_RETENTION_S,
    FUNCTION_LOG_FORMAT,
    INCOMING_PREFIX,
    INGEST_MESSAGE_GROUP,
    INGEST_RETENTION_S,
    INGEST_RULE,
    INGEST_SOURCE,
    INGEST_TIMEOUT_S,
    INVENTORY,
    KEY_TYPE_CODES,
    RESULTS_PREFIX,
    STACK_OUTPUTS,
    STATE_MACHINE,
    STATUS_TABLE,
    WORK_PREFIX,
    InventoryItem,
    LifecycleRule,
    QueueSettings,
    TableSettings,
    api_invoke_source_arn,
    api_request_parameters,
    billing_mode,
    event_source_response_types,
    index_keys,
    ingest_rule_event_pattern,
    inventory,
    inventory_counts,
    lifecycle_rules,
    lifecycle_status,
    log_destination,
    queue_settings,
    redrive_policy,
    role_policy_name,
    rule_state,
    stack_outputs,
    versioning_status,
)
from stacks.state_machine import RetryPolicy, StateMachineTargets, state_machine_definition

__all__ = [
    "ALARMS",
    "ALARM_KEY",
    "ALARM_TOPIC",
    "AlarmKey",
    "AlarmSettings",
    "DLQ_ALARMS",
    "alarm_key_policy",
    "alarm_settings",
    "alarm_topic_policy",
    "inventory",
    "API",
    "API_STAGE",
    "BUCKET",
    "DLQ_RETENTION_S",
    "FUNCTIONS",
    "INCOMING_PREFIX",
    "INGEST_MESSAGE_GROUP",
    "INGEST_RETENTION_S",
    "INGEST_RULE",
    "INGEST_SOURCE",
    "INVENTORY",
    "lifecycle_status",
    "rule_state",
    "TableSettings",
    "InventoryItem",
    "versioning_status",
    "index_keys",
    "event_source_response_types",
    "billing_mode",
    "api_request_parameters",
    "api_invoke_source_arn",
    "KEY_TYPE_CODES",
    "log_destination",
    "QueueSettings",
    "LifecycleRule",
    "FUNCTION_LOG_FORMAT",
    "ARCHIVE_STORAGE_CLASS",
    "API_RESOURCE_KEYS",
    "inventory_counts",
    "QUEUES",
    "RESULTS_PREFIX",
    "STACK_OUTPUTS",
    "STAGE_DLQS",
    "STAGE_FUNCTIONS",
    "STATE_MACHINE",
    "STATUS_TABLE",
    "TTL_ATTRIBUTE",
    "WORK_PREFIX",
    "FunctionName",
    "FunctionSpec",
    "PipelineArns",
    "PipelineNames",
    "QueueKey",
    "RetryPolicy",
    "StageName",
    "StateMachineTargets",
    "bucket_policy",
    "bucket_suffix",
    "function_arn",
    "function_log_group",
    "execution_timeout_s",
    "function_environment",
    "function_layers",
    "function_policy",
    "function_specs",
    "handler_sources",
    "ingest_queue_policy",
    "ingest_rule_event_pattern",
    "lambda_assume_role_policy",
    "lifecycle_rules",
    "names",
    "pandas_layer_parameter",
    "pipeline_arns",
    "powertools_layer_arn",
    "queue_settings",
    "redrive_policy",
    "role_policy_name",
    "stack_outputs",
    "state_machine_assume_role_policy",
    "state_machine_definition",
    "state_machine_policy",
]

LAMBDA_RUNTIME: Final = "python3.13"
LAMBDA_ARCHITECTURE: Final = "x86_64"
INGEST_MEMORY_MB: Final = 256
STATUS_MEMORY_MB: Final = 256
STATUS_TIMEOUT_S: Final = 10

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
# (aws/aws-sdk-pandas#3393). Unlike Powertools, one release's layer version number differs per
# region, so the ARN is not derived here: AWS publishes it per release, region, Python version
# and architecture as an SSM public parameter, which the Pulumi program reads at deployment
# (stacks.pipeline). `config.pandas_layer_arn` overrides it (a private copy of the layer).
PANDAS_LAYER_RELEASE: Final = "3.16.1"
PANDAS_LAYER_PYTHON: Final = "py3.13"
# The functions whose code imports pyarrow (handlers.core.marketdata).
ARROW_FUNCTIONS: Final[tuple[FunctionName, ...]] = ("validator", "processor")


def pandas_layer_parameter(config: PipelineConfig) -> str:
    """The SSM public parameter that holds the pinned release's layer ARN in this region."""
    return (
        f"/aws/service/aws-sdk-pandas/{PANDAS_LAYER_RELEASE}/{config.region}/"
        f"{PANDAS_LAYER_PYTHON}/{LAMBDA_ARCHITECTURE}/layer-arn"
    )


def function_layers(fn: FunctionName, config: PipelineConfig, pandas_layer: str) -> list[str]:
    """Powertools for every function; the pandas layer (pyarrow, its ARN resolved by the
    caller: `config.pandas_layer_arn` or the SSM parameter) for those that import it."""
    layers = [powertools_layer_arn(config)]
    if fn in ARROW_FUNCTIONS:
        layers.append(pandas_layer)
    return layers


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
