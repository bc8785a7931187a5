"""The local engine's service-side half: the emulator server, the Lambda dispatcher, the
runtime workers every environment shares, and the running environments (their ingest pollers
and status APIs)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import boto3
import moto
import structlog
from botocore.config import Config

from provisioner.config import Settings
from provisioner.emulator import MOTO_ACCOUNT_ID, sqs_counts
from provisioner.emulator.alarm_evaluation import evaluate_alarms
from provisioner.emulator.apply import AwsClients
from provisioner.emulator.deployed_code import CODE_DIR, CodeCache
from provisioner.emulator.in_process import InProcessTransport
from provisioner.emulator.lambda_dispatch import (
    FunctionStats,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.persistence import EmulatorPersistence, RestoreOutcome
from provisioner.emulator.runtime import EnvironmentRuntime
from provisioner.emulator.runtime_workers import LOCAL_CREDENTIALS, RuntimeWorkers
from provisioner.emulator.server import INTERNAL_HOST, EmulatorServer
from provisioner.emulator.snapshot import SnapshotError, running_executions
from provisioner.emulator.step_functions import FastInterpreter
from provisioner.engines.aws import DataPlaneAccess
from provisioner.engines.base import (
    EngineHealth,
    OperationKind,
    OperationRequest,
    StatusApiReply,
    StatusApiRequest,
)
from provisioner.engines.local.recovery import redrive_interrupted
from provisioner.engines.local.status_api import proxy_reply, rest_proxy_event
from provisioner.errors import NotFoundError, UnavailableError
from stacks import spec
from stacks.config import PipelineConfig
from stacks.spec import FunctionName

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = structlog.get_logger(__name__)

EMULATOR_STATE_DIR: Final = "emulator"
# Every environment's poller long-polls through one client per region: a connection each.
_POLLER_CONNECTIONS: Final = 256
_WRITING_KINDS: Final = (OperationKind.CREATE, OperationKind.UPDATE, OperationKind.DESTROY)


class LocalHost:
    """Service-side half: the emulator server, the Lambda dispatcher, running environments."""

    # The emulator lives in this process: after a restart its environments come back from
    # the snapshot (`restore`), or are re-created.
    ephemeral: bool = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._server = EmulatorServer(settings.local_aws_host, settings.local_aws_port)
        self._persistence: EmulatorPersistence | None = None
        self._restored = RestoreOutcome(False, "the emulator has not started")
        self._dispatcher = LambdaDispatcher()
        self._runtimes: dict[str, EnvironmentRuntime] = {}
        self._data_planes: dict[str, DataPlaneAccess] = {}
        self._alarm_clients: dict[str, AwsClients] = {}
        self._poller_clients: dict[str, SQSClient] = {}
        self._workers: RuntimeWorkers | None = None
        # The service's own requests skip the internal listener's socket (`emulator.in_process`).
        self._transport: InProcessTransport | None = None
        self._interpreter: FastInterpreter | None = None
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        """The published endpoint (what users' clients name): writes answered once durable."""
        return self._server.endpoint_url

    @property
    def internal_endpoint_url(self) -> str:
        """The service's own endpoint (workers, pollers, the service's clients): not held."""
        return self._server.internal_endpoint_url

    def start(self) -> None:
        self._server.start()
        # moto's backends are process-wide: start from nothing, as a fresh process would,
        # then from the last snapshot, if there is a usable one.
        self._server.reset()
        self._persistence = EmulatorPersistence(
            self._settings.data_dir / EMULATOR_STATE_DIR,
            self._server.gate,
            self._settings.local_snapshot_interval_s,
        )
        self._restored = self._persistence.restore()
        self._dispatcher.install()
        self._transport = InProcessTransport(self._server.gate, self.internal_endpoint_url)
        self._interpreter = FastInterpreter(self._transport)
        self._interpreter.install()
        sqs_counts.install()
        self._workers = RuntimeWorkers(
            self._settings.local_runtime_workers or os.cpu_count() or 1,
            self.internal_endpoint_url,
            CodeCache(self._settings.data_dir / CODE_DIR),
        )
        self._persistence.start()
        # Only now: nothing a client writes can be overwritten by the restore.
        self._server.publish(self._persistence.wait_durable)
        log.info("local.emulator_ready", endpoint=self.endpoint_url, workers=self._workers.size)

    def durable(self) -> None:
        """Return once everything the emulator holds now is in a snapshot on disk: the service
        calls it before it acknowledges a write it made through its own clients."""
        persistence = self._persistence
        if persistence is None:
            raise UnavailableError("the local emulator is not running")
        try:
            persistence.wait_durable()
        except (TimeoutError, OSError, RuntimeError, SnapshotError) as error:
            log.warning("local.not_durable", error=str(error))
            raise UnavailableError("the emulator could not make the change durable") from None

    def worker_settings(self, settings: Settings) -> Settings:
        # An operation's worker is the service's own traffic: the internal listener, not held
        # per request; `after_operation` makes its writes durable before it is SUCCEEDED.
        return settings.model_copy(
            update={
                "local_aws_host": INTERNAL_HOST,
                "local_aws_port": self._server.internal_port,
                "local_published_endpoint": self.endpoint_url,
            }
        )

    @property
    def transport(self) -> InProcessTransport:
        if self._transport is None:
            raise RuntimeError("the local host is not started")
        return self._transport

    @property
    def workers(self) -> RuntimeWorkers:
        if self._workers is None:
            raise RuntimeError("the local host is not started")
        return self._workers

    def restore(self, configs: Sequence[PipelineConfig]) -> dict[str, str]:
        """Run again the environments that were READY, as the snapshot kept them; returns,
        by stack name, why the others cannot be (they are then re-created)."""
        lost: dict[str, str] = {}
        for config in configs:
            if not self._restored.restored:
                lost[config.stack_name] = str(self._restored.reason)
            elif not self._exists(config):
                lost[config.stack_name] = "the environment is not in the emulator's snapshot"
            else:
                self._start_runtime(config)
                clients = AwsClients.for_endpoint(self.internal_endpoint_url, region=config.region)
                redrive_interrupted(config, clients, self._restored.interrupted)
        return lost

    def stop(self) -> None:
        with self._lock:
            runtimes = list(self._runtimes.values())
            self._runtimes.clear()
        for runtime in runtimes:  # every poller's long poll ends at once, not one by one
            runtime.request_stop()
        # Drain: no new files; what runs finishes, so the last snapshot has nothing in flight.
        for runtime in runtimes:
            runtime.pause_intake()
        self._drain(self._settings.local_drain_timeout_s)
        for runtime in runtimes:
            runtime.stop()
        if self._persistence is not None:
            self._persistence.stop()
            self._persistence = None
        if self._workers is not None:
            self._workers.stop()
        if self._interpreter is not None:
            self._interpreter.uninstall()
            self._interpreter = None
        sqs_counts.uninstall()
        self._dispatcher.uninstall()
        self._server.stop()

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (running := running_executions()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running:
            # They are marked interrupted at the next start, and their files started again.
            log.warning("local.drain_timed_out", running_executions=running, timeout_s=timeout_s)

    def _exists(self, config: PipelineConfig) -> bool:
        clients = AwsClients.for_endpoint(self.internal_endpoint_url, region=config.region)
        arn = spec.pipeline_arns(config, MOTO_ACCOUNT_ID).state_machine
        try:
            clients.stepfunctions.describe_state_machine(stateMachineArn=arn)
            clients.sqs.get_queue_url(QueueName=spec.names(config, MOTO_ACCOUNT_ID).ingest_queue)
        except clients.stepfunctions.exceptions.StateMachineDoesNotExist:
            return False
        except clients.sqs.exceptions.QueueDoesNotExist:
            return False
        return True

    def health(self) -> EngineHealth:
        if not self._server.running or not self._server.healthy():
            return EngineHealth(False, "the AWS emulator does not answer")
        return EngineHealth(True, f"AWS emulator (moto {moto.__version__}) at {self.endpoint_url}")

    def before_operation(self, request: OperationRequest) -> None:
        if request.kind == OperationKind.DESTROY:
            self._stop_runtime(request.config.stack_name)

    def after_operation(
        self, request: OperationRequest, succeeded: bool, outputs: Mapping[str, str]
    ) -> None:
        if not succeeded or request.kind not in _WRITING_KINDS:
            return
        # Called before the operation is recorded SUCCEEDED: what it wrote survives a SIGKILL.
        self.durable()
        if request.kind == OperationKind.DESTROY:
            return
        # Invocations read the function as deployed, so an update needs no restart for its
        # code or settings; the poller restarts in case the queue was replaced.
        self._start_runtime(request.config)

    def _start_runtime(self, config: PipelineConfig) -> None:
        self._stop_runtime(config.stack_name)
        runtime = EnvironmentRuntime(
            config,
            self._dispatcher,
            self.workers.invoke,
            self._poller_client(config.region),
        )
        runtime.start()
        with self._lock:
            self._runtimes[config.stack_name] = runtime

    def environment_extras(self) -> dict[str, str]:
        return {"awsEndpointUrl": self.endpoint_url}

    def invocation_stats(self) -> dict[str, FunctionStats]:
        """Per-function invocation figures since the service started (bench/dataplane.py)."""
        return self._dispatcher.stats()

    def _poller_client(self, region: str) -> SQSClient:
        with self._lock:
            client = self._poller_clients.get(region)
            if client is None:
                client = self._local_session(region).client(
                    "sqs",
                    endpoint_url=self.internal_endpoint_url,
                    config=Config(
                        max_pool_connections=_POLLER_CONNECTIONS,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                )
                self._poller_clients[region] = client
            return client

    def _local_session(self, region: str) -> boto3.session.Session:
        """A session for the service's own clients of the emulator: sent in process, as to
        the internal listener."""
        return self.transport.session(
            region=region,
            access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        # One per region, kept: its clients are reused by every request.
        with self._lock:
            access = self._data_planes.get(region)
            if access is None:
                access = DataPlaneAccess(
                    self._local_session(region),
                    endpoint_url=self.internal_endpoint_url,
                    raw_event_keys=True,
                    wait_durable=self.durable,
                )
                self._data_planes[region] = access
            return access

    def evaluate_alarms(self, config: PipelineConfig) -> None:
        """Play CloudWatch: moto never evaluates alarms (`emulator.alarm_evaluation`)."""
        with self._lock:
            clients = self._alarm_clients.get(config.region)
            if clients is None:
                clients = AwsClients(
                    self._local_session(config.region),
                    region=config.region,
                    endpoint_url=self.internal_endpoint_url,
                )
                self._alarm_clients[config.region] = clients
        evaluate_alarms(clients, config, MOTO_ACCOUNT_ID, datetime.now(UTC))

    def serve_status_api(self, config: PipelineConfig, request: StatusApiRequest) -> StatusApiReply:
        """Play API Gateway for the environment's status API (see `status_api`)."""
        payload = json.dumps(rest_proxy_event(request, config.tenant)).encode()
        result = self.invoke(config, "status", payload)
        if not result.ok:
            raise UnavailableError(
                f"the status function failed: {result.error_type}: {result.error_message}"
            )
        return proxy_reply(result.value())

    def invoke(
        self, config: PipelineConfig, function: FunctionName, payload: bytes
    ) -> InvocationResult:
        """Invoke one of a running environment's functions (the local status API)."""
        with self._lock:
            runtime = self._runtimes.get(config.stack_name)
        if runtime is None:
            raise NotFoundError(
                f"environment {config.tenant}/{config.environment} is not running locally"
            )
        return runtime.invoke(spec.names(config, MOTO_ACCOUNT_ID).functions[function], payload)

    def _stop_runtime(self, stack_name: str) -> None:
        with self._lock:
            runtime = self._runtimes.pop(stack_name, None)
        if runtime is not None:
            runtime.stop()
