"""The local engine (the embedded default): pipelines in an AWS emulator, running for real.

The service starts moto's server on loopback (`PROVISIONER_LOCAL_AWS_PORT`) and installs the
Lambda dispatcher (`LocalHost`, in the service's process). Operations (`LocalEngine`, in worker
processes like every engine's) apply `stacks.spec` to the emulator with boto3: the same names,
settings, policies and state machine as the Pulumi program. Once an environment exists its
`EnvironmentRuntime` runs its handlers and ingest poller, and the service serves its status
API at `apiEndpoint` (`/local/{tenant}/{name}/prod`).

The emulator keeps everything in memory: when the service restarts, every local environment
is gone. The service then re-creates, empty, each one that was READY (see
`provisioner.environments.recreate_ephemeral_environments`); others stay FAILED until retried.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Final

import boto3
import moto
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.config import Settings
from provisioner.emulator.apply import (
    AwsClients,
    apply_pipeline,
    destroy_pipeline,
    plan_pipeline,
    planned_resources,
)
from provisioner.emulator.lambda_dispatch import (
    DEFAULT_ACCOUNT_ID,
    FunctionStats,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.runtime import LOCAL_CREDENTIALS, EnvironmentRuntime
from provisioner.emulator.server import EmulatorServer
from provisioner.engines.base import (
    DataPlaneAccess,
    EngineEvent,
    EngineHealth,
    OperationContext,
    OperationKind,
    OperationRequest,
    OperationResult,
)
from provisioner.errors import EngineError, NotFoundError
from stacks import spec
from stacks.config import PipelineConfig
from stacks.spec import FunctionName

log = structlog.get_logger(__name__)

API_PREFIX: Final = "/local"


def emulator_url(settings: Settings) -> str:
    host = settings.local_aws_host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.local_aws_port}"


def local_api_endpoint(settings: Settings, config: PipelineConfig) -> str:
    """The environment's status API base URL, served by this service (stage `prod`)."""
    return f"{settings.public_url}{API_PREFIX}/{config.tenant}/{config.environment}/prod"


class LocalEngine:
    """Worker-side half: applies, plans and destroys environments in the emulator."""

    name: str = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @classmethod
    def build(cls, settings: Settings) -> LocalEngine:
        return cls(settings)

    def health(self) -> EngineHealth:
        try:
            AwsClients.for_endpoint(emulator_url(self._settings), region="us-east-1").account_id()
        except (BotoCoreError, ClientError) as error:
            return EngineHealth(False, f"AWS emulator not reachable ({type(error).__name__})")
        return EngineHealth(True, f"AWS emulator (moto {moto.__version__})")

    def run(self, request: OperationRequest, context: OperationContext) -> OperationResult:
        config = request.config
        clients = AwsClients.for_endpoint(emulator_url(self._settings), region=config.region)
        steps: Counter[str] = Counter()

        def on_event(event: EngineEvent) -> None:
            if event.step and event.type.startswith("resource.finished"):
                steps[event.step] += 1
            context.emit(event)

        def should_stop() -> bool:
            return context.cancel_requested.is_set()

        context.expect_resources(len(planned_resources(config)))
        kind = request.kind
        if kind in (OperationKind.CREATE, OperationKind.UPDATE):
            outputs = apply_pipeline(
                config,
                clients,
                api_endpoint=local_api_endpoint(self._settings, config),
                on_event=on_event,
                should_stop=should_stop,
            )
            return OperationResult(outputs=outputs, changes=dict(steps))
        if kind == OperationKind.DESTROY:
            destroy_pipeline(config, clients, on_event=on_event, should_stop=should_stop)
            return OperationResult(changes=dict(steps))
        if kind in (OperationKind.PREVIEW, OperationKind.REFRESH):
            changes = plan_pipeline(config, clients, on_event=on_event, should_stop=should_stop)
            return OperationResult(changes=changes)
        raise EngineError(f"the local engine cannot {kind}")


class LocalHost:
    """Service-side half: the emulator server, the Lambda dispatcher, running environments."""

    # The emulator keeps no state across restarts (see the module docstring).
    ephemeral: bool = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._server = EmulatorServer(settings.local_aws_host, settings.local_aws_port)
        self._dispatcher = LambdaDispatcher()
        self._runtimes: dict[str, EnvironmentRuntime] = {}
        self._data_planes: dict[str, DataPlaneAccess] = {}
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return self._server.endpoint_url

    def start(self) -> None:
        self._server.start()
        # moto's backends are process-wide: start from nothing, as a fresh process would.
        self._server.reset()
        self._dispatcher.install()
        log.info("local.emulator_ready", endpoint=self.endpoint_url)

    def stop(self) -> None:
        with self._lock:
            runtimes = list(self._runtimes.values())
            self._runtimes.clear()
        for runtime in runtimes:
            runtime.stop()
        self._dispatcher.uninstall()
        self._server.stop()

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
        if not succeeded or request.kind not in (OperationKind.CREATE, OperationKind.UPDATE):
            return
        # An update may change what the handlers read (e.g. the bad-row threshold): restart.
        self._stop_runtime(request.config.stack_name)
        runtime = EnvironmentRuntime(
            request.config,
            self.endpoint_url,
            self._dispatcher,
            self._settings.local_workers_per_environment,
        )
        runtime.start()
        with self._lock:
            self._runtimes[request.config.stack_name] = runtime

    def environment_extras(self) -> dict[str, str]:
        return {"awsEndpointUrl": self.endpoint_url}

    def invocation_stats(self) -> dict[str, FunctionStats]:
        """Per-function invocation figures since the service started (bench/dataplane.py)."""
        return self._dispatcher.stats()

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        # One per region, kept: its clients are reused by every request.
        with self._lock:
            access = self._data_planes.get(region)
            if access is None:
                session = boto3.Session(
                    aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    region_name=region,
                )
                access = DataPlaneAccess(
                    session, endpoint_url=self.endpoint_url, raw_event_keys=True
                )
                self._data_planes[region] = access
            return access

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
        return runtime.invoke(spec.names(config, DEFAULT_ACCOUNT_ID).functions[function], payload)

    def _stop_runtime(self, stack_name: str) -> None:
        with self._lock:
            runtime = self._runtimes.pop(stack_name, None)
        if runtime is not None:
            runtime.stop()
