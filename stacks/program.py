"""The inline Pulumi program of one environment, for the Automation API (`stacks.pipeline`).

Also what an engine needs to know about it without running it: its outputs and resource count.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from stacks.config import PipelineConfig
from stacks.pipeline import FilePipeline, FilePipelineArgs
from stacks.spec import STACK_OUTPUTS, inventory_counts

__all__ = ["STACK_OUTPUTS", "expected_resource_count", "pipeline_program"]

COMPONENT_NAME = "pipeline"
PROVIDER_NAME = "aws"
# The stack itself, the explicit AWS provider and the component, besides the component's children.
_FIXED_RESOURCES = 3


def expected_resource_count(config: PipelineConfig) -> int:
    """How many resources a `pulumi up` of `pipeline_program(config)` registers (the model's
    inventory for `config`: the e-mail subscription is optional)."""
    return _FIXED_RESOURCES + sum(inventory_counts(config).values())


def pipeline_program(config: PipelineConfig) -> Callable[[], None]:
    """The program for `pulumi.automation` (`create_or_select_stack(program=...)`)."""

    def program() -> None:
        # Explicit, so the region is the environment's, never the ambient AWS or stack config.
        provider = aws.Provider(PROVIDER_NAME, region=config.region)
        pipeline = FilePipeline(
            COMPONENT_NAME,
            FilePipelineArgs(config=config),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        for name, value in pipeline.stack_outputs.items():
            pulumi.export(name, value)

    return program
