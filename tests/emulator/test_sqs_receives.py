"""Patching moto's SQS receives into the snapshot's cut (the cut itself, in server mode:
tests/emulator/test_persistence.py)."""

from __future__ import annotations

import pytest
from moto.sqs.models import Queue

from provisioner.emulator import sqs_receives


def test_install_twice_is_refused_and_uninstall_restores_moto() -> None:
    originals = (Queue.wait_for_messages, Queue.add_message)
    sqs_receives.install(lambda: None)
    try:
        assert Queue.add_message is not originals[1]
        with pytest.raises(RuntimeError, match="already patched"):
            sqs_receives.install(lambda: None)
    finally:
        sqs_receives.uninstall()
    assert (Queue.wait_for_messages, Queue.add_message) == originals


def test_a_moto_that_moved_the_wait_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Queue, "wait_for_messages")
    with pytest.raises(RuntimeError, match="moto changed: Queue.wait_for_messages"):
        sqs_receives.install(lambda: None)
    assert sqs_receives._originals == {}  # nothing half-installed
