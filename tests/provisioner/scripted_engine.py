"""A test-only engine whose speed and failures each test controls.

The script travels in the environment's tags (so it reaches the worker process with the
request): `script-resources`, `script-delay`, `script-fail-at`, `script-gate` (a file the
engine waits for before finishing), `script-ignore-cancel`, `script-say-file` (a file whose
text the engine emits as a diagnostic, e.g. to check that secrets in it are redacted),
`script-log` (a file each run appends to), `script-pid` (a file the worker writes its pid to),
`script-error-file` (a file whose text the engine fails with, e.g. an emulator's error page),
`script-fail-if` (a file whose existence makes the run fail, e.g. only the updates after a create),
`script-drift-file` (a JSON list of `ResourceDrift` fields a refresh reports; a create or update
removes it: it restored the declared state).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from provisioner.config import Settings
from provisioner.engines.base import (
    EngineEvent,
    EngineHealth,
    EventType,
    OperationContext,
    OperationKind,
    OperationRequest,
    OperationResult,
    ResourceDrift,
)
from provisioner.errors import EngineError, OperationCancelledError
from stacks.spec import STACK_OUTPUTS


class ScriptedEngine:
    name = "scripted"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def build(cls, settings: Settings) -> ScriptedEngine:
        return cls(settings)

    def health(self) -> EngineHealth:
        return EngineHealth(True, "scripted engine")

    def run(self, request: OperationRequest, context: OperationContext) -> OperationResult:
        script = request.config.tags
        resources = int(script.get("script-resources", "3"))
        delay = float(script.get("script-delay", "0"))
        fail_at = int(script.get("script-fail-at", "0"))
        gate = script.get("script-gate")
        ignore_cancel = script.get("script-ignore-cancel") == "1"
        if pid_file := script.get("script-pid"):
            Path(pid_file).write_text(str(os.getpid()))
        if log := script.get("script-log"):
            with Path(log).open("a") as handle:
                handle.write(json.dumps({"kind": request.kind, "recover": request.recover}) + "\n")
        if say := script.get("script-say-file"):
            context.emit(EngineEvent(EventType.DIAGNOSTIC, Path(say).read_text(), severity="info"))
        if error_file := script.get("script-error-file"):
            raise EngineError(Path(error_file).read_text())
        if (fail_if := script.get("script-fail-if")) and Path(fail_if).exists():
            raise EngineError(f"scripted failure: {fail_if} exists")
        context.expect_resources(resources)
        for index in range(1, resources + 1):
            if context.cancel_requested.is_set() and not ignore_cancel:
                raise OperationCancelledError(f"cancelled after {index - 1} resources")
            name = f"resource-{index}"
            context.emit(EngineEvent(EventType.RESOURCE_STARTED, f"{name} creating", resource=name))
            time.sleep(delay)
            if index == fail_at:
                context.emit(
                    EngineEvent(EventType.RESOURCE_FAILED, f"{name} failed", resource=name)
                )
                raise EngineError(f"{name} failed: scripted failure")
            context.emit(EngineEvent(EventType.RESOURCE_FINISHED, f"{name} created", resource=name))
        while gate and not Path(gate).exists():
            if context.cancel_requested.is_set() and not ignore_cancel:
                raise OperationCancelledError("cancelled while waiting")
            time.sleep(0.02)
        if request.kind == OperationKind.DESTROY:
            return OperationResult(changes={"delete": resources})
        if request.kind == OperationKind.PREVIEW:
            return OperationResult(changes={"same": resources})
        drift_file = Path(script["script-drift-file"]) if "script-drift-file" in script else None
        checks_drift = request.kind in (OperationKind.REFRESH, OperationKind.DRIFT_CHECK)
        if checks_drift and drift_file is not None:
            found = json.loads(drift_file.read_text()) if drift_file.exists() else []
            return OperationResult(
                changes={"update": len(found)},
                drift=[
                    ResourceDrift(d["resource"], d["type"], d["kind"], tuple(d["attributes"]))
                    for d in found
                ],
            )
        if drift_file is not None:
            drift_file.unlink(missing_ok=True)
        prefix = f"p-{request.config.tenant}-{request.config.environment}"
        return OperationResult(
            outputs={name: f"{prefix}:{name}" for name in STACK_OUTPUTS},
            changes={"create": resources},
        )
