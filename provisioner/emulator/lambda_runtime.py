"""The AWS Lambda Python runtime, emulated in this process: a handler run with exactly its
function's environment variables, its deployed code and a Lambda context, its result or error
as Lambda reports it.

`LocalFunction` is one function as the runtime runs it (picklable, so the shared runtime
workers, `runtime_workers`, receive it with each invocation); the dispatcher
(`lambda_dispatch`) hands moto's invocations to invokers built on it.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Final

from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.deployed_code import ARCHIVE_MODULES
from provisioner.emulator.lambda_dispatch import DeployedFunction, InvocationResult, Invoker
from stacks import spec
from stacks.config import PipelineConfig

TIMEOUT_ERROR: Final = "Sandbox.Timedout"

# One invocation at a time: os.environ is process-global, and Step Functions executions run in
# threads. The local engine isolates environments in worker processes; in-process dispatch is
# for tests and single-environment use. Re-entrant, so a handler may invoke another in-process.
_RUNTIME_LOCK: Final = threading.RLock()

# Process variables an invocation keeps: what the interpreter, the SDK's credentials and
# endpoint, the emulator's other threads (MOTO_*) and the test runner (PYTEST_*) need. Every
# other variable is hidden for the invocation's duration, so a handler sees its function's
# configuration and nothing another function or environment set.
_INHERITED: Final = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "USER",
        "LOGNAME",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    }
)
_INHERITED_PREFIXES: Final = ("AWS_ENDPOINT_URL_", "LC_", "MOTO_", "PYTEST_", "COV_", "COVERAGE_")


def _inherited(name: str) -> bool:
    return name in _INHERITED or name.startswith(_INHERITED_PREFIXES)


@contextmanager
def _invocation_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """os.environ = inherited process variables + `variables`, restored afterwards.

    Applied as a diff, never cleared: inherited variables (MOTO_PORT among them) stay in place
    throughout, because other threads of this process read them meanwhile. Afterwards every
    non-inherited variable is as before, including any the handler itself set or removed.
    """
    before: dict[str, str | None] = {
        name: value for name, value in os.environ.items() if not _inherited(name)
    }
    before.update({name: os.environ.get(name) for name in variables})
    for name in list(os.environ):
        if name not in variables and not _inherited(name):
            del os.environ[name]
    for name, value in variables.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    try:
        yield
    finally:
        for name in list(os.environ):
            if name not in before and not _inherited(name):
                del os.environ[name]
        for name, previous in before.items():
            if previous is None:
                os.environ.pop(name, None)
            elif os.environ.get(name) != previous:
                os.environ[name] = previous


@dataclass(frozen=True)
class LambdaContext:
    """The Lambda context object's documented attributes (enough for Powertools)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(repr=False)  # time.monotonic() at which the function times out
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _runtime_variables(
    handler: str, function_name: str, memory_mb: int, region: str, log_stream: str
) -> dict[str, str]:
    """The variables the Lambda service sets itself (they win over the function's own)."""
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.function_log_group(function_name),
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.LAMBDA_RUNTIME}",
        "_HANDLER": handler,
        # LAMBDA_TASK_ROOT is deliberately absent: there is no task root, and Powertools'
        # Tracer treats its absence as "not in Lambda" and stays off (no X-Ray daemon here).
    }


def _json_default(value: Any) -> Any:
    # The AWS Python runtime serialises Decimal (common in DynamoDB results) as a number.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _load_handler(handler: str) -> Callable[[Any, LambdaContext], Any]:
    module_name, _, attribute = handler.rpartition(".")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute)
    if not callable(function):
        raise AttributeError(f"{handler} is not callable")
    return function  # type: ignore[no-any-return]


def invoke_handler(
    handler: str,
    event: object,
    environment: Mapping[str, str],
    *,
    function_name: str,
    memory_mb: int,
    timeout_s: int,
    region: str = "us-east-1",
    account_id: str = MOTO_ACCOUNT_ID,
    code_root: str | None = None,
) -> InvocationResult:
    """Run `module.function` as the AWS Lambda Python runtime would, in this process.

    The handler sees exactly its function's `environment`, the variables Lambda sets, and the
    inherited process variables listed in `_INHERITED` (credentials, endpoint, interpreter).
    With `code_root` (an unpacked archive, `deployed_code`) its modules come from there alone;
    without, from this process's import path (tests of handler code).
    Its return value is serialised to JSON; any exception becomes an error result named after
    its class. A run longer than `timeout_s` is reported as Lambda's timeout error afterwards
    (a thread cannot be stopped midway; the result it produced is discarded).
    """
    request_id = str(uuid.uuid4())
    log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{request_id.replace('-', '')}"
    variables = {
        **environment,
        **_runtime_variables(handler, function_name, memory_mb, region, log_stream),
    }
    code = nullcontext() if code_root is None else ARCHIVE_MODULES.using(code_root)
    with _RUNTIME_LOCK, _invocation_environment(variables), code:
        started = time.monotonic()
        context = LambdaContext(
            function_name=function_name,
            function_version="$LATEST",
            invoked_function_arn=spec.function_arn(region, account_id, function_name),
            memory_limit_in_mb=memory_mb,
            aws_request_id=request_id,
            log_group_name=spec.function_log_group(function_name),
            log_stream_name=log_stream,
            deadline=started + timeout_s,
        )
        result = _run(handler, event, context)
        elapsed = time.monotonic() - started
    result = replace(result, handler_seconds=elapsed)
    if elapsed > timeout_s:
        return InvocationResult.failure(
            TIMEOUT_ERROR, f"Task timed out after {timeout_s:.2f} seconds", request_id=request_id
        )
    return result


