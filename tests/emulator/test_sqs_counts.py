"""The patched SQS counts answer what moto's own do: per queue state (visible, received and not
yet visible again, delayed), on a standard and a FIFO queue, and a receive still sees exactly
the visible messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.sqs.models import Queue

from provisioner.emulator import sqs_counts
from tests.emulator.conftest import REGION

COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
]


@pytest.fixture
def patched() -> Iterator[None]:
    sqs_counts.install()
    yield
    sqs_counts.uninstall()


def counts(sqs: Any, url: str) -> dict[str, str]:
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)[
        "Attributes"
    ]
    return attributes


def fill(sqs: Any, url: str, *, fifo: bool) -> None:
    """Five messages: two received (now not visible), one delayed, two visible."""
    group = {"MessageGroupId": "g"} if fifo else {}
    for index in range(4):
        dedup = {"MessageDeduplicationId": f"m{index}"} if fifo else {}
        sqs.send_message(QueueUrl=url, MessageBody=f"m{index}", **group, **dedup)
    if fifo:  # FIFO queues delay per queue, not per message
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "600"})
        sqs.send_message(
            QueueUrl=url, MessageBody="late", MessageGroupId="h", MessageDeduplicationId="late"
        )
    else:
        sqs.send_message(QueueUrl=url, MessageBody="late", DelaySeconds=600)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=600)
    assert len(received["Messages"]) == 2


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_the_counts_are_moto_own(moto_aws: None, fifo: bool) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    name = "q.fifo" if fifo else "q"
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    fill(sqs, url, fifo=fifo)
    expected = counts(sqs, url)
    assert expected == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesDelayed": "1",
        "ApproximateNumberOfMessagesNotVisible": "2",
    }
    sqs_counts.install()
    try:
        assert counts(sqs, url) == expected
        # A receive takes what is visible: the two left, not the received or the delayed one
        # (on the FIFO queue none: its group "g" has messages in flight, which holds the rest).
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        bodies = {message["Body"] for message in received.get("Messages", [])}
        assert bodies == (set() if fifo else {"m2", "m3"})
    finally:
        sqs_counts.uninstall()


def test_install_is_idempotent_and_uninstall_restores_moto(moto_aws: None) -> None:
    original = Queue.__dict__["approximate_number_of_messages"]
    sqs_counts.install()
    replaced = Queue.__dict__["approximate_number_of_messages"]
    sqs_counts.install()
    assert Queue.__dict__["approximate_number_of_messages"] is replaced is not original
    sqs_counts.uninstall()
    assert Queue.__dict__["approximate_number_of_messages"] is original


def test_a_moto_that_moved_the_counts_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Queue, "approximate_number_of_messages_delayed", 0)
    with pytest.raises(
        RuntimeError, match="moto changed: Queue.approximate_number_of_messages_delayed"
    ):
        sqs_counts.install()
    assert "messages" not in sqs_counts._originals  # nothing half-installed
