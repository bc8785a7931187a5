"""Fixtures for the stack tests: configurations and mocked deployments of the pipeline program.

A mocked deployment takes well under a second, so each configuration is deployed once per
session (per xdist worker) and shared read-only.
"""

from __future__ import annotations

import pytest

from stacks.config import PipelineConfig
from tests.stacks.mocks import Deployment, deploy

CALLER_TAGS = {"CostCenter": "42", "Desk": "equities/eu"}
PANDAS_LAYER = "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python313:99"


@pytest.fixture(scope="session")
def config() -> PipelineConfig:
    """The defaults of docs/architecture.md §2, with caller tags (and an explicit pandas layer; the
    default, AWS's SSM public parameter, is tested in test_pipeline_functions)."""
    return PipelineConfig(
        tenant="acme", environment="dev", tags=CALLER_TAGS, pandas_layer_arn=PANDAS_LAYER
    )


@pytest.fixture(scope="session")
def custom_config() -> PipelineConfig:
    """Every tunable away from its default, in another region."""
    return PipelineConfig(
        tenant="globex",
        environment="stage-2",
        region="eu-west-1",
        team="quant",
        memory_mb=1024,
        stage_timeout_s=600,
        log_retention_days=14,
        glacier_after_days=30,
        status_ttl_days=7,
        api_rate_limit=250,
        api_burst_limit=400,
        max_bad_row_ratio=0.05,
        powertools_layer_arn="arn:aws:lambda:eu-west-1:111122223333:layer:powertools:3",
        pandas_layer_arn="arn:aws:lambda:eu-west-1:111122223333:layer:pandas:5",
        tags={"Owner": "ops"},
    )


@pytest.fixture(scope="session")
def deployment(config: PipelineConfig) -> Deployment:
    return deploy(config)


@pytest.fixture(scope="session")
def custom_deployment(custom_config: PipelineConfig) -> Deployment:
    return deploy(custom_config)
