"""The status REST API handler: routes, field names, 400/404 errors as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from handlers import status_api
from handlers.core.ids import file_id
from handlers.core.status_store import FileSummary, StatusStore
from tests.handlers.conftest import REGION, LambdaContext, load_event

KEY = "incoming/Zürich trades+fx.csv"


@pytest.fixture(autouse=True)
def _status_env(aws: None, status_table: str, function_env: Callable[..., Any]) -> None:
    function_env("status")


def get_status(fid: str, context: LambdaContext) -> tuple[int, dict[str, Any]]:
    event = load_event("apigw_get_status.json")
    event["path"] = f"/status/{fid}"
    event["pathParameters"] = {"fileId": fid}
    return call(event, context)


def get_files(key: str | None, context: LambdaContext) -> tuple[int, dict[str, Any]]:
    event = load_event("apigw_get_files.json")
    # API Gateway hands the handler the decoded value of ?key=<url-encoded key>
    event["queryStringParameters"] = None if key is None else {"key": key}
    event["multiValueQueryStringParameters"] = None if key is None else {"key": [key]}
    return call(event, context)


def call(event: dict[str, Any], context: LambdaContext) -> tuple[int, dict[str, Any]]:
    response = status_api.lambda_handler(event, context)
    # REST API (v1) proxy responses carry multi-value headers
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"])


def add_file(version: str, store: StatusStore | None = None) -> str:
    store = store or StatusStore.from_env()
    fid = file_id("bucket-x", KEY, version)
    store.record_received(fid, bucket="bucket-x", object_key=KEY, version_id=version)
    return fid


def test_status_of_a_completed_file_uses_the_design_field_names(
    lambda_context: LambdaContext,
) -> None:
    store = StatusStore.from_env()
    fid = add_file("v1", store)
    symbols = {"AB": {"open": 1.5, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 30}}
    store.merge_summary(fid, FileSummary(30, 1, symbols, f"results/{fid}.json"))
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName="p-acme-dev-status",
        Key={"fileId": {"S": fid}},
        UpdateExpression="SET #s = :s, statusRank = :r, executionArn = :e",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": {"S": "COMPLETED"},
            ":r": {"N": "7"},
            ":e": {"S": "arn:aws:states:::execution:x"},
        },
    )
    status, body = get_status(fid, lambda_context)
    assert status == 200
    assert body["fileId"] == fid
    assert body["objectKey"] == KEY
    assert body["status"] == "COMPLETED"
    assert body["rowCount"] == 30
    assert body["rejectedRows"] == 1
    assert body["symbols"] == symbols
    assert isinstance(body["symbols"]["AB"]["volume"], int)
    assert isinstance(body["expirationTime"], int)
    assert set(body) == {
        "fileId",
        "bucket",
        "objectKey",
        "versionId",
        "status",
        "stage",
        "receivedAt",
        "updatedAt",
        "expirationTime",
        "attempt",
        "rowCount",
        "rejectedRows",
        "symbols",
        "symbolCount",
        "resultKey",
    }


def test_a_failed_file_shows_its_error(lambda_context: LambdaContext) -> None:
    store = StatusStore.from_env()
    fid = add_file("v1", store)
    store.fail(fid, stage="validator", error_type="InvalidFileError", message="empty file")
    status, body = get_status(fid, lambda_context)
    assert status == 200
    assert body["status"] == "FAILED"
    assert body["error"] == {
        "stage": "validator",
        "type": "InvalidFileError",
        "message": "empty file",
    }


def test_a_canary_file_is_served_and_says_it_is_one(lambda_context: LambdaContext) -> None:
    # The status API answers by id or key, never a listing: a canary is shown only when asked
    # for by name, and then it is marked.
    key = "incoming/.canary/c-1.csv"
    fid = file_id("bucket-x", key, "v1")
    StatusStore.from_env().record_received(
        fid, bucket="bucket-x", object_key=key, version_id="v1", canary=True
    )
    status, body = get_status(fid, lambda_context)
    assert (status, body["canary"]) == (200, True)
    status, listed = get_files(key, lambda_context)
    assert [item.get("canary") for item in listed["files"]] == [True]
    ordinary = add_file("v1")
    assert "canary" not in get_status(ordinary, lambda_context)[1]


@pytest.mark.parametrize("bad_id", ["abc", "A" * 64, "g" * 64, "0" * 65, "bucket%2Fkey"])
def test_a_malformed_id_is_400(lambda_context: LambdaContext, bad_id: str) -> None:
    assert get_status(bad_id, lambda_context) == (
        400,
        {"error": "invalid_file_id", "detail": "fileId must be 64 lowercase hex characters"},
    )


def test_an_unknown_id_is_404(lambda_context: LambdaContext) -> None:
    status, body = get_status("a" * 64, lambda_context)
    assert status == 404
    assert body["error"] == "not_found"


def test_an_expired_file_is_404(lambda_context: LambdaContext) -> None:
    past = datetime.now(UTC) - timedelta(days=40)
    store = StatusStore("p-acme-dev-status", clock=lambda: past)
    fid = add_file("v1", store)
    assert get_status(fid, lambda_context)[0] == 404
    assert get_files(KEY, lambda_context)[0] == 404


def test_files_lists_every_version_newest_first(lambda_context: LambdaContext) -> None:
    now = datetime.now(UTC)
    ids = [
        add_file(
            version, StatusStore("p-acme-dev-status", clock=lambda t=now + timedelta(seconds=i): t)
        )  # fmt: skip
        for i, version in enumerate(("v1", "v2", "v3"))
    ]
    status, body = get_files(KEY, lambda_context)
    assert status == 200
    assert body["objectKey"] == KEY
    assert [item["fileId"] for item in body["files"]] == ids[::-1]
    assert all("statusRank" not in item for item in body["files"])


def test_files_without_key_is_400(lambda_context: LambdaContext) -> None:
    assert get_files(None, lambda_context)[0] == 400
    status, body = get_files("", lambda_context)
    assert (status, body["error"]) == (400, "missing_key")


def test_files_for_an_unknown_key_is_404(lambda_context: LambdaContext) -> None:
    add_file("v1")
    status, body = get_files(quote(KEY), lambda_context)  # still encoded: another key
    assert (status, body["error"]) == (404, "not_found")


def test_unknown_route_is_404_json(lambda_context: LambdaContext) -> None:
    event = load_event("apigw_get_files.json")
    event["path"] = "/nothing"
    assert call(event, lambda_context) == (404, {"error": "not_found", "detail": "no such route"})
