"""Items in an environment's status table that the pipeline did not write (the table is the
environment's: anyone with its credentials can put one) are left out, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from provisioner.engines.aws import DataPlaneAccess
from provisioner.errors import NotFoundError
from provisioner.files.service import EnvironmentDataPlane
from tests.emulator.conftest import REGION, fake_aws_environment

GOOD = "a" * 64
FOREIGN = "b" * 64


def _item(file_id: str, **fields: str) -> dict[str, dict[str, str]]:
    return {"fileId": {"S": file_id}, **{name: {"S": value} for name, value in fields.items()}}


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> Iterator[EnvironmentDataPlane]:
    fake_aws_environment(monkeypatch)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="status",
            KeySchema=[{"AttributeName": "fileId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "fileId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        identity = {"bucket": "b", "objectKey": "incoming/a.csv", "versionId": "v1"}
        at = datetime(2026, 12, 3, 12, tzinfo=UTC).isoformat()
        for item in (
            _item(GOOD, status="COMPLETED", receivedAt=at, updatedAt=at, **identity),
            _item(FOREIGN, status="X"),  # what the attack put there: no identity, no status
            _item(FOREIGN[:-1] + "c", status="COMPLETED", bucket="b"),  # incomplete
            _item("not-a-file-id", status="COMPLETED", **identity),
        ):
            dynamodb.put_item(TableName="status", Item=item)
        access = DataPlaneAccess(boto3.Session(region_name=REGION))
        yield EnvironmentDataPlane(access, {"statusTableName": "status"}, status_ttl_days=30)


def test_the_listing_and_its_counts_hold_status_items_only(plane: EnvironmentDataPlane) -> None:
    page = plane.files(status=None, key=None, limit=50, offset=0)
    assert [item["fileId"] for item in page.items] == [GOOD]
    assert (page.counts, page.total) == ({"COMPLETED": 1}, 1)
    stats, _ = plane.stats(datetime(2026, 12, 3, 12, 30, tzinfo=UTC), 60)
    assert stats.received == 1


def test_a_foreign_item_is_no_file(plane: EnvironmentDataPlane) -> None:
    assert plane.file(GOOD)["status"] == "COMPLETED"
    with pytest.raises(NotFoundError, match="not a status item"):
        plane.file(FOREIGN)
    assert plane.status_item(FOREIGN) is None
