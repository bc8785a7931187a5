"""Ingest handler against moto: idempotent starts, key decoding, partial batch failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from aws_lambda_powertools import Logger

from handlers import ingest
from handlers.core.errors import MalformedEventError
from handlers.core.ids import file_id
from tests.handlers.conftest import BUCKET, REGION, TABLE, LambdaContext, load_event

pytestmark = pytest.mark.usefixtures("status_table", "state_machine")


@pytest.fixture(autouse=True)
def _ingest_env(aws: None, function_env: Callable[..., dict[str, str]]) -> None:
    function_env("ingest")


def s3_event(key: str, version: str = "v-1", *, encode: bool = True) -> dict[str, Any]:
    """An EventBridge "Object Created" event; AWS URL-encodes the key (space → '+')."""
    event = load_event("s3_object_created.json")
    event["detail"]["object"]["key"] = quote_plus(key, safe="/") if encode else key
    event["detail"]["object"]["version-id"] = version
    return event


def sqs_batch(*bodies: str) -> dict[str, Any]:
    records = []
    for index, body in enumerate(bodies):
        record = load_event("sqs_fifo_record.json")
        record["messageId"] = f"msg-{index}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def executions(arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]


def status(fid: str) -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={"fileId": {"S": fid}}
    )
    return item.get("Item")


def test_an_upload_starts_one_execution_with_s3_references(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    response = ingest.lambda_handler(
        sqs_batch(json.dumps(s3_event("incoming/trades.csv"))), lambda_context
    )
    assert response == {"batchItemFailures": []}
    fid = file_id(BUCKET, "incoming/trades.csv", "v-1")
    [execution] = executions(state_machine)
    assert execution["name"] == fid
    assert json.loads(execution["input"]) == {
        "fileId": fid,
        "bucket": BUCKET,
        "objectKey": "incoming/trades.csv",
        "versionId": "v-1",
        "attempt": 1,
    }
    item = status(fid)
    assert item is not None
    assert item["status"] == {"S": "RECEIVED"}


def test_a_canary_upload_is_marked_and_an_ordinary_one_is_not(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    keys = ("incoming/.canary/c-1.csv", "incoming/trades.csv", "incoming/x/.canary/no.csv")
    response = ingest.lambda_handler(
        sqs_batch(*(json.dumps(s3_event(key)) for key in keys)), lambda_context
    )
    assert response == {"batchItemFailures": []}
    marks = {key: status(file_id(BUCKET, key, "v-1")) for key in keys}
    assert marks["incoming/.canary/c-1.csv"]["canary"] == {"BOOL": True}  # type: ignore[index]
    # Only the canary prefix itself marks a file; ordinary items keep the §3 fields alone.
    assert "canary" not in marks["incoming/trades.csv"]  # type: ignore[operator]
    assert "canary" not in marks["incoming/x/.canary/no.csv"]  # type: ignore[operator]
    assert len(executions(state_machine)) == 3


def test_the_same_event_twice_gives_one_execution(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    body = json.dumps(s3_event("incoming/trades.csv"))
    assert ingest.lambda_handler(sqs_batch(body, body), lambda_context) == {"batchItemFailures": []}
    assert ingest.lambda_handler(sqs_batch(body), lambda_context) == {"batchItemFailures": []}
    assert len(executions(state_machine)) == 1


def test_execution_already_exists_counts_as_started(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    fid = file_id(BUCKET, "incoming/trades.csv", "v-1")
    # an execution of that name with another input: Step Functions refuses the second start
    boto3.client("stepfunctions", region_name=REGION).start_execution(
        stateMachineArn=state_machine, name=fid, input="{}"
    )
    body = json.dumps(s3_event("incoming/trades.csv"))
    assert ingest.lambda_handler(sqs_batch(body), lambda_context) == {"batchItemFailures": []}
    assert len(executions(state_machine)) == 1
    assert status(fid) is not None


def test_another_version_of_the_same_key_is_another_file(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    bodies = [json.dumps(s3_event("incoming/trades.csv", version)) for version in ("a", "b")]
    ingest.lambda_handler(sqs_batch(*bodies), lambda_context)
    names = {e["name"] for e in executions(state_machine)}
    assert names == {file_id(BUCKET, "incoming/trades.csv", v) for v in ("a", "b")}


def test_url_encoded_keys_are_decoded(state_machine: str, lambda_context: LambdaContext) -> None:
    key = "incoming/Zürich trades+fx/été 2024 €.csv"
    event = s3_event(key)
    # what AWS sends: spaces as '+', a literal '+' as %2B, UTF-8 bytes percent-encoded
    assert event["detail"]["object"]["key"] == (
        "incoming/Z%C3%BCrich+trades%2Bfx/%C3%A9t%C3%A9+2024+%E2%82%AC.csv"
    )
    ingest.lambda_handler(sqs_batch(json.dumps(event)), lambda_context)
    [execution] = executions(state_machine)
    payload = json.loads(execution["input"])
    assert payload["objectKey"] == key
    assert payload["fileId"] == execution["name"] == file_id(BUCKET, key, "v-1")
    item = status(payload["fileId"])
    assert item is not None
    assert item["objectKey"] == {"S": key}


def test_a_poison_record_fails_with_the_records_after_it(
    state_machine: str, lambda_context: LambdaContext
) -> None:
    good = [json.dumps(s3_event(f"incoming/{name}.csv")) for name in ("a", "b", "c")]
    batch = sqs_batch(good[0], good[1], "not json at all", good[2])
    response = ingest.lambda_handler(batch, lambda_context)
    # FIFO: the poison record and every record after it go back to the queue, in order
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]
    }
    started = {e["name"] for e in executions(state_machine)}
    assert started == {file_id(BUCKET, f"incoming/{n}.csv", "v-1") for n in ("a", "b")}

    # redelivered without the poison record (it is on its way to the DLQ), the rest succeeds
    assert ingest.lambda_handler(sqs_batch(good[2]), lambda_context) == {"batchItemFailures": []}
    assert len(executions(state_machine)) == 3


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[]", "not a JSON object"),
        (json.dumps({**s3_event("incoming/a.csv"), "detail-type": "Object Deleted"}), "Created"),
        (json.dumps({**s3_event("incoming/a.csv"), "detail": {"bucket": {}}}), "lacks a field"),
    ],
)
def test_malformed_records_raise(body: str, reason: str) -> None:
    with pytest.raises(MalformedEventError, match=reason):
        ingest.parse_upload(body)


def test_the_correlation_id_is_the_file_id(
    lambda_context: LambdaContext, log_lines: Callable[[Logger], list[dict[str, Any]]]
) -> None:
    log_lines(ingest.logger)
    bodies = [json.dumps(s3_event(f"incoming/{n}.csv")) for n in ("a", "b")]
    ingest.lambda_handler(sqs_batch(bodies[0], "{}", bodies[1]), lambda_context)
    lines = log_lines(ingest.logger)
    started = [line for line in lines if line["message"] == "execution.started"]
    assert [line["correlation_id"] for line in started] == [
        file_id(BUCKET, "incoming/a.csv", "v-1")
    ]
    assert started[0]["service"] == "ingest"
    assert started[0]["tenant"] == "acme"
    # the poison record's failure is not logged under the previous record's id
    failures = [line for line in lines if line["level"] in ("WARNING", "ERROR")]
    assert failures
    assert all("correlation_id" not in line for line in failures)


@pytest.mark.parametrize("key", ["incoming/", "incoming/2026/11/"])
def test_a_folder_marker_is_ignored_not_failed_as_an_empty_file(
    key: str, state_machine: str, lambda_context: LambdaContext
) -> None:
    # The console's "Create folder" puts a zero-byte object whose key ends in '/'.
    marker = s3_event(key)
    marker["detail"]["object"]["size"] = 0
    real = s3_event("incoming/trades.csv")
    response = ingest.lambda_handler(
        sqs_batch(json.dumps(marker), json.dumps(real)), lambda_context
    )
    assert response == {"batchItemFailures": []}
    assert status(file_id(BUCKET, key, "v-1")) is None
    assert [e["name"] for e in executions(state_machine)] == [
        file_id(BUCKET, "incoming/trades.csv", "v-1")
    ]
