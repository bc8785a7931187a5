"""moto's SQS receives inside the snapshot's cut, except while they wait for messages.

A receive changes moto's state: it marks messages received and moves a message received
`maxReceiveCount` times from its queue to the dead-letter queue (a remove from one queue's
list, an append to the other's). Run beside a snapshot's capture, that move could land after
the dead-letter queue was pickled and before the source queue was: the message was in neither,
and since nothing counted the move as a change, that snapshot could stay the last, at SIGTERM
too. So the gate holds receives like any request, except inside moto's wait for messages
(`Queue.wait_for_messages`, where a long poll spends nearly all its time): there the receive
steps out of the gate (`gate.stepped_out`), so a snapshot never waits for a long poll. A
message added to a queue (a send, or a move to a dead-letter queue) counts as a change, so the
next snapshot takes the move.

The patched names are checked at install, so a moto upgrade that moves them fails loudly
instead of silently tearing snapshots.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

from provisioner.emulator.gate import stepped_out

_NAMES: Final = ("wait_for_messages", "add_message")
_LOCK: Final = threading.Lock()
_originals: dict[str, Callable[..., Any]] = {}


def install(on_change: Callable[[], None]) -> None:
    """Patch moto's `Queue` (process-wide, as moto's backends are); `on_change` counts."""
    from moto.sqs.models import Queue

    with _LOCK:
        if _originals:
            raise RuntimeError("SQS receives are already patched in this process")
        for name in _NAMES:
            if not callable(Queue.__dict__.get(name)):
                raise RuntimeError(
                    f"moto changed: Queue.{name} is not a method; check "
                    "provisioner.emulator.sqs_receives against the installed moto"
                )
        wait_for_messages = Queue.__dict__["wait_for_messages"]
        add_message = Queue.__dict__["add_message"]

        # Wrapped (`__wrapped__`): what reads moto's source (lambda_dispatch's check) reads it.
        @functools.wraps(wait_for_messages)
        def waiting(queue: Any, timeout: int) -> None:
            with stepped_out():
                wait_for_messages(queue, timeout)

        @functools.wraps(add_message)
        def adding(queue: Any, message: Any) -> None:
            add_message(queue, message)
            on_change()

        _originals.update(wait_for_messages=wait_for_messages, add_message=add_message)
        setattr(Queue, "wait_for_messages", waiting)  # noqa: B010 (mypy: another signature)
        setattr(Queue, "add_message", adding)  # noqa: B010


def uninstall() -> None:
    from moto.sqs.models import Queue

    with _LOCK:
        for name, original in _originals.items():
            setattr(Queue, name, original)
        _originals.clear()
