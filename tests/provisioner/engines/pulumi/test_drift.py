"""The pulumi engine's drift at the Automation API boundary: the resource steps of a refresh, as
the CLI's event log carries them (JSON → `auto.EngineEvent.from_json`), become `ResourceDrift`s."""

from __future__ import annotations

from typing import Any

import pulumi.automation as auto
import pytest

from provisioner.config import Settings
from provisioner.engines.base import OperationKind, ResourceDrift
from provisioner.engines.pulumi.drift import resource_drift
from provisioner.engines.pulumi.engine import PulumiEngine
from stacks.config import PipelineConfig
from tests.provisioner.engines.conftest import (
    FakeAutomation,
    RecordingContext,
    request,
    urn,
)

QUEUE = "aws:sqs/queue:Queue"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"


def state(name: str, type_: str, outputs: dict[str, Any], *, custom: bool = True) -> dict[str, Any]:
    return {
        "type": type_,
        "urn": urn(name, type_),
        "id": name,
        "parent": "",
        "provider": "",
        "custom": custom,
        "outputs": outputs,
    }


def refresh_step(
    name: str,
    type_: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    op: str = "refresh",
    custom: bool = True,
    **diff: Any,
) -> auto.EngineEvent:
    """A `resOutputsEvent` of a refresh, in the CLI's own JSON spelling."""
    metadata: dict[str, Any] = {"op": op, "urn": urn(name, type_), "type": type_, "provider": ""}
    if old is not None:
        metadata["old"] = state(name, type_, old, custom=custom)
    if new is not None:
        metadata["new"] = state(name, type_, new, custom=custom)
    metadata.update(diff)
    return auto.EngineEvent.from_json(
        {"sequence": 1, "timestamp": 0, "resOutputsEvent": {"metadata": metadata}}
    )


def drift_of(event: auto.EngineEvent) -> ResourceDrift | None:
    assert event.res_outputs_event is not None
    return resource_drift(event.res_outputs_event.metadata)


def test_an_unchanged_resource_is_no_drift() -> None:
    same = {"visibilityTimeoutSeconds": 180, "tags": {"a": "b"}}
    assert drift_of(refresh_step("ingest", QUEUE, same, dict(same))) is None
    assert drift_of(refresh_step("ingest", QUEUE, same, dict(same), op="same")) is None


def test_the_engines_diff_names_the_attributes() -> None:
    event = refresh_step(
        "ingest",
        QUEUE,
        {"visibilityTimeoutSeconds": 180},
        {"visibilityTimeoutSeconds": 7},
        diffs=["visibilityTimeoutSeconds"],
        detailedDiff={
            "visibilityTimeoutSeconds": {"diffKind": "update", "inputDiff": False},
            "tags.Owner": {"diffKind": "delete", "inputDiff": False},
        },
    )
    assert drift_of(event) == ResourceDrift(
        urn("ingest", QUEUE), QUEUE, "update", ("tags", "visibilityTimeoutSeconds")
    )


def test_without_a_diff_the_outputs_are_compared() -> None:
    event = refresh_step(
        "ingest-log",
        LOG_GROUP,
        {"name": "/aws/lambda/x", "retentionInDays": 30},
        {"name": "/aws/lambda/x", "retentionInDays": 0},
    )
    assert drift_of(event) == ResourceDrift(
        urn("ingest-log", LOG_GROUP), LOG_GROUP, "update", ("retentionInDays",)
    )


@pytest.mark.parametrize("op", ["refresh", "delete"])
def test_a_resource_gone_from_aws_is_to_be_recreated(op: str) -> None:
    event = refresh_step("data", BUCKET, {"bucket": "data"}, None, op=op)
    assert drift_of(event) == ResourceDrift(urn("data", BUCKET), BUCKET, "create")


def test_providers_and_components_are_not_drift() -> None:
    provider = refresh_step("default", "pulumi:providers:aws", {"region": "a"}, {"region": "b"})
    component = refresh_step("pipeline", "mdp:pipeline:Pipeline", {"x": 1}, {"x": 2}, custom=False)
    assert drift_of(provider) is None
    assert drift_of(component) is None


def test_refresh_returns_the_drift_of_its_resource_steps(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.changes = {"update": 1, "delete": 1, "same": 38}
    automation.events = [
        refresh_step(
            "ingest", QUEUE, {"visibilityTimeoutSeconds": 180}, {"visibilityTimeoutSeconds": 7}
        ),
        refresh_step("data", BUCKET, {"bucket": "data"}, None),
        refresh_step("status", "aws:dynamodb/table:Table", {"name": "s"}, {"name": "s"}),
    ]

    result = PulumiEngine.build(settings).run(request(OperationKind.REFRESH, config), context)

    assert result.changes == {"update": 1, "delete": 1, "same": 38}
    assert result.drift == [
        ResourceDrift(urn("ingest", QUEUE), QUEUE, "update", ("visibilityTimeoutSeconds",)),
        ResourceDrift(urn("data", BUCKET), BUCKET, "create"),
    ]


def test_a_drift_check_previews_the_refresh_and_writes_nothing(
    settings: Settings,
    config: PipelineConfig,
    context: RecordingContext,
    automation: FakeAutomation,
) -> None:
    automation.changes = {"update": 1, "same": 39}
    automation.events = [
        refresh_step(
            "ingest",
            QUEUE,
            {"visibilityTimeoutSeconds": 180},
            {"visibilityTimeoutSeconds": 7},
            diffs=["visibilityTimeoutSeconds"],
        ),
    ]

    result = PulumiEngine.build(settings).run(request(OperationKind.DRIFT_CHECK, config), context)

    # `refresh --preview-only`: the stack's record stays as it was (no refresh, no up).
    assert automation.methods() == ["set_config", "preview_refresh"]
    assert automation.call("preview_refresh").kwargs["show_secrets"] is False
    assert result.changes == {"update": 1, "same": 39}
    assert result.drift == [
        ResourceDrift(urn("ingest", QUEUE), QUEUE, "update", ("visibilityTimeoutSeconds",))
    ]
    assert result.outputs == {}
