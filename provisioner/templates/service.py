"""Publishing templates and versions, resolving a `template` reference (`gold`, `gold@2`), and
the built-in `default` template (docs/architecture.md §7)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.db import Database, utcnow
from provisioner.errors import ConflictError, NotFoundError, ValidationFailed
from provisioner.templates.models import TemplateRow, TemplateVersionRow
from provisioner.templates.repository import TemplateRepository
from stacks.config import ENVIRONMENT_PATTERN, PipelineSettings

log = structlog.get_logger(__name__)

DEFAULT_TEMPLATE: Final = "default"
_REFERENCE: Final = re.compile(r"(?P<name>[^@]+)(?:@(?P<version>[1-9][0-9]{0,8}))?")


def settings_errors(error: ValidationError, *prefix: str) -> ValidationFailed:
    """A PipelineSettings error as a 422 naming each field under `prefix` (config.memory_mb)."""
    return ValidationFailed(
        [
            {
                "loc": ["body", *prefix, *(str(part) for part in item["loc"])],
                "msg": item["msg"],
                "type": item["type"],
            }
            for item in error.errors(include_url=False, include_input=False)
        ]
    )


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", field], "msg": message, "type": "value_error"}])


def validated_config(config: Mapping[str, Any], *prefix: str) -> dict[str, Any]:
    try:
        return PipelineSettings.model_validate(dict(config)).model_dump(mode="json")
    except ValidationError as error:
        raise settings_errors(error, *prefix) from None


def parse_reference(reference: str) -> tuple[str, int | None]:
    """`gold` → ("gold", None: its latest), `gold@2` → ("gold", 2); 422 naming `template`."""
    match = _REFERENCE.fullmatch(reference)
    if match is None or not ENVIRONMENT_PATTERN.fullmatch(match["name"]):
        raise _invalid("template", 'must be "<template name>" or "<template name>@<version>"')
    version = match["version"]
    return match["name"], int(version) if version else None


class TemplateService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.templates = TemplateRepository(session)

    def create(
        self, name: str, description: str | None, config: Mapping[str, Any], created_by: str
    ) -> TemplateVersionRow:
        """A new template with its version 1; 409 if the name is taken."""
        if not ENVIRONMENT_PATTERN.fullmatch(name):
            raise _invalid("name", "must match [a-z][a-z0-9-]{0,11} and not end in '-'")
        settings = validated_config(config, "config")
        try:
            with self.session.begin_nested():
                self.templates.add(
                    TemplateRow(
                        name=name,
                        description=description,
                        created_by=created_by,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise ConflictError(f"template {name} already exists") from None
        return self._add_version(name, 1, settings, description, created_by)

    def add_version(
        self, name: str, description: str | None, config: Mapping[str, Any], created_by: str
    ) -> TemplateVersionRow:
        """The template's next version; 404 if there is no such template."""
        if self.templates.get(name) is None:
            raise NotFoundError(f"template {name} not found")
        settings = validated_config(config, "config")
        latest = self.templates.latest(name)
        return self._add_version(
            name, (latest.version if latest else 0) + 1, settings, description, created_by
        )

    def _add_version(
        self,
        name: str,
        version: int,
        settings: dict[str, Any],
        description: str | None,
        created_by: str,
    ) -> TemplateVersionRow:
        row = TemplateVersionRow(
            template_name=name,
            version=version,
            config=settings,
            description=description,
            created_by=created_by,
            created_at=utcnow(),
        )
        try:
            with self.session.begin_nested():
                self.templates.add_version(row)
        except IntegrityError:
            # Another publisher took this number between our read and our insert.
            raise ConflictError(
                f"template {name} version {version} was published concurrently; retry"
            ) from None
        log.info("templates.version_published", template=name, version=version)
        return row

    def get(self, name: str) -> tuple[TemplateRow, list[TemplateVersionRow]]:
        row = self.templates.get(name)
        if row is None:
            raise NotFoundError(f"template {name} not found")
        return row, list(self.templates.versions(name))

    def resolve(self, reference: str) -> TemplateVersionRow:
        """The version a `template` field names; unknown ones are a 422 naming `template`."""
        name, version = parse_reference(reference)
        row = (
            self.templates.latest(name)
            if version is None
            else self.templates.version(name, version)
        )
        if row is None:
            raise _invalid("template", f"no template {reference!r}")
        return row

    def current(self, name: str, version: int) -> TemplateVersionRow:
        """The version an environment is on (versions are never deleted)."""
        row = self.templates.version(name, version)
        if row is None:
            raise NotFoundError(f"template {name}@{version} not found")
        return row


def ensure_default_template(database: Database) -> bool:
    """Create the built-in `default` template (version 1: the built-in defaults) unless it
    exists. Several replicas may start at once: the loser of the insert race sees a unique
    violation on the primary key and leaves the winner's row. Returns True if it created it."""
    with database.session() as session:
        repository = TemplateRepository(session)
        if repository.version(DEFAULT_TEMPLATE, 1) is not None:
            return False
        try:
            with session.begin_nested():
                if repository.get(DEFAULT_TEMPLATE) is None:
                    repository.add(
                        TemplateRow(
                            name=DEFAULT_TEMPLATE,
                            description="built-in defaults",
                            created_by="system",
                            created_at=utcnow(),
                        )
                    )
                repository.add_version(
                    TemplateVersionRow(
                        template_name=DEFAULT_TEMPLATE,
                        version=1,
                        config=PipelineSettings().model_dump(mode="json"),
                        description="built-in defaults",
                        created_by="system",
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            return False
    log.info("templates.default_created")
    return True
