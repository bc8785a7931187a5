"""Validator, processor and aggregator against moto S3/DynamoDB, fed the exact payloads the
state machine definition (stacks.state_machine) builds."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from handlers import aggregator, processor, validator
from handlers.core.errors import InvalidFileError, MalformedEventError, ObjectNotFoundError
from handlers.core.status_model import FileStatus
from handlers.core.status_store import StatusStore
from stacks.state_machine import StateMachineTargets, state_machine_definition
from tests.handlers.conftest import REGION, TABLE, LambdaContext, Uploaded

CSV = (
    "timestamp,symbol,price,size\n"
    "2024-03-01T09:30:00Z,ACME,10.50,100\n"
    "2024-03-01T09:30:01+01:00,ACME,11.00,300\n"
    "2024-03-01T09:30:02Z,ACME,10.00,100\n"
    "2024-03-01T09:30:00.5Z,BOLT.L,2,7\n"
)
Upload = Callable[[str, bytes], Uploaded]
UseEnv = Callable[..., dict[str, str]]

DEFINITION = state_machine_definition(
    StateMachineTargets(
        status_table=TABLE,
        functions={
            s: f"arn:aws:lambda:{REGION}:1:function:{s}"
            for s in ("validator", "processor", "aggregator")
        },  # fmt: skip
        stage_dlq_urls={
            s: f"https://sqs/{s}-dlq.fifo" for s in ("validator", "processor", "aggregator")
        },  # fmt: skip
    )
)


def _path(state: dict[str, Any], path: str) -> Any:
    value: Any = state
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def payload_for(task: str, state: dict[str, Any]) -> dict[str, Any]:
    """The Lambda payload the task state builds from the execution state (its "$.x" paths)."""
    template = DEFINITION["States"][task]["Parameters"]["Payload"]
    return {key.removesuffix(".$"): _path(state, path) for key, path in template.items()}


def store_result(task: str, state: dict[str, Any], output: dict[str, Any]) -> None:
    """ResultSelector {"result.$": "$.Payload"} then ResultPath, as the task state does."""
    spec = DEFINITION["States"][task]
    assert spec["ResultSelector"] == {"result.$": "$.Payload"}
    state[spec["ResultPath"].removeprefix("$.")] = {"result": json.loads(json.dumps(output))}


def run_pipeline(
    uploaded: Uploaded, function_env: UseEnv, context: LambdaContext
) -> dict[str, Any]:
    """Validate → Process → Aggregate, each with its own environment, as the machine chains them."""
    state: dict[str, Any] = {
        "fileId": uploaded.file_id,
        "bucket": uploaded.bucket,
        "objectKey": uploaded.key,
        "versionId": uploaded.version_id,
        "attempt": 1,
    }
    for task, function, handler in (
        ("Validate", "validator", validator.lambda_handler),
        ("Process", "processor", processor.lambda_handler),
        ("Aggregate", "aggregator", aggregator.lambda_handler),
    ):
        function_env(function)
        store_result(task, state, handler(payload_for(task, state), context))
    return state


def s3_json(bucket: str, key: str) -> Any:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"]
    return json.loads(body.read())


@pytest.fixture
def received(status_table: str) -> Callable[[Uploaded], None]:
    def record(uploaded: Uploaded) -> None:
        StatusStore(status_table).record_received(
            uploaded.file_id,
            bucket=uploaded.bucket,
            object_key=uploaded.key,
            version_id=uploaded.version_id,
        )

    return record


@pytest.fixture
def stats_through_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Statistics too large to pass inline (here: any), as with thousands of symbols."""
    monkeypatch.setattr(processor, "INLINE_STATS_BUDGET", 0)


def _work_objects(bucket: str) -> list[str]:
    """Every version and delete marker ever under work/: what the hand-off wrote to S3."""
    listed = boto3.client("s3", region_name=REGION).list_object_versions(
        Bucket=bucket, Prefix="work/"
    )
    return [v["Key"] for v in (*listed.get("Versions", []), *listed.get("DeleteMarkers", []))]


