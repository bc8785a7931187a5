"""The host of engines that keep nothing in the service's process (the pulumi engine)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Final

from provisioner.config import Settings
from provisioner.engines.aws import DataPlaneAccess, resolve_aws_credentials, session_for
from provisioner.engines.base import (
    Engine,
    EngineHealth,
    OperationRequest,
    StatusApiReply,
    StatusApiRequest,
)
from provisioner.errors import EngineError, NotFoundError
from stacks.config import PipelineConfig

_DATA_PLANE_REUSE_S: Final = 300.0
# A failed resolution (no credentials, a refused AssumeRole) is remembered for a while too: the
# health sampler asks for every environment each round, and each attempt can cost a trip to
# STS or the instance-metadata endpoint. Short, so that credentials once fixed are soon used.
_DATA_PLANE_FAILURE_REUSE_S: Final = 30.0


class WorkerOnlyHost:
    """The host of engines that keep nothing in the service process (the pulumi engine)."""

    ephemeral: bool = False

    def __init__(self, engine: type[Engine], settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._access: dict[tuple[str, str], tuple[float, DataPlaneAccess | EngineError]] = {}
        self._access_lock = threading.Lock()

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def restore(self, configs: Sequence[PipelineConfig]) -> dict[str, str]:
        return {}  # nothing lives in the service: nothing to bring back

    def health(self) -> EngineHealth:
        return self._engine.build(self._settings).health()

    def before_operation(self, request: OperationRequest) -> None:
        return None

    def worker_settings(self, settings: Settings) -> Settings:
        return settings

    def after_operation(
        self, request: OperationRequest, succeeded: bool, outputs: Mapping[str, str]
    ) -> None:
        return None

    def environment_extras(self) -> dict[str, str]:
        return {}

    def evaluate_alarms(self, config: PipelineConfig) -> None:
        return None  # CloudWatch evaluates the alarms of an environment on AWS

    def serve_status_api(self, config: PipelineConfig, request: StatusApiRequest) -> StatusApiReply:
        raise NotFoundError("the local status API exists only with the local engine")

    def data_plane(self, tenant: str, region: str) -> DataPlaneAccess:
        key = (tenant, region)
        with self._access_lock:
            cached = self._access.get(key)
        if cached is not None:
            resolved_at, outcome = cached
            age = time.monotonic() - resolved_at
            if isinstance(outcome, EngineError):
                if age < _DATA_PLANE_FAILURE_REUSE_S:
                    # A new instance each time: re-raising one would grow its traceback.
                    raise type(outcome)(outcome.detail)
            elif age < _DATA_PLANE_REUSE_S:
                return outcome
        try:
            credentials = resolve_aws_credentials(self._settings, region, tenant, f"data-{tenant}")
        except EngineError as error:
            with self._access_lock:
                self._access[key] = (time.monotonic(), error)
            raise
        access = DataPlaneAccess(session_for(credentials, region))
        with self._access_lock:
            self._access[key] = (time.monotonic(), access)
        return access