def _run(handler: str, event: object, context: LambdaContext) -> InvocationResult:
    request_id = context.aws_request_id
    try:
        function = _load_handler(handler)
    except ImportError as exc:
        return InvocationResult.failure(
            "Runtime.ImportModuleError", f"Unable to import module for {handler!r}: {exc}"
        )
    except AttributeError as exc:
        return InvocationResult.failure("Runtime.HandlerNotFound", str(exc))
    # The one broad catch of the emulator: the Lambda runtime turns ANY exception escaping a
    # handler into an error response named after its class, and Step Functions' Retry and Catch
    # match that name. Nothing is hidden: the error, message and stack trace are the result.
    try:
        value = function(event, context)
    except Exception as exc:
        return InvocationResult.failure(
            type(exc).__name__,
            str(exc),
            traceback.format_tb(exc.__traceback__),
            request_id=request_id,
        )
    try:
        return InvocationResult(json.dumps(value, default=_json_default).encode())
    except (TypeError, ValueError) as exc:
        return InvocationResult.failure(
            "Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id=request_id
        )


@dataclass(frozen=True)
class LocalFunction:
    """One function as the local runtime runs it: handler, exact environment, limits, code.

    Called with the invocation payload, it runs the handler in the calling process with
    `invoke_handler` (picklable, so the shared runtime sends it to a worker).
    """

    function_name: str
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    region: str = "us-east-1"
    account_id: str = MOTO_ACCOUNT_ID
    code_root: str | None = None  # the unpacked archive; None: this process's import path

    @classmethod
    def deployed(cls, function: DeployedFunction, code_root: str) -> LocalFunction:
        """The function exactly as the emulator holds it, its archive unpacked at `code_root`."""
        return cls(
            function_name=function.name,
            handler=function.handler,
            environment=dict(function.environment),
            memory_mb=function.memory_mb,
            timeout_s=function.timeout_s,
            region=function.region,
            account_id=function.account_id,
            code_root=code_root,
        )

    def __call__(self, payload: bytes) -> InvocationResult:
        try:
            event = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return InvocationResult.failure("Runtime.UnmarshalError", f"Invalid JSON event: {exc}")
        return invoke_handler(
            self.handler,
            event,
            self.environment,
            function_name=self.function_name,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            region=self.region,
            account_id=self.account_id,
            code_root=self.code_root,
        )

    def invoker(self) -> Invoker:
        """An `Invoker` running this function in the calling process, whatever was deployed
        (tests of handler code and stand-ins)."""
        return lambda _deployed, payload: self(payload)


def handler_invoker(
    handler: str,
    environment: Mapping[str, str],
    *,
    function_name: str,
    memory_mb: int,
    timeout_s: int,
    region: str = "us-east-1",
    account_id: str = MOTO_ACCOUNT_ID,
) -> Invoker:
    """An `Invoker` that runs `handler` in this process with `invoke_handler`."""
    return LocalFunction(
        function_name, handler, dict(environment), memory_mb, timeout_s, region, account_id
    ).invoker()


def pipeline_functions(
    config: PipelineConfig, *, account_id: str = MOTO_ACCOUNT_ID
) -> dict[str, LocalFunction]:
    """One environment's five functions, by physical name, each with exactly the environment
    `stacks.spec.function_environment` gives it."""
    names = spec.names(config, account_id)
    state_machine_arn = spec.pipeline_arns(config, account_id).state_machine
    return {
        names.functions[fn]: LocalFunction(
            function_name=names.functions[fn],
            handler=fn_spec.handler,
            environment=spec.function_environment(fn, config, names, state_machine_arn),
            memory_mb=fn_spec.memory_mb,
            timeout_s=fn_spec.timeout_s,
            region=config.region,
            account_id=account_id,
        )
        for fn, fn_spec in spec.function_specs(config).items()
    }


def pipeline_invokers(
    config: PipelineConfig, *, account_id: str = MOTO_ACCOUNT_ID
) -> dict[str, Invoker]:
    """In-process invokers of one environment's five functions, by physical function name,
    running this tree's `handlers` (tests of handler code)."""
    functions = pipeline_functions(config, account_id=account_id)
    return {name: function.invoker() for name, function in functions.items()}
