"""The local engine (the embedded default): pipelines in an AWS emulator, running for real.

The service starts moto's server on loopback (`PROVISIONER_LOCAL_AWS_PORT`) and installs the
Lambda dispatcher (`host.LocalHost`, in the service's process). Operations (`LocalEngine`, in worker
processes like every engine's) apply `stacks.spec` to the emulator with boto3: the same names,
settings, policies and state machine as the Pulumi program. Once an environment exists its
`EnvironmentRuntime` runs its handlers and ingest poller, and the service serves its status
API at `apiEndpoint` (`/local/{tenant}/{name}/prod`).

The emulator's state is saved under `DATA_DIR/emulator` (`provisioner.emulator.persistence`):
when the service restarts, the environments that were READY come back from the snapshot
(`host.LocalHost.restore`); those it does not hold are re-created empty (see
`provisioner.environments.service.restore_ephemeral_environments`); others stay FAILED until
retried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

import moto
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from provisioner.config import LOCAL_API_PREFIX, Settings
from provisioner.emulator.apply import (
    AwsClients,
    Phase,
    ResourceProgress,
    apply_pipeline,
    destroy_pipeline,
    plan_pipeline,
    planned_resources,
)
from provisioner.engines.base import (
    DRIFT_KINDS,
    EngineEvent,
    EngineHealth,
    EventType,
    OperationContext,
    OperationKind,
    OperationRequest,
    OperationResult,
    ResourceDrift,
)
from provisioner.errors import EngineError
from stacks import spec
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

_EVENT_TYPES: Final = {
    Phase.STARTED: EventType.RESOURCE_STARTED,
    Phase.FINISHED: EventType.RESOURCE_FINISHED,
    Phase.FAILED: EventType.RESOURCE_FAILED,
}


def engine_event(progress: ResourceProgress) -> EngineEvent:
    """The applier's progress report as the engine event every engine emits."""
    return EngineEvent(
        type=_EVENT_TYPES[progress.phase],
        message=progress.message,
        resource=progress.resource,
        resource_type=progress.resource_type,
        step=progress.step,
        data={} if progress.changes is None else {"changes": list(progress.changes)},
    )


def emulator_url(settings: Settings) -> str:
    """Where the engine reaches the emulator: in a worker, its internal listener (the host's
    `worker_settings`), so an operation's requests are not each held for a snapshot."""
    host = settings.local_aws_host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.local_aws_port}"


def published_outputs(settings: Settings, outputs: Mapping[str, str]) -> dict[str, str]:
    """The outputs as users reach them: a URL on the emulator the engine used (the queues'; in
    a worker, the internal listener, whose port changes at every start) on the published one."""
    used = emulator_url(settings) + "/"
    published = (settings.local_published_endpoint or emulator_url(settings)).rstrip("/") + "/"
    return {
        name: published + value[len(used) :] if value.startswith(used) else value
        for name, value in outputs.items()
    }


def local_api_endpoint(settings: Settings, config: PipelineConfig) -> str:
    """The environment's status API base URL, served by this service (stage `prod`)."""
    environment = f"{config.tenant}/{config.environment}"
    return f"{settings.public_url}{LOCAL_API_PREFIX}/{environment}/{spec.API_STAGE}"


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
        drift: list[ResourceDrift] = []

        def on_event(progress: ResourceProgress) -> None:
            if progress.phase is Phase.FINISHED:
                steps[progress.step] += 1
                if progress.step in DRIFT_KINDS:
                    # The plan's step is what restoring the declared state does.
                    drift.append(
                        ResourceDrift(
                            progress.resource,
                            progress.resource_type,
                            progress.step,
                            progress.changes or (),
                        )
                    )
            context.emit(engine_event(progress))

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
            return OperationResult(
                outputs=published_outputs(self._settings, outputs), changes=dict(steps)
            )
        if kind == OperationKind.DESTROY:
            destroy_pipeline(config, clients, on_event=on_event, should_stop=should_stop)
            return OperationResult(changes=dict(steps))
        if kind == OperationKind.PREVIEW:
            changes = plan_pipeline(config, clients, on_event=on_event, should_stop=should_stop)
            return OperationResult(changes=changes)
        if kind in (OperationKind.REFRESH, OperationKind.DRIFT_CHECK):
            # A drift check: the plan against what the emulator holds; it writes nothing.
            changes = plan_pipeline(config, clients, on_event=on_event, should_stop=should_stop)
            return OperationResult(changes=changes, drift=drift)
        raise EngineError(f"the local engine cannot {kind}")
