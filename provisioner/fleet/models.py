"""ORM table of the fleet's samples over time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow

# The `tenant` of the sample that counts the whole fleet (no tenant id is empty).
WHOLE_FLEET = ""


class FleetSampleRow(Base):
    """One row per sampling period and tenant, plus one for the whole fleet. The primary key
    is what makes replicas that sample the same period collide instead of both writing."""

    __tablename__ = "fleet_samples"

    period_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(20), primary_key=True)
    environments: Mapped[int] = mapped_column(Integer)
    failing: Mapped[int] = mapped_column(Integer)
    drifted: Mapped[int] = mapped_column(Integer)
    outdated: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
