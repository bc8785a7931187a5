"""PipelineConfig: names, limits and tags are validated with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stacks.config import PipelineConfig


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.errors()}


def test_defaults_follow_the_design() -> None:
    config = PipelineConfig(tenant="acme", environment="dev")
    assert config.region == "us-east-1"
    assert config.memory_mb == 512
    assert config.stage_timeout_s == 300
    assert config.log_retention_days == 7
    assert config.glacier_after_days == 90
    assert config.status_ttl_days == 30
    assert config.api_rate_limit == 1000
    assert config.api_burst_limit == 2000
    assert config.max_bad_row_ratio == 0.01
    assert config.stack_name == "acme-dev"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "Acme"),
        ("tenant", "a-b"),  # hyphen would make "a-b"/"c" collide with "a"/"b-c"
        ("tenant", "1acme"),
        ("tenant", "a" * 21),
        ("tenant", ""),
        ("environment", "dev-"),
        ("environment", "-dev"),
        ("environment", "d" * 13),
        ("environment", "dev_1"),
        ("region", "mars"),
        ("memory_mb", 127),
        ("glacier_after_days", 10**23),
        ("status_ttl_days", 100_000_000_000),
        ("memory_mb", 10241),
        ("log_retention_days", 8),
        ("stage_timeout_s", 901),
        ("max_bad_row_ratio", 1.0),
        ("max_bad_row_ratio", -0.1),
        ("api_burst_limit", 10),  # below the rate limit
        ("tags", {"Tenant": "other"}),
        ("tags", {"aws:x": "y"}),
        ("tags", {"ok": "bad\x00value"}),
        ("tags", {f"key{index}": "v" for index in range(47)}),  # 46 + our 4 = AWS's 50
        ("tags", {"": "empty key"}),
        ("team", ""),
        ("glacier_after_days", 0),
        ("status_ttl_days", 0),
        ("api_rate_limit", 0),
        ("api_burst_limit", 5001),
        ("stage_timeout_s", 0),
        ("powertools_layer_arn", 3),
        ("pandas_layer_arn", "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python313"),
        ("pandas_layer_arn", "arn:aws:lambda:us-east-1:336392948345:layer:x:1\n"),
        ("pandas_layer_arn", " arn:aws:lambda:us-east-1:336392948345:layer:x:1"),
        ("alarm_email", "oncall"),
        ("alarm_email", "oncall@localhost"),
        ("alarm_email", "on call@example.com"),
        ("alarm_email", "oncall@example.com\n"),
        ("alarm_email", "a@b@example.com"),
        ("alarm_email", "x" * 250 + "@example.com"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    base: dict[str, object] = {"tenant": "acme", "environment": "dev", field: value}
    with pytest.raises(ValidationError) as caught:
        PipelineConfig.model_validate(base)
    assert field in _error_fields(caught.value)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        PipelineConfig.model_validate({"tenant": "acme", "environment": "dev", "colour": "red"})
    assert "colour" in _error_fields(caught.value)


def test_longest_names_are_accepted() -> None:
    config = PipelineConfig(tenant="a" * 20, environment="e" + "-" * 10 + "z")
    assert config.stack_name == "a" * 20 + "-e----------z"


def test_resource_tags_put_ours_first_and_keep_callers() -> None:
    config = PipelineConfig(tenant="acme", environment="dev", tags={"CostCenter": "42"})
    assert config.resource_tags() == {
        "Environment": "dev",
        "Team": "acme",
        "Tenant": "acme",
        "ManagedBy": "market-data-provisioner",
        "CostCenter": "42",
    }


_LAYER = (
    "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7"
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # A trailing newline passed `^…$` patterns; no engine can create or delete such names.
        ("tenant", "acme\n"),
        ("environment", "dev\n"),
        ("region", "us-east-1\n"),
        ("powertools_layer_arn", _LAYER + "\n"),
        ("team", "ops\n"),
        # Shaped like a region, but not one of the partition's.
        ("region", "xx-fake-1"),
        ("region", "us-east-99"),
        # Reserved keys and each other, case-insensitively (AWS: "Duplicate tag keys").
        ("tags", {"tenant": "x"}),
        ("tags", {"MANAGEDBY": "x"}),
        ("tags", {"CostCenter": "1", "costcenter": "2"}),
        ("tags", {"AWS:thing": "x"}),
        # AWS's tag characters: letters, digits, spaces and _ . : / = + - @ only.
        ("tags", {"tab\tkey": "v"}),
        ("tags", {"key": "new\nline"}),
        ("tags", {"key": "tab\tvalue"}),
        ("tags", {"key": "semi;colon"}),
        ("tags", {"k" * 129: "v"}),
        ("tags", {"key": "v" * 257}),
    ],
)
def test_values_no_engine_accepts_are_refused(field: str, value: object) -> None:
    base: dict[str, object] = {"tenant": "acme", "environment": "dev", field: value}
    with pytest.raises(ValidationError) as caught:
        PipelineConfig.model_validate(base)
    assert field in _error_fields(caught.value)


def test_real_regions_and_tag_characters_are_accepted() -> None:
    config = PipelineConfig(
        tenant="acme",
        environment="dev",
        region="eu-west-2",
        powertools_layer_arn=_LAYER,
        tags={"Cost Center": "a_b.c:d/e=f+g-h@i", "Ünïcode": "日本", "k" * 128: "v" * 256},
    )
    assert config.region == "eu-west-2"


def test_an_alarm_email_is_kept_and_optional() -> None:
    assert PipelineConfig(tenant="acme", environment="dev").alarm_email is None
    config = PipelineConfig(tenant="acme", environment="dev", alarm_email="oncall@acme.example")
    assert config.settings().alarm_email == "oncall@acme.example"
