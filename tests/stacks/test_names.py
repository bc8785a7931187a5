"""Physical names: within every AWS limit at the longest allowed tenant and environment, and
never shared between two environments."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacks import spec
from stacks.config import ENVIRONMENT_PATTERN, TENANT_PATTERN, PipelineConfig
from tests.stacks.conftest import PANDAS_LAYER
from tests.stacks.mocks import (
    ACCOUNT_ID,
    BUCKET,
    EVENT_RULE,
    FUNCTION,
    LOG_GROUP,
    QUEUE,
    ROLE,
    ROLE_POLICY,
    STATE_MACHINE,
    TABLE,
    deploy,
)

LONGEST = [
    PipelineConfig(tenant="a" * 20, environment="b" * 12, pandas_layer_arn=PANDAS_LAYER),
    PipelineConfig(
        tenant="z" + "9" * 19,
        environment="e" + "-" * 10 + "z",
        region="ap-southeast-2",
        pandas_layer_arn=PANDAS_LAYER,
    ),
]

# AWS naming rules, from each service's API reference.
LAMBDA_FUNCTION = re.compile(r"[A-Za-z0-9_-]{1,64}")
IAM_ROLE = re.compile(r"[\w+=,.@-]{1,64}")
IAM_INLINE_POLICY = re.compile(r"[\w+=,.@-]{1,128}")
SQS_QUEUE = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")  # 80 characters, ".fifo" included
EVENTBRIDGE_RULE = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
STATE_MACHINE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
DYNAMODB_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
LOG_GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
# 3-63 lowercase letters, digits, hyphens (dots would break virtual-hosted TLS), starting and
# ending with a letter or digit.
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _assert_bucket_name(name: str) -> None:
    assert S3_BUCKET.fullmatch(name), name
    assert not name.startswith(S3_RESERVED_PREFIXES), name
    assert not name.endswith(S3_RESERVED_SUFFIXES), name
    assert not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)


@pytest.mark.parametrize("config", LONGEST, ids=["letters", "hyphens"])
def test_longest_names_fit_every_aws_limit(config: PipelineConfig) -> None:
    names = spec.names(config, ACCOUNT_ID)
    _assert_bucket_name(names.bucket)
    for name in names.functions.values():
        assert LAMBDA_FUNCTION.fullmatch(name), name
    for name in [*names.function_roles.values(), names.state_machine_role]:
        assert IAM_ROLE.fullmatch(name), name
    for name in [names.ingest_queue, names.ingest_dlq, *names.stage_dlqs.values()]:
        assert SQS_QUEUE.fullmatch(name), name
    assert EVENTBRIDGE_RULE.fullmatch(names.ingest_rule)
    assert STATE_MACHINE_NAME.fullmatch(names.state_machine)
    assert DYNAMODB_TABLE.fullmatch(names.status_table)
    for name in [
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
    ]:
        assert LOG_GROUP_NAME.fullmatch(name), name


@pytest.mark.parametrize("config", LONGEST, ids=["letters", "hyphens"])
def test_longest_deployed_names_fit_every_aws_limit(config: PipelineConfig) -> None:
    """The names the resources are given, role policies included, not only the spec's."""
    deployment = deploy(config)
    rules = {
        FUNCTION: LAMBDA_FUNCTION,
        ROLE: IAM_ROLE,
        ROLE_POLICY: IAM_INLINE_POLICY,
        QUEUE: SQS_QUEUE,
        EVENT_RULE: EVENTBRIDGE_RULE,
        STATE_MACHINE: STATE_MACHINE_NAME,
        TABLE: DYNAMODB_TABLE,
        LOG_GROUP: LOG_GROUP_NAME,
    }
    checked = 0
    for typ, rule in rules.items():
        for resource in deployment.of_type(typ):
            assert rule.fullmatch(resource.inputs["name"]), (typ, resource.inputs["name"])
            checked += 1
    assert checked == 5 + 6 + 6 + 5 + 1 + 1 + 1 + 7
    _assert_bucket_name(deployment.one(BUCKET).inputs["bucket"])


def _all_names(names: spec.PipelineNames) -> Iterator[str]:
    yield from (
        names.bucket,
        names.ingest_queue,
        names.ingest_dlq,
        *names.stage_dlqs.values(),
        names.status_table,
        names.state_machine,
        names.state_machine_role,
        *names.functions.values(),
        *names.function_roles.values(),
        names.ingest_rule,
        names.api,
        *names.function_log_groups.values(),
        names.state_machine_log_group,
        names.api_access_log_group,
    )


def test_names_within_one_environment_are_distinct() -> None:
    names = list(_all_names(spec.names(PipelineConfig(tenant="acme", environment="dev"), "1")))
    assert len(names) == len(set(names)) == 1 + 5 + 1 + 2 + 5 + 5 + 1 + 1 + 7


TENANTS = ["a", "ab", "a1", "b", "bc"]
ENVIRONMENTS = ["b", "c", "bc", "b-c", "c-d", "b-c-d", "d"]


def test_no_two_environments_share_a_name() -> None:
    owner: dict[str, tuple[str, str]] = {}
    for tenant, environment in itertools.product(TENANTS, ENVIRONMENTS):
        config = PipelineConfig(tenant=tenant, environment=environment)
        for name in _all_names(spec.names(config, ACCOUNT_ID)):
            assert owner.setdefault(name, (tenant, environment)) == (tenant, environment), name


@settings(max_examples=300, deadline=None, database=None)
@given(
    first=st.tuples(
        st.from_regex(TENANT_PATTERN, fullmatch=True),
        st.from_regex(ENVIRONMENT_PATTERN, fullmatch=True),
    ),
    second=st.tuples(
        st.from_regex(TENANT_PATTERN, fullmatch=True),
        st.from_regex(ENVIRONMENT_PATTERN, fullmatch=True),
    ),
)
def test_distinct_environments_never_collide(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    one = set(_all_names(spec.names(PipelineConfig(tenant=first[0], environment=first[1]), "1")))
    other = set(
        _all_names(spec.names(PipelineConfig(tenant=second[0], environment=second[1]), "1"))
    )
    if first == second:
        assert one == other
    else:
        assert one.isdisjoint(other)


def test_bucket_suffix_differs_by_account_and_region() -> None:
    config = PipelineConfig(tenant="acme", environment="dev")
    other_region = PipelineConfig(tenant="acme", environment="dev", region="eu-west-1")
    buckets = {
        spec.names(config, "111111111111").bucket,
        spec.names(config, "222222222222").bucket,
        spec.names(other_region, "111111111111").bucket,
    }
    assert len(buckets) == 3
    assert all(bucket.startswith("p-acme-dev-") for bucket in buckets)
