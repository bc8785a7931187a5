"""ORM tables of templates and their immutable versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UtcDateTime, utcnow


class TemplateRow(Base):
    __tablename__ = "templates"

    name: Mapped[str] = mapped_column(String(12), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TemplateVersionRow(Base):
    """Written once, never updated: the primary key makes two publishers of the same next
    version collide instead of both succeeding."""

    __tablename__ = "template_versions"

    template_name: Mapped[str] = mapped_column(
        String(12), ForeignKey("templates.name"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A full PipelineSettings (defaults filled in when published), so that a later change of
    # the built-in defaults never changes what an existing version means.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
