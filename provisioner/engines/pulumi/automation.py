"""The Automation API boundary: the inline program and the one call that opens a stack."""

from __future__ import annotations

import pulumi.automation as auto
import structlog

from stacks.config import PipelineConfig
from stacks.program import pipeline_program

logger = structlog.get_logger(__name__)


def inline_program(config: PipelineConfig) -> auto.PulumiFn:
    """The program every operation runs: the pipeline of `stacks.program`, for this config."""
    return pipeline_program(config)


def open_stack(
    stack_name: str,
    project_name: str,
    program: auto.PulumiFn,
    opts: auto.LocalWorkspaceOptions,
    *,
    create: bool,
) -> auto.Stack:
    """The one call into the Automation API's stack factories (tests replace it).

    `create` means create-or-select: a stack left behind by a failed earlier create is reused.
    """
    factory = auto.create_or_select_stack if create else auto.select_stack
    return factory(stack_name, project_name=project_name, program=program, opts=opts)
