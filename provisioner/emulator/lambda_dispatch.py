"""Lambda in the emulator: moto's Lambda invocations dispatched to handler code in this process.

moto runs no Lambda code here (no Docker). With `{"lambda": {"use_docker": False}}` every
invocation — the Lambda API's Invoke and Step Functions' `lambda:invoke` tasks alike — ends in
`moto.awslambda_simple.models.LambdaSimpleBackend.invoke`, which would answer a canned success.
`LambdaDispatcher.install()` replaces that one method, so an invocation reaches the invoker
registered for the function, and a failure comes back the way Lambda reports it
(`X-Amz-Function-Error: Unhandled` and `{"errorType", "errorMessage", "stackTrace"}`), which is
what Step Functions' Retry and Catch match on. This module is the only place that patches moto.

`invoke_handler` is the Python runtime half: it runs `module.function` with the function's own
environment variables and a Lambda context, in this process.
"""

from __future__ import annotations

import decimal
import importlib
import inspect
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Final

import structlog

from stacks import spec
from stacks.config import PipelineConfig

logger = structlog.get_logger(__name__)

# moto's default account; every emulated resource lives in it.
DEFAULT_ACCOUNT_ID: Final = "123456789012"
UNAVAILABLE_ERROR: Final = "LocalRuntimeUnavailable"
TIMEOUT_ERROR: Final = "Sandbox.Timedout"

# The hook this module replaces, and the signature it was written against (moto 5.2.x).
_HOOK_NAME: Final = "invoke"
_HOOK_PARAMETERS: Final = (
    "self",
    "function_name",
    "qualifier",
    "body",
    "headers",
    "response_headers",
)


@dataclass(frozen=True)
class InvocationResult:
    """What an invocation returned: the response payload, and the error when it failed."""

    payload: bytes
    error_type: str | None = None
    error_message: str | None = None
    # Time spent in the handler itself (Lambda's "Duration"); 0 when it never ran.
    handler_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def value(self) -> Any:
        """The payload decoded as JSON (None for an empty payload)."""
        return json.loads(self.payload) if self.payload else None

    @classmethod
    def success(cls, value: Any) -> InvocationResult:
        return cls(json.dumps(value).encode())

    @classmethod
    def failure(
        cls,
        error_type: str,
        error_message: str,
        stack_trace: list[str] | None = None,
        request_id: str | None = None,
    ) -> InvocationResult:
        document: dict[str, Any] = {
            "errorMessage": error_message,
            "errorType": error_type,
            "stackTrace": stack_trace or [],
        }
        if request_id is not None:
            document["requestId"] = request_id
        return cls(json.dumps(document).encode(), error_type, error_message)


# An invoker receives the invocation payload (the JSON event, as bytes) and never raises for a
# handler failure: it reports it in the result, as the Lambda service does.
Invoker = Callable[[bytes], InvocationResult]


def function_key(function: str) -> str:
    """The bare function name of a name, a `name:qualifier`, or a (partial) function ARN."""
    parts = function.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return parts[0]


@dataclass
class FunctionStats:
    """Cumulative figures of one function's invocations (for benchmarks and diagnostics)."""

    invocations: int = 0
    errors: int = 0
    handler_seconds: float = 0.0  # inside the handler
    dispatch_seconds: float = 0.0  # from moto's hook back to moto: handler + local runtime


