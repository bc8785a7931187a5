"""`/admin/templates` (publish: admin keys) and `/templates` (read: any key)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from provisioner.audit.middleware import audit_target
from provisioner.deps import AdminDep, Limit, Offset, PrincipalDep, SessionDep
from provisioner.errors import error_responses
from provisioner.schemas import Page
from provisioner.templates.repository import TemplateRepository
from provisioner.templates.schemas import (
    TemplateCreate,
    TemplatePublic,
    TemplateSummary,
    TemplateVersionCreate,
    TemplateVersionPublic,
    template_public,
    template_summary,
    template_version_public,
)
from provisioner.templates.service import TemplateService

admin_router = APIRouter(prefix="/admin/templates", tags=["templates"])
router = APIRouter(prefix="/templates", tags=["templates"])


@admin_router.post(
    "",
    status_code=201,
    response_model=TemplateVersionPublic,
    responses=error_responses(400, 403, 409, 422),
    summary="Publish a new template (its version 1)",
)
def create_template(
    body: TemplateCreate, request: Request, principal: AdminDep, session: SessionDep
) -> TemplateVersionPublic:
    audit_target(request, None, f"template:{body.name}")
    row = TemplateService(session).create(
        body.name, body.description, body.config, principal.key_id
    )
    session.commit()
    return template_version_public(row)


@admin_router.post(
    "/{name}/versions",
    status_code=201,
    response_model=TemplateVersionPublic,
    responses=error_responses(400, 403, 404, 409, 422),
    summary="Publish the template's next version (versions never change)",
)
def create_template_version(
    name: str,
    body: TemplateVersionCreate,
    request: Request,
    principal: AdminDep,
    session: SessionDep,
) -> TemplateVersionPublic:
    audit_target(request, None, f"template:{name}")
    row = TemplateService(session).add_version(
        name, body.description, body.config, principal.key_id
    )
    session.commit()
    return template_version_public(row)


@router.get("", response_model=Page[TemplateSummary], responses=error_responses())
def list_templates(
    _principal: PrincipalDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[TemplateSummary]:
    repository = TemplateRepository(session)
    rows, total = repository.list(limit=limit, offset=offset)
    latest = repository.latest_versions(row.name for row in rows)
    items = [template_summary(row, latest.get(row.name, 0)) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{name}", response_model=TemplatePublic, responses=error_responses(404))
def get_template(name: str, _principal: PrincipalDep, session: SessionDep) -> TemplatePublic:
    row, versions = TemplateService(session).get(name)
    return template_public(row, versions)