@pytest.mark.parametrize("hand_off", ["inline", "s3"])
def test_the_three_stages_publish_results_and_summary(
    hand_off: str,
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
    request: pytest.FixtureRequest,
) -> None:
    if hand_off == "s3":
        request.getfixturevalue("stats_through_s3")
    uploaded = upload("incoming/day 1/trades.csv", CSV.encode())
    received(uploaded)
    state = run_pipeline(uploaded, function_env, lambda_context)
    fid = uploaded.file_id

    assert state["validation"]["result"] == {"rows": 4, "rejectedRows": 0}
    processing = dict(state["processing"]["result"])
    handed = processing.pop("symbols") if hand_off == "inline" else None
    assert processing == {
        **({"statsKey": f"work/{fid}/stats.json"} if hand_off == "s3" else {}),
        "rows": 4,
        "rejectedRows": 0,
        "symbolCount": 2,
    }
    assert state["aggregation"]["result"] == {
        "resultKey": f"results/{fid}.json",
        "rows": 4,
        "rejectedRows": 0,
        "symbolCount": 2,
    }
    results = s3_json(uploaded.bucket, f"results/{fid}.json")
    assert results == {
        "fileId": fid,
        "objectKey": "incoming/day 1/trades.csv",
        "rows": 4,
        "rejectedRows": 0,
        "symbols": {
            "ACME": {
                "open": 11.0,  # 09:30:01+01:00 is 08:30:01Z, the earliest
                "high": 11.0,
                "low": 10.0,
                "close": 10.0,
                "volume": 500,
                "vwap": 10.7,  # (10.5·100 + 11·300 + 10·100) / 500
                "trades": 3,
                "firstTs": "2024-03-01T08:30:01Z",
                "lastTs": "2024-03-01T09:30:02Z",
            },
            "BOLT.L": {
                "open": 2.0,
                "high": 2.0,
                "low": 2.0,
                "close": 2.0,
                "volume": 7,
                "vwap": 2.0,
                "trades": 1,
                "firstTs": "2024-03-01T09:30:00.5Z",
                "lastTs": "2024-03-01T09:30:00.5Z",
            },
        },
    }
    item = StatusStore(TABLE).get(fid)
    assert item is not None
    assert item["rowCount"] == 4
    assert item["rejectedRows"] == 0
    assert item["symbolCount"] == 2
    assert item["resultKey"] == f"results/{fid}.json"
    assert item["symbols"] == results["symbols"]
    if hand_off == "inline":
        assert handed == results["symbols"]
        assert _work_objects(uploaded.bucket) == []  # no intermediate object, no round trips
    else:
        # the intermediate statistics are cleaned up
        with pytest.raises(ClientError, match="NoSuchKey"):
            boto3.client("s3", region_name=REGION).get_object(
                Bucket=uploaded.bucket, Key=f"work/{fid}/stats.json"
            )


