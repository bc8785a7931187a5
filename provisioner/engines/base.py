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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from stacks.config import PipelineConfig

if TYPE_CHECKING:
    from provisioner.config import Settings


class OperationKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    REFRESH = "refresh"
    PREVIEW = "preview"
    # A scheduled drift check (docs/architecture.md §8): like refresh, but it writes nothing,
    # not even the engine's own record of the stack (pulumi: a preview of the refresh).
    DRIFT_CHECK = "drift-check"


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


# What restoring a drifted resource's declared state takes (docs/architecture.md §8).
DRIFT_KINDS = ("update", "create", "delete")


@dataclass(frozen=True)
class ResourceDrift:
    """One resource that is not as the environment declares it: what a drift check found.

    `kind` is what restoring the declared state does to it: `update` (it differs: the
    `attributes` that do), `create` (it is gone), `delete` (it should not be there).
    """

    resource: str  # physical name (local) or URN (pulumi)
    type: str  # the resource model's type token, e.g. aws:sqs/queue:Queue
    kind: str
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperationResult:
    # Stack outputs (docs/architecture.md §2), all strings. Empty after destroy and preview.
    outputs: dict[str, str] = field(default_factory=dict)
    # Change counts by step (create / update / delete / same …), e.g. a preview's plan or the
    # drift a refresh found.
    changes: dict[str, int] = field(default_factory=dict)
    # A drift check's (refresh's) findings, resource by resource; None: nothing was checked.
    drift: list[ResourceDrift] | None = None


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

    # True when the engine's infrastructure lives in the service's process (the local
    # emulator): after a restart the service asks `restore` for the environments that were
    # READY and re-creates those it could not bring back.
    ephemeral: bool

    def start(self) -> None: ...

    def restore(self, configs: Sequence[PipelineConfig]) -> dict[str, str]:
        """Bring back, after a restart, the environments that were READY (an ephemeral host);
        returns, by stack name, why some could not be."""
        ...

    def stop(self) -> None: ...

    def health(self) -> EngineHealth: ...

    def before_operation(self, request: OperationRequest) -> None:
        """Called just before a worker starts the operation."""
        ...

    def worker_settings(self, settings: Settings) -> Settings:
        """The settings an operation's worker runs with (the local host points its engine at
        the emulator's internal listener)."""
        ...

    def after_operation(
        self, request: OperationRequest, succeeded: bool, outputs: Mapping[str, str]
    ) -> None:
        """Called once the operation has finished and its result is recorded."""
        ...

    def environment_extras(self) -> dict[str, str]:
        """Extra fields for the environment JSON (e.g. the local emulator's endpoint)."""
        ...

    def data_plane(self, tenant: str, region: str) -> DataPlane:
        """How the service reaches an environment's AWS resources (file status, DLQs)."""
        ...

    def evaluate_alarms(self, config: PipelineConfig) -> None:
        """Bring the environment's alarm states up to date where nothing else does: the local
        engine evaluates them in its emulator; on AWS CloudWatch does, and this does nothing."""
        ...

    def serve_status_api(self, config: PipelineConfig, request: StatusApiRequest) -> StatusApiReply:
        """Answer a request to the environment's status API, where the service serves it.

        Only the local engine does (the emulator has no API Gateway); others raise
        `NotFoundError`, their status API being API Gateway itself.
        """
        ...


class DataPlane(Protocol):
    """Clients for one tenant's AWS resources in one region (the real account or the emulator)."""

    @property
    def raw_event_keys(self) -> bool:
        """S3 events in this data plane's queues carry the object key raw (the emulator) rather
        than URL-encoded (AWS); see provisioner.emulator.event_source."""
        ...

    def client(self, service: str) -> Any: ...

    def durable(self) -> None:
        """Return once what this data plane's clients wrote survives a crash of the service
        (the local emulator's snapshot); call it before acknowledging such a write. Raises
        UnavailableError when it cannot be made so."""
        ...


@dataclass(frozen=True)
class StatusApiRequest:
    """A GET to an environment's status API, below its stage (e.g. `/files`)."""

    path: str
    query: Mapping[str, list[str]]
    # Without `Authorization`: the caller's API key is the service's, not the function's.
    headers: Mapping[str, str]
    source_ip: str


@dataclass(frozen=True)
class StatusApiReply:
    status_code: int
    headers: dict[str, str]
    body: str
