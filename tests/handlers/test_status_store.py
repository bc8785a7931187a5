"""The status store against the status table (moto): rank rules, TTL, look-ups, retries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from handlers.core.ids import file_id
from handlers.core.status_model import FileStatus
from handlers.core.status_store import (
    SYMBOLS_ITEM_BUDGET,
    FileSummary,
    RetryNotAllowedError,
    StatusStore,
)
from tests.handlers.conftest import REGION

KEY = "incoming/day 1/trades.csv"


class Clock:
    """A settable clock, so TTL and ordering do not depend on the wall clock."""

    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(status_table: str, clock: Clock) -> StatusStore:
    return StatusStore(status_table, clock=clock)


def received(store: StatusStore, version: str = "v1", key: str = KEY) -> str:
    fid = file_id("bucket-x", key, version)
    assert store.record_received(fid, bucket="bucket-x", object_key=key, version_id=version)
    return fid


def raw_item(table: str, fid: str) -> dict[str, object]:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=table, Key={"fileId": {"S": fid}}
    )
    return dict(item["Item"])


def test_record_received_writes_the_design_fields(store: StatusStore, clock: Clock) -> None:
    fid = received(store)
    item = store.get(fid)
    assert item is not None
    assert item == {
        "fileId": fid,
        "bucket": "bucket-x",
        "objectKey": KEY,
        "versionId": "v1",
        "status": "RECEIVED",
        "statusRank": 1,
        "stage": "ingest",
        "receivedAt": "2024-03-01T09:30:00.123Z",
        "updatedAt": "2024-03-01T09:30:00.123Z",
        "expirationTime": int((clock.now + timedelta(days=30)).timestamp()),
        "attempt": 1,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["receivedAt"])


def test_ttl_is_about_thirty_days_from_now(status_table: str) -> None:
    store = StatusStore(status_table)  # the real clock
    fid = received(store)
    item = store.get(fid)
    assert item is not None
    expected = (datetime.now(UTC) + timedelta(days=30)).timestamp()
    assert abs(item["expirationTime"] - expected) < 60
    assert raw_item(status_table, fid)["expirationTime"] == {"N": str(item["expirationTime"])}


def test_record_received_is_idempotent(store: StatusStore, clock: Clock) -> None:
    fid = received(store)
    store.advance(fid, FileStatus.VALIDATING, "validator")
    clock.advance(minutes=5)
    assert not store.record_received(fid, bucket="bucket-x", object_key=KEY, version_id="v1")
    item = store.get(fid)
    assert item is not None
    assert item["status"] == "VALIDATING"


def test_statuses_only_move_forward(store: StatusStore) -> None:
    fid = received(store)
    assert store.advance(fid, FileStatus.PROCESSING, "processor")
    assert not store.advance(fid, FileStatus.VALIDATING, "validator")  # late write loses
    assert store.advance(fid, FileStatus.PROCESSING, "processor")  # repeating is fine
    item = store.get(fid)
    assert item is not None
    assert (item["status"], item["stage"]) == ("PROCESSING", "processor")


def test_a_late_write_after_completed_leaves_completed(store: StatusStore) -> None:
    fid = received(store)
    assert store.advance(fid, FileStatus.COMPLETED, "aggregator")
    assert not store.advance(fid, FileStatus.PROCESSING, "processor")
    assert not store.advance(fid, FileStatus.COMPLETED, "aggregator")
    assert not store.fail(fid, stage="processor", error_type="X", message="late")
    item = store.get(fid)
    assert item is not None
    assert item["status"] == "COMPLETED"
    assert "error" not in item


def test_failed_is_terminal(store: StatusStore) -> None:
    fid = received(store)
    assert store.fail(fid, stage="validator", error_type="InvalidFileError", message="bad")
    assert not store.advance(fid, FileStatus.COMPLETED, "aggregator")
    assert not store.fail(fid, stage="processor", error_type="Other", message="second")
    summary = FileSummary(1, 0, {}, "results/x.json")
    assert not store.merge_summary(fid, summary)
    item = store.get(fid)
    assert item is not None
    assert item["status"] == "FAILED"
    assert item["statusRank"] == 99
    assert item["error"] == {"stage": "validator", "type": "InvalidFileError", "message": "bad"}
    assert "rowCount" not in item


def test_writes_to_an_unknown_file_do_nothing(store: StatusStore) -> None:
    assert not store.advance("f" * 64, FileStatus.VALIDATING, "validator")
    assert not store.fail("f" * 64, stage="validator", error_type="X", message="y")
    assert store.get("f" * 64) is None


def test_failed_cannot_be_written_through_advance(store: StatusStore) -> None:
    with pytest.raises(ValueError, match="fail"):
        store.advance(received(store), FileStatus.FAILED, "validator")


def test_merge_summary_stores_the_figures(store: StatusStore) -> None:
    fid = received(store)
    symbols = {"AB": {"open": 1.5, "volume": 10, "firstTs": "2024-03-01T09:00:00Z"}}
    assert store.merge_summary(fid, FileSummary(10, 2, symbols, f"results/{fid}.json"))
    item = store.get(fid)
    assert item is not None
    assert item["rowCount"] == 10
    assert item["rejectedRows"] == 2
    assert item["symbols"] == symbols
    assert item["symbolCount"] == 1
    assert item["resultKey"] == f"results/{fid}.json"


def test_merge_summary_leaves_out_a_symbol_map_too_big_for_an_item(store: StatusStore) -> None:
    fid = received(store)
    entry = {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1, "vwap": 1.0}
    symbols = {f"S{i:05d}": entry for i in range(SYMBOLS_ITEM_BUDGET // 50)}
    assert store.merge_summary(fid, FileSummary(5, 0, symbols, "results/x.json"))
    item = store.get(fid)
    assert item is not None
    assert "symbols" not in item
    assert item["symbolCount"] == len(symbols)
    assert item["resultKey"] == "results/x.json"


def test_expired_items_are_absent(store: StatusStore, clock: Clock) -> None:
    old = received(store, "v1")
    clock.advance(days=20)
    new = received(store, "v2")
    clock.advance(days=11)  # v1 is past its 30 days, v2 is not
    assert store.get(old) is None
    assert store.get(new) is not None
    assert [item["fileId"] for item in store.by_object_key(KEY)] == [new]


def test_by_object_key_lists_every_version_newest_first(store: StatusStore, clock: Clock) -> None:
    ids = []
    for version in ("v1", "v2", "v3"):
        ids.append(received(store, version))
        clock.advance(seconds=1)
    received(store, "v1", key="incoming/other.csv")
    items = store.by_object_key(KEY)
    assert [item["fileId"] for item in items] == ids[::-1]
    assert store.by_object_key("incoming/none.csv") == []


def test_begin_retry_only_from_failed(store: StatusStore, clock: Clock) -> None:
    fid = received(store)
    with pytest.raises(RetryNotAllowedError, match="RECEIVED, not FAILED") as caught:
        store.begin_retry(fid)
    assert caught.value.status == "RECEIVED"
    with pytest.raises(RetryNotAllowedError, match="unknown"):
        store.begin_retry("e" * 64)

    store.merge_summary(fid, FileSummary(3, 0, {}, "results/x.json"))
    store.fail(fid, stage="processor", error_type="ObjectNotFoundError", message="gone")
    clock.advance(hours=1)
    assert store.begin_retry(fid, ttl_days=30) == 2
    item = store.get(fid)
    assert item is not None
    assert (item["status"], item["statusRank"], item["stage"]) == ("RECEIVED", 1, "ingest")
    assert item["attempt"] == 2
    assert item["lastError"] == {
        "stage": "processor",
        "type": "ObjectNotFoundError",
        "message": "gone",
    }
    assert "error" not in item
    assert "rowCount" not in item
    assert "resultKey" not in item
    assert item["updatedAt"] == "2024-03-01T10:30:00.123Z"
    assert item["expirationTime"] == int((clock.now + timedelta(days=30)).timestamp())

    # the new attempt runs like the first; retrying it needs another failure
    with pytest.raises(RetryNotAllowedError):
        store.begin_retry(fid)
    assert store.advance(fid, FileStatus.VALIDATING, "validator")
    store.fail(fid, stage="validator", error_type="InvalidFileError", message="again")
    assert store.begin_retry(fid) == 3


def test_scan_items_skips_expired_and_reports_truncation(store: StatusStore, clock: Clock) -> None:
    expired = received(store, "v0")
    clock.advance(days=31)
    live = {received(store, f"v{i}") for i in range(1, 6)}
    items, truncated = store.scan_items(max_items=10)
    assert {item["fileId"] for item in items} == live
    assert not truncated
    assert expired not in {item["fileId"] for item in items}
    first, truncated = store.scan_items(max_items=3)
    assert len(first) == 3
    assert truncated
    assert {item["fileId"] for item in first} <= live
    assert store.scan_items(max_items=5) == (items, False)