def test_gzip_upload_with_bad_rows_under_the_threshold(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    rows = [f"2024-03-01T09:30:{i % 60:02d}Z,GZ,1.{i:03d},1" for i in range(990)]
    rows += ["2024-03-01T09:30:00Z,gz,1,1"] * 10
    body = gzip.compress(("timestamp,symbol,price,size\n" + "\n".join(rows)).encode())
    uploaded = upload("incoming/trades.csv.gz", body)
    received(uploaded)
    state = run_pipeline(uploaded, function_env, lambda_context)
    assert state["aggregation"]["result"]["rows"] == 990
    assert state["aggregation"]["result"]["rejectedRows"] == 10


def test_validator_threshold_comes_from_its_environment(
    upload: Upload, function_env: UseEnv, lambda_context: LambdaContext
) -> None:
    rows = [f"2024-03-01T09:30:00Z,AB,1.{i:02d},1" for i in range(95)] + ["x,AB,1,1"] * 5
    body = ("timestamp,symbol,price,size\n" + "\n".join(rows)).encode()
    uploaded = upload("incoming/t.csv", body)
    function_env("validator")  # the default 0.01
    with pytest.raises(InvalidFileError, match=r"too many bad rows: 5 of 100"):
        validator.lambda_handler(uploaded.stage_event(), lambda_context)
    function_env("validator", MAX_BAD_ROW_RATIO="0.05")
    assert validator.lambda_handler(uploaded.stage_event(), lambda_context) == {
        "rows": 95,
        "rejectedRows": 5,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty file"),
        (b"timestamp,symbol,price,size\n", "no data rows"),
        (b"date,ticker,px,qty\n2024-03-01,AB,1,1\n", "wrong header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    ],
)
def test_validator_rejects_invalid_files(
    upload: Upload,
    function_env: UseEnv,
    lambda_context: LambdaContext,
    body: bytes,
    reason: str,
) -> None:
    uploaded = upload("incoming/bad.csv", body)
    function_env("validator")
    with pytest.raises(InvalidFileError, match=reason) as caught:
        validator.lambda_handler(uploaded.stage_event(), lambda_context)
    # what the state machine records as the reason: short, and no file contents
    assert len(str(caught.value)) <= 1000
    assert "PNG" not in str(caught.value)


@pytest.mark.parametrize("handler_name", ["validator", "processor"])
def test_a_missing_object_version_is_object_not_found(
    upload: Upload, function_env: UseEnv, lambda_context: LambdaContext, handler_name: str
) -> None:
    uploaded = upload("incoming/gone.csv", CSV.encode())
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=uploaded.bucket, Key=uploaded.key, VersionId=uploaded.version_id
    )
    function_env(handler_name)
    event = uploaded.stage_event(validation={"result": {"rows": 4, "rejectedRows": 0}})
    handler = validator.lambda_handler if handler_name == "validator" else processor.lambda_handler
    with pytest.raises(ObjectNotFoundError, match="object version not found"):
        handler(event, lambda_context)


def test_reads_the_version_named_not_the_latest(
    upload: Upload, function_env: UseEnv, lambda_context: LambdaContext
) -> None:
    first = upload("incoming/t.csv", CSV.encode())
    upload("incoming/t.csv", b"not a csv at all")
    function_env("validator")
    assert validator.lambda_handler(first.stage_event(), lambda_context)["rows"] == 4


def test_other_s3_errors_propagate_for_the_state_machine_to_retry(
    function_env: UseEnv, lambda_context: LambdaContext, bucket: str
) -> None:
    function_env("validator")
    event = Uploaded("no-such-bucket-here", "incoming/t.csv", "v1").stage_event()
    with pytest.raises(ClientError) as caught:
        validator.lambda_handler(event, lambda_context)
    assert type(caught.value).__name__ != "ObjectNotFoundError"


@pytest.mark.usefixtures("stats_through_s3")
def test_aggregator_finishes_from_published_results_when_stats_are_gone(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    received(uploaded)
    state = run_pipeline(uploaded, function_env, lambda_context)
    # a retried Aggregate task after the first run published and cleaned up
    again = aggregator.lambda_handler(payload_for("Aggregate", state), lambda_context)
    assert again == state["aggregation"]["result"]


def test_a_retried_aggregator_publishes_inline_statistics_again(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    received(uploaded)
    state = run_pipeline(uploaded, function_env, lambda_context)
    key = state["aggregation"]["result"]["resultKey"]
    first = s3_json(uploaded.bucket, key)
    again = aggregator.lambda_handler(payload_for("Aggregate", state), lambda_context)
    assert again == state["aggregation"]["result"]
    assert s3_json(uploaded.bucket, key) == first


def test_aggregator_needs_symbols_or_a_stats_key(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    received(uploaded)
    function_env("aggregator")
    event = uploaded.stage_event(
        validation={"result": {"rows": 4, "rejectedRows": 0}},
        processing={"result": {"rows": 4, "rejectedRows": 0}},
    )
    with pytest.raises(MalformedEventError, match="neither symbols nor statsKey"):
        aggregator.lambda_handler(event, lambda_context)


def test_aggregator_without_stats_or_results_is_object_not_found(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    received(uploaded)
    function_env("aggregator")
    event = uploaded.stage_event(
        validation={"result": {"rows": 4, "rejectedRows": 0}},
        processing={"result": {"statsKey": "work/missing/stats.json", "rows": 4}},
    )
    with pytest.raises(ObjectNotFoundError, match="intermediate statistics not found"):
        aggregator.lambda_handler(event, lambda_context)


def test_aggregator_leaves_a_final_status_alone(
    upload: Upload,
    received: Callable[[Uploaded], None],
    function_env: UseEnv,
    lambda_context: LambdaContext,
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    received(uploaded)
    store = StatusStore(TABLE)
    store.fail(uploaded.file_id, stage="aggregator", error_type="X", message="superseded")
    state = run_pipeline(uploaded, function_env, lambda_context)
    assert state["aggregation"]["result"]["rows"] == 4
    item = store.get(uploaded.file_id)
    assert item is not None
    assert item["status"] == FileStatus.FAILED
    assert "rowCount" not in item


@pytest.mark.parametrize(
    "change",
    [
        {"fileId": "not-a-file-id"},
        {"bucket": ""},
        {"versionId": None},
        {"attempt": 0},
    ],
)
def test_malformed_payloads_are_refused(
    function_env: UseEnv, lambda_context: LambdaContext, change: dict[str, Any]
) -> None:
    function_env("validator")
    event = Uploaded("b", "incoming/t.csv", "v1").stage_event(**change)
    with pytest.raises(MalformedEventError):
        validator.lambda_handler(event, lambda_context)


def test_processor_needs_the_validation_result(
    upload: Upload, function_env: UseEnv, lambda_context: LambdaContext
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    function_env("processor")
    with pytest.raises(MalformedEventError, match="validation.result"):
        processor.lambda_handler(uploaded.stage_event(), lambda_context)


def test_stage_logs_carry_the_file_id(
    upload: Upload,
    function_env: UseEnv,
    lambda_context: LambdaContext,
    log_lines: Callable[[Logger], list[dict[str, Any]]],
) -> None:
    uploaded = upload("incoming/t.csv", CSV.encode())
    function_env("validator")
    log_lines(validator.logger)
    validator.lambda_handler(uploaded.stage_event(), lambda_context)
    with pytest.raises(InvalidFileError):
        validator.lambda_handler(upload("incoming/e.csv", b"").stage_event(), lambda_context)
    lines = log_lines(validator.logger)
    assert [line["message"] for line in lines] == ["file.validated", "stage.rejected"]
    assert lines[0]["correlation_id"] == uploaded.file_id
    assert lines[1]["correlation_id"] != uploaded.file_id
    assert lines[1]["errorType"] == "InvalidFileError"
    assert {line["service"] for line in lines} == {"validator"}
