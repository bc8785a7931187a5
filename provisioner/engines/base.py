"""The engine interface: what the operation runner asks of an engine, and what it gets back.

An engine runs inside a worker process (never on the request path or the event loop): the
runner builds it there with `Engine.build(settings)`, calls `run` once, and forwards every event
the engine emits to the registry and the SSE stream. Engines report failures by raising
`provisioner.errors.EngineError` subclasses whose `detail` is safe to show to users.

Some engines also keep state in the service's own process (the local engine hosts its emulator
and its handlers there): that half is an `EngineHost`, used only by the main process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3

from provisioner.engines.aws import resolve_aws_credentials, session_for
from stacks.config import PipelineConfig

if TYPE_CHECKING:
    from provisioner.config import Settings


class OperationKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    REFRESH = "refresh"
    PREVIEW = "preview"


class EventType(StrEnum):
    STARTED = "operation.started"
    RESOURCE_STARTED = "resource.started"
    RESOURCE_FINISHED = "resource.finished"
    RESOURCE_FAILED = "resource.failed"
    DIAGNOSTIC = "diagnostic"
    SUMMARY = "summary"
    FINISHED = "operation.finished"


@dataclass(frozen=True)
class EngineEvent:
    """One progress event. `message` is one human line; nothing here may carry a secret."""

    type: EventType
    message: str
    resource: str | None = None  # logical name or URN
    resource_type: str | None = None  # e.g. aws:s3/bucketV2:BucketV2
    step: str | None = None  # create / update / delete / same / refresh / replace …
    severity: str | None = None  # for diagnostics: debug / info / warning / error
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperationRequest:
    operation_id: str
    kind: OperationKind
    config: PipelineConfig
    # The environment's previous operation was interrupted (crash, kill, timeout): the engine
    # must first recover the stack (pulumi: refresh with clear_pending_creates).
    recover: bool = False


@dataclass(frozen=True)
class OperationResult:
    # Stack outputs (DESIGN §2), all strings. Empty after destroy and preview.
    outputs: dict[str, str] = field(default_factory=dict)
    # Change counts by step (create / update / delete / same …), e.g. a preview's plan or the
    # drift a refresh found.
    changes: dict[str, int] = field(default_factory=dict)


class OperationContext(Protocol):
    """What the runner gives an engine for one operation (in the worker process)."""

    @property
    def cancel_requested(self) -> threading.Event:
        """Set when the user cancels or the operation times out: stop gracefully, then raise
        `OperationCancelledError`."""
        ...

    def emit(self, event: EngineEvent) -> None:
        """Record an event (persisted in order, streamed over SSE)."""
        ...

    def expect_resources(self, count: int) -> None:
        """Set the progress denominator: resource events expected in this operation."""
        ...


@dataclass(frozen=True)
class EngineHealth:
    available: bool
    detail: str  # e.g. "pulumi v3.190.0" or "Pulumi CLI not found on PATH"


class Engine(Protocol):
    """Worker-side engine. Built afresh in each worker process."""

    name: str

    @classmethod
    def build(cls, settings: Settings) -> Engine: ...

    def run(self, request: OperationRequest, context: OperationContext) -> OperationResult:
        """Carry out one operation; raise an `EngineError` subclass on failure."""
        ...

    def health(self) -> EngineHealth: ...


class EngineHost(Protocol):
    """Main-process half of an engine (optional): lives as long as the service.

    Blocking methods; the service calls them from threads, never on the event loop.
    """

    # True when the engine's infrastructure does not survive a restart of the service (the
    # local emulator): the service then re-creates the environments that were READY.
    ephemeral: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> EngineHealth: ...

    def before_operation(self, request: OperationRequest) -> None:
        """Called just before a worker starts the operation."""
        ...

    def after_operation(
        self, request: OperationRequest, succeeded: bool, outputs: Mapping[str, str]
    ) -> None:
        """Called once the operation has finished and its result is recorded."""
        ...

    def environment_extras(self) -> dict[str, str]:
        """Extra fields for the environment JSON (e.g. the local emulator's endpoint)."""
        ...

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        """How the service reaches an environment's AWS resources (file status, DLQs)."""
        ...


@dataclass(frozen=True)
class DataPlaneAccess:
    session: boto3.Session
    endpoint_url: str | None = None  # the local emulator; None for real AWS
    # S3 events as this data plane's queues hold them carry the object key raw (the emulator)
    # rather than URL-encoded (AWS); see provisioner.emulator.event_source.
    raw_event_keys: bool = False
    # boto3 clients are thread-safe and slow to build: one per service, made on first use.
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _clients_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(  # type: ignore[call-overload]
                    service, endpoint_url=self.endpoint_url
                )
            return self._clients[service]


# Data-plane credentials are reused for this long (assumed roles last at least 15 minutes).
_DATA_PLANE_REUSE_S: Final = 300.0


class WorkerOnlyHost:
    """The host of engines that keep nothing in the service process (the pulumi engine)."""

    ephemeral: bool = False

    def __init__(self, engine: type[Engine], settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._access: dict[tuple[str, str], tuple[float, DataPlaneAccess]] = {}
        self._access_lock = threading.Lock()

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def health(self) -> EngineHealth:
        return self._engine.build(self._settings).health()

    def before_operation(self, request: OperationRequest) -> None:
        return None

    def after_operation(
        self, request: OperationRequest, succeeded: bool, outputs: Mapping[str, str]
    ) -> None:
        return None

    def environment_extras(self) -> dict[str, str]:
        return {}

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        key = (tenant, region)
        with self._access_lock:
            cached = self._access.get(key)
            if cached is not None and time.monotonic() - cached[0] < _DATA_PLANE_REUSE_S:
                return cached[1]
        credentials = resolve_aws_credentials(self._settings, region, tenant, f"data-{tenant}")
        access = DataPlaneAccess(session_for(credentials, region))
        with self._access_lock:
            self._access[key] = (time.monotonic(), access)
        return access
