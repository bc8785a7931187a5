"""moto's SQS queue counts, read against one clock reading per count instead of one per message.

moto 5.2.x answers `ApproximateNumberOfMessages`, `…Delayed` and `…NotVisible` (and builds a
queue's `attributes` from them, which `SendMessage` reads on every send to check
content-based deduplication) by asking each message `visible` and `delayed`, each of which
reads the clock (`unix_time_millis`, a datetime subtraction). With a few hundred messages
queued (an upload burst, before ingest catches up) that was a fifth of the service process's
CPU during the burst (py-spy over `bench.dataplane`), the process whose one core sets the
local data plane's throughput. The same tests against one reading: the same answers, as of
one instant. The patched names are checked at install, so a moto upgrade that moves them
fails loudly instead of silently going slow.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from moto.core.utils import unix_time_millis
from moto.sqs.models import Message, Queue


def _messages(queue: Any) -> list[Any]:
    """Visible and not delayed: what a receive may return."""
    now = unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


def _approximate_number_of_messages(queue: Any) -> int:
    return len(_messages(queue))


def _approximate_number_of_messages_delayed(queue: Any) -> int:
    now = unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


def _approximate_number_of_messages_not_visible(queue: Any) -> int:
    now = unix_time_millis()
    return sum(1 for m in queue._messages if not now > m.visible_at)


_REPLACEMENTS: Final = {
    "messages": _messages,
    "approximate_number_of_messages": _approximate_number_of_messages,
    "approximate_number_of_messages_delayed": _approximate_number_of_messages_delayed,
    "approximate_number_of_messages_not_visible": _approximate_number_of_messages_not_visible,
}
# What the replacements read of a message, as moto's own `visible` and `delayed` do.
_MESSAGE_PROPERTIES: Final = ("visible", "delayed")

_LOCK: Final = threading.Lock()
_originals: dict[str, property] = {}


def install() -> None:
    """Replace the counts on moto's `Queue` (process-wide, as moto's backends are)."""
    with _LOCK:
        if _originals:
            return
        for name in (*_REPLACEMENTS, *_MESSAGE_PROPERTIES):
            owner = Message if name in _MESSAGE_PROPERTIES else Queue
            if not isinstance(owner.__dict__.get(name), property):
                raise RuntimeError(
                    f"moto changed: {owner.__qualname__}.{name} is not a property; check "
                    "provisioner.emulator.sqs_counts against the installed moto"
                )
        for name, replacement in _REPLACEMENTS.items():
            _originals[name] = Queue.__dict__[name]
            setattr(Queue, name, property(replacement))


def uninstall() -> None:
    with _LOCK:
        for name, original in _originals.items():
            setattr(Queue, name, original)
        _originals.clear()
