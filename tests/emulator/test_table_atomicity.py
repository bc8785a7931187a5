"""DynamoDB in the emulator applies each request whole, as DynamoDB does: a read never sees half
of an update, and two conditional writes never both pass one condition.

moto applies an UpdateItem to the stored item in place, one action after another, and checks a
condition before it writes without holding anything; the emulator's server runs requests on
threads. Each test here fails on moto's app served without `table_atomicity`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from provisioner.emulator.server import EmulatorServer
from tests.emulator.conftest import REGION

pytestmark = pytest.mark.slow

TABLE = "atomicity"
FIELDS = 40  # attributes one update sets: a wide window for a read in the middle of it


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0)
    server.start()
    server.publish()
    try:
        yield server
    finally:
        server.reset()
        server.stop()


@pytest.fixture
def dynamodb(emulator: EmulatorServer) -> Any:
    client = boto3.client("dynamodb", endpoint_url=emulator.endpoint_url, region_name=REGION)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def _together(workers: list[Callable[[], None]]) -> None:
    """Run every worker on its own thread, started at once; re-raise the first failure."""
    barrier = threading.Barrier(len(workers))
    failures: list[BaseException] = []

    def run(worker: Callable[[], None]) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[0]


def test_a_read_never_sees_half_an_update(dynamodb: Any) -> None:
    names = {f"#f{i}": f"f{i}" for i in range(FIELDS)}
    expression = "SET " + ", ".join(f"#f{i} = :n" for i in range(FIELDS))
    dynamodb.put_item(
        TableName=TABLE, Item={"id": {"S": "x"}, **{n: {"N": "0"} for n in names.values()}}
    )
    writing = threading.Event()
    torn: list[set[str]] = []

    def write() -> None:
        try:
            for n in range(1, 150):
                dynamodb.update_item(
                    TableName=TABLE,
                    Key={"id": {"S": "x"}},
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":n": {"N": str(n)}},
                )
        finally:
            writing.set()

    def read() -> None:
        while not writing.is_set():
            item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "x"}})["Item"]
            values = {item[name]["N"] for name in names.values()}
            if len(values) > 1:
                torn.append(values)

    _together([write, read, read])
    assert torn == []


def test_two_conditional_writes_never_both_pass_one_condition(dynamodb: Any) -> None:
    """Compare-and-set counting: every increment that was told it succeeded is in the total.
    Each write sets FIELDS other attributes before `n`: a wide window after its check."""
    dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "n"}, "n": {"N": "0"}})
    padding = "".join(f"f{i} = :next, " for i in range(FIELDS))
    succeeded = [0, 0, 0]

    def count(worker: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(100):
                seen = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "n"}})["Item"]["n"]["N"]
                try:
                    dynamodb.update_item(
                        TableName=TABLE,
                        Key={"id": {"S": "n"}},
                        UpdateExpression=f"SET {padding}n = :next",
                        ConditionExpression="n = :seen",
                        ExpressionAttributeValues={
                            ":seen": {"N": seen},
                            ":next": {"N": str(int(seen) + 1)},
                        },
                    )
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    pass  # another worker moved `n` on first: read it again
                else:
                    succeeded[worker] += 1

        return run

    _together([count(worker) for worker in range(3)])
    total = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "n"}})["Item"]["n"]["N"]
    assert int(total) == sum(succeeded)
