"""Lambda in the emulator: moto's Lambda invocations dispatched to the local runtime.

moto runs no Lambda code here (no Docker). With `{"lambda": {"use_docker": False}}` every
invocation — the Lambda API's Invoke and Step Functions' `lambda:invoke` tasks alike — ends in
`moto.awslambda_simple.models.LambdaSimpleBackend.invoke`, which would answer a canned success.
`LambdaDispatcher.install()` replaces that one method, so an invocation reaches the invoker
registered for the function together with the function as moto holds it (`DeployedFunction`:
its configuration and its code archive), and a failure comes back the way Lambda reports it
(`X-Amz-Function-Error: Unhandled` and `{"errorType", "errorMessage", "stackTrace"}`), which is
what Step Functions' Retry and Catch match on. This module is the only place that patches moto's
Lambda and SQS (`step_functions` patches its Step Functions interpreter), and the only one that
reads moto's Lambda backend.

The Python runtime the invokers run (`invoke_handler`, `LocalFunction`) is
`provisioner.emulator.lambda_runtime`; the shared worker processes are `runtime_workers`.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Final

import structlog

logger = structlog.get_logger(__name__)

UNAVAILABLE_ERROR: Final = "LocalRuntimeUnavailable"

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


@dataclass(frozen=True)
class DeployedFunction:
    """A function as the emulator's Lambda service holds it: what was deployed, not what the
    service's own tree would deploy today."""

    name: str
    handler: str
    environment: Mapping[str, str]
    memory_mb: int
    timeout_s: int
    region: str
    account_id: str
    code_sha256: str  # hex digest of `code`
    code: bytes = field(repr=False, compare=False)

    @classmethod
    def of(cls, function: Any) -> DeployedFunction:
        """From moto's `LambdaFunction` (moto 5.2.x attribute names)."""
        return cls(
            name=function.function_name,
            handler=function.handler or "",
            environment=dict(function.environment_vars or {}),
            memory_mb=int(function.memory_size),
            timeout_s=int(function.timeout),
            region=function.region,
            account_id=function.account_id,
            code_sha256=function.code_digest,
            code=function.code_bytes,
        )


# An invoker receives the function as deployed and the invocation payload (the JSON event, as
# bytes) and never raises for a handler failure: it reports it in the result, as Lambda does.
Invoker = Callable[[DeployedFunction, bytes], InvocationResult]


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

    def invoke(
        self, function: str, payload: bytes, *, region: str, account_id: str
    ) -> InvocationResult:
        """Invoke a deployed function from this process, as moto's Invoke would but without
        the HTTP round trip (the event source poller, the local status API)."""
        from moto.awslambda.utils import get_backend

        backend = get_backend(account_id, region)
        return self.dispatch(DeployedFunction.of(backend.get_function(function, None)), payload)

    def dispatch(self, function: DeployedFunction, payload: bytes) -> InvocationResult:
        """Run one invocation; an unregistered function fails the way a broken runtime would."""
        name = function.name
        with self._lock:
            invoker = self._invokers.get(name)
        if invoker is None:
            logger.warning("emulator.lambda.unregistered", function=name)
            return InvocationResult.failure(
                UNAVAILABLE_ERROR, f"no local runtime is registered for function {name}"
            )
        started = time.monotonic()
        result = invoker(function, payload)
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
            result = dispatcher.dispatch(DeployedFunction.of(function), _as_bytes(body))
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
