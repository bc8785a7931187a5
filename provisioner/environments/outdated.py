"""When an environment is outdated (docs/architecture.md §7), written once for both places that
ask: a response (`outdated_reasons`, in Python) and the list filter (`outdated_condition`, in SQL).

An environment is outdated when its template version is older than the template's latest (a
pinned `gold@2` too: pinning chooses what it runs, not whether it is current), or when the code
version its last successful create/update applied differs from the service's. One that never
applied any code counts as behind once it exists; while its first create runs (PROVISIONING)
it does not, and a DESTROYED environment is never outdated.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import BindParameter, ColumnElement, Subquery, and_, func, not_, or_

from provisioner.environments.models import EnvironmentRow, EnvironmentState


def outdated_reasons(
    row: EnvironmentRow, latest_versions: Mapping[str, int], service_code_version: str
) -> list[str]:
    if row.state == EnvironmentState.DESTROYED:
        return []
    reasons = []
    name, version = row.template_name, row.template_version
    latest = latest_versions.get(name, version)
    if latest > version:
        reasons.append(f"template {name}@{version}, latest {name}@{latest}")
    code = row.code_version
    if code != service_code_version and not (
        code is None and row.state == EnvironmentState.PROVISIONING
    ):
        reasons.append(f"code {code or 'none'}, service {service_code_version}")
    return reasons


def outdated_condition(
    latest: Subquery, outdated: bool, service_code_version: str | BindParameter[str]
) -> ColumnElement[bool]:
    """Whether an environment is outdated (or, with `outdated=False`, current), given `latest`,
    `latest_versions_query()` joined on the environment's template name."""
    # Every term is NOT NULL (coalesce, explicit IS NULL), so NOT(condition) is its complement.
    template_behind = EnvironmentRow.template_version < func.coalesce(
        latest.c.latest, EnvironmentRow.template_version
    )
    code_behind = or_(
        and_(
            EnvironmentRow.code_version.is_(None),
            EnvironmentRow.state != EnvironmentState.PROVISIONING,
        ),
        and_(
            EnvironmentRow.code_version.is_not(None),
            EnvironmentRow.code_version != service_code_version,
        ),
    )
    condition: ColumnElement[bool] = and_(
        EnvironmentRow.state != EnvironmentState.DESTROYED, or_(template_behind, code_behind)
    )
    return condition if outdated else not_(condition)