class LambdaDispatcher:
    """Routes moto's Lambda invocations to registered invokers. One installed per process."""

    def __init__(self) -> None:
        self._invokers: dict[str, Invoker] = {}
        self._lock = threading.Lock()
        self._original_hook: Any = None
        self._stats: dict[str, FunctionStats] = {}

    def stats(self) -> dict[str, FunctionStats]:
        """A copy of the per-function figures since the dispatcher was created."""
        with self._lock:
            return {name: replace(figures) for name, figures in self._stats.items()}

    # --- registry ------------------------------------------------------------------------------

    def register(self, function: str, invoker: Invoker) -> None:
        with self._lock:
            self._invokers[function_key(function)] = invoker

    def unregister(self, function: str) -> None:
        with self._lock:
            self._invokers.pop(function_key(function), None)

    def registered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._invokers)

    def dispatch(self, function: str, payload: bytes) -> InvocationResult:
        """Run one invocation; an unregistered function fails the way a broken runtime would."""
        name = function_key(function)
        with self._lock:
            invoker = self._invokers.get(name)
        if invoker is None:
            logger.warning("emulator.lambda.unregistered", function=name)
            return InvocationResult.failure(
                UNAVAILABLE_ERROR, f"no local runtime is registered for function {name}"
            )
        started = time.monotonic()
        result = invoker(payload)
        elapsed = time.monotonic() - started
        with self._lock:
            figures = self._stats.setdefault(name, FunctionStats())
            figures.invocations += 1
            figures.errors += 0 if result.ok else 1
            figures.handler_seconds += result.handler_seconds
            figures.dispatch_seconds += elapsed
        logger.debug(
            "emulator.lambda.invoked",
            function=name,
            ok=result.ok,
            error_type=result.error_type,
            duration_ms=round(elapsed * 1000, 1),
        )
        return result

    # --- moto hook -----------------------------------------------------------------------------

    def install(self) -> None:
        """Patch moto so that its Lambda invocations reach this dispatcher (process-global).

        Also switches off moto's own SQS → Lambda delivery (see `_HiddenQueueMappings`): the
        event source mapping is emulated by `provisioner.emulator.event_source`, the way AWS
        runs it. Raises RuntimeError if moto's hook is not the one this module was written for.
        """
        global _installed
        with _INSTALL_LOCK:
            if _installed is self:
                return
            if _installed is not None:
                raise RuntimeError("another LambdaDispatcher is already installed in this process")
            backend_class, queue_class = _verified_moto_hooks()
            self._original_hook = backend_class.__dict__[_HOOK_NAME]
            setattr(backend_class, _HOOK_NAME, self._make_hook())
            setattr(queue_class, _QUEUE_MAPPINGS, _HiddenQueueMappings())
            _installed = self
        logger.info("emulator.lambda.dispatcher_installed")

    def uninstall(self) -> None:
        global _installed
        backend_class, queue_class = _moto_classes()
        with _INSTALL_LOCK:
            if _installed is not self:
                return
            setattr(backend_class, _HOOK_NAME, self._original_hook)
            delattr(queue_class, _QUEUE_MAPPINGS)
            self._original_hook = None
            _installed = None
        logger.info("emulator.lambda.dispatcher_uninstalled")

    def __enter__(self) -> LambdaDispatcher:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def _make_hook(self) -> Callable[..., bytes]:
        dispatcher = self

        # Same parameter names as moto's method: moto calls it with keywords.
        def invoke(
            self: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> bytes:
            # As moto's full backend does: an unknown function is ResourceNotFoundException.
            function = self.get_function(function_name, qualifier)
            result = dispatcher.dispatch(function.function_name, _as_bytes(body))
            if not result.ok:
                response_headers["x-amz-function-error"] = "Unhandled"
            return result.payload

        return invoke


_INSTALL_LOCK: Final = threading.Lock()
_installed: LambdaDispatcher | None = None

_QUEUE_MAPPINGS: Final = "lambda_event_source_mappings"


class _HiddenQueueMappings:
    """Hides SQS queues' Lambda mappings from moto's own delivery while the dispatcher is installed.

    moto 5.2.x, on every message added to a queue with an enabled mapping, receives the
    messages itself (counting a receive) and invokes the function once per message with a
    synthetic event (fixed attributes, raw S3 keys), deletes them on success and makes them
    visible again at once on failure — not what AWS does (batches, partial batch failures, the
    visibility timeout), and it would run handler code inside the S3 request that caused the
    event. Installed on moto's `Queue` class, this data descriptor makes every read of
    `queue.lambda_event_source_mappings` an empty dict, so moto stores mappings (the Lambda API
    still lists them) but moves nothing; `event_source` moves the messages instead.
    Writes (moto's `__init__`) still land in the instance, so uninstalling restores moto.
    """

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return {}

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__[_QUEUE_MAPPINGS] = value


def _moto_classes() -> tuple[type, type]:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.sqs.models import Queue

    return LambdaSimpleBackend, Queue


def _verified_moto_hooks() -> tuple[type, type]:
    """moto's classes, after checking they still look like what this module patches."""
    backend_class, queue_class = _moto_classes()
    hook = backend_class.__dict__.get(_HOOK_NAME)
    if hook is None or not callable(hook):
        raise RuntimeError(
            f"moto changed: {backend_class.__qualname__}.{_HOOK_NAME} no longer exists; "
            "the local Lambda runtime cannot be installed (see emulator.lambda_dispatch)"
        )
    parameters = tuple(inspect.signature(hook).parameters)
    if parameters != _HOOK_PARAMETERS:
        raise RuntimeError(
            f"moto changed: {backend_class.__qualname__}.{_HOOK_NAME}{parameters} is not the "
            f"hook this dispatcher was written for {_HOOK_PARAMETERS}; "
            "check provisioner.emulator.lambda_dispatch against the installed moto"
        )
    if _QUEUE_MAPPINGS in queue_class.__dict__ and not isinstance(
        queue_class.__dict__[_QUEUE_MAPPINGS], _HiddenQueueMappings
    ):
        raise RuntimeError(f"moto changed: Queue.{_QUEUE_MAPPINGS} is now a class attribute")
    if _QUEUE_MAPPINGS not in inspect.getsource(getattr(queue_class, "add_message", type)):
        raise RuntimeError(
            f"moto changed: Queue.add_message no longer reads {_QUEUE_MAPPINGS}; "
            "check how moto delivers SQS messages to Lambda before disabling it"
        )
    return backend_class, queue_class


def _as_bytes(body: Any) -> bytes:
    if body is None or body == b"" or body == "":
        # Lambda passes an empty invocation payload to the function as {}.
        return b"{}"
    if isinstance(body, bytes):
        return body
    return str(body).encode()


# --- the Python runtime ---------------------------------------------------------------------

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
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
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
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> InvocationResult:
    """Run `module.function` as the AWS Lambda Python runtime would, in this process.

    The handler sees exactly its function's `environment`, the variables Lambda sets, and the
    inherited process variables listed in `_INHERITED` (credentials, endpoint, interpreter).
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
    with _RUNTIME_LOCK, _invocation_environment(variables):
        started = time.monotonic()
        context = LambdaContext(
            function_name=function_name,
            function_version="$LATEST",
            invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
            memory_limit_in_mb=memory_mb,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{function_name}",
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
    """One deployed function as the local runtime runs it: handler, exact environment, limits.

    It is an `Invoker`: called with the invocation payload, it runs the handler in the calling
    process with `invoke_handler` (picklable, so the local runtime can send it to a worker).
    """

    function_name: str
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    region: str = "us-east-1"
    account_id: str = DEFAULT_ACCOUNT_ID

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
        )


def handler_invoker(
    handler: str,
    environment: Mapping[str, str],
    *,
    function_name: str,
    memory_mb: int,
    timeout_s: int,
    region: str = "us-east-1",
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> Invoker:
    """An `Invoker` that runs `handler` in this process with `invoke_handler`."""
    return LocalFunction(
        function_name, handler, dict(environment), memory_mb, timeout_s, region, account_id
    )


def pipeline_functions(
    config: PipelineConfig, *, account_id: str = DEFAULT_ACCOUNT_ID
) -> dict[str, LocalFunction]:
    """One environment's five functions, by physical name, each with exactly the environment
    `stacks.spec.function_environment` gives it."""
    names = spec.names(config, account_id)
    state_machine_arn = (
        f"arn:aws:states:{config.region}:{account_id}:stateMachine:{names.state_machine}"
    )
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
    config: PipelineConfig, *, account_id: str = DEFAULT_ACCOUNT_ID
) -> dict[str, Invoker]:
    """In-process invokers of one environment's five functions, by physical function name."""
    return dict(pipeline_functions(config, account_id=account_id))
