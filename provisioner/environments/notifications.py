"""Events of environments and operations for webhook subscribers (docs/architecture.md §8).

`publish` writes them to the webhooks' outbox in the caller's transaction, so that an event and
the change it reports commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from provisioner.webhooks.service import enqueue_event


def publish(session: Session, event_type: str, tenant: str, data: Mapping[str, Any]) -> None:
    enqueue_event(session, event_type, tenant, data)
