"""The engine's inline program, run for real under Pulumi's mocks (no CLI, no AWS)."""

from __future__ import annotations

import pytest

from provisioner.engines.pulumi.automation import inline_program
from stacks.config import PipelineConfig
from stacks.program import STACK_OUTPUTS, expected_resource_count
from tests.stacks.conftest import PANDAS_LAYER
from tests.stacks.mocks import STACK_TYPE, deploy

CONFIGS = [
    PipelineConfig(tenant="acme", environment="dev", pandas_layer_arn=PANDAS_LAYER),
    PipelineConfig(
        tenant="globex", environment="prod-eu", region="eu-west-1", pandas_layer_arn=PANDAS_LAYER
    ),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.stack_name)
def test_program_exports_the_fourteen_contract_outputs(config: PipelineConfig) -> None:
    deployment = deploy(config, inline_program(config))

    assert len(STACK_OUTPUTS) == 15
    assert set(deployment.exports) == set(STACK_OUTPUTS)
    for name, value in deployment.exports.items():
        assert isinstance(value, str), name
        assert value, name
    assert deployment.exports["apiEndpoint"].startswith("https://")
    assert f".{config.region}." in deployment.exports["apiEndpoint"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.stack_name)
def test_progress_denominator_counts_what_an_up_registers(config: PipelineConfig) -> None:
    deployment = deploy(config, inline_program(config))

    registered = len(deployment.resources) + 1  # the root stack is kept apart
    assert deployment.stack.type == STACK_TYPE
    assert expected_resource_count(config) == registered
