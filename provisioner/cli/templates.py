"""`provisioner template publish|list|show`: pipeline-config templates (docs/architecture.md §7)."""

# No `from __future__ import annotations`: the commands' annotations are the option types
# `register` receives, which Typer must see as objects, not as names it cannot resolve.
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from provisioner.cli.client import ApiClient, ApiError, segment

TemplateName = Annotated[str, typer.Argument(help="Template name, e.g. gold.", show_default=False)]


def publish(
    api: ApiClient, name: str, config: Mapping[str, Any], description: str | None
) -> dict[str, Any]:
    """A new template's version 1, or, when the template exists, its next version."""
    body: dict[str, Any] = {"config": dict(config)}
    if description is not None:
        body["description"] = description
    try:
        created: dict[str, Any] = api.call("POST", "/admin/templates", json={"name": name, **body})
        return created
    except ApiError as error:
        if error.status != 409:
            raise
    added: dict[str, Any] = api.call(
        "POST", f"/admin/templates/{segment(name)}/versions", json=body
    )
    return added


def published_line(version: Mapping[str, Any]) -> Text:
    return Text(f"published {version['name']}@{version['version']}")


def templates_table(page: Mapping[str, Any]) -> RenderableType:
    items = page["items"]
    if not items:
        return Text("No templates.", style="dim")
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "LATEST", "DESCRIPTION"):
        table.add_column(column)
    for item in items:
        table.add_row(item["name"], str(item["latestVersion"]), item.get("description") or "")
    return table


def template_detail(template: Mapping[str, Any]) -> RenderableType:
    table = Table(box=None, header_style="bold")
    for column in ("VERSION", "BY", "DESCRIPTION", "CONFIG"):
        table.add_column(column)
    for version in template["versions"]:
        config = ", ".join(f"{k}={v}" for k, v in sorted(version["config"].items()))
        table.add_row(
            str(version["version"]),
            version["createdBy"],
            version.get("description") or "",
            config,
        )
    title = Text(f"{template['name']} (latest {template['latestVersion']})", style="bold")
    return Group(title, table)


def register(
    template_app: typer.Typer,
    handled: Callable[[Callable[..., None]], Callable[..., None]],
    state_of: Callable[[typer.Context], Any],
    config_items: Any,
    config_of: Callable[[list[str]], dict[str, Any]],
    json_option: Any,
) -> None:
    """The commands, on the CLI's own state, error handling and option types."""

    @template_app.command("publish")
    @handled
    def template_publish(
        ctx: typer.Context,
        name: TemplateName,
        config: config_items = None,
        description: Annotated[
            str | None, typer.Option(help="What this version is for.", show_default=False)
        ] = None,
        as_json: json_option = False,
    ) -> None:
        """Publish a template (version 1), or its next version if it exists (admin key)."""
        state = state_of(ctx)
        version = publish(state.api, name, config_of(config or []), description)
        state.show(version, as_json, published_line)

    @template_app.command("list")
    @handled
    def template_list(ctx: typer.Context, as_json: json_option = False) -> None:
        """Templates and their latest versions."""
        state = state_of(ctx)
        state.show(state.api.get("/templates", limit=500), as_json, templates_table)

    @template_app.command("show")
    @handled
    def template_show(ctx: typer.Context, name: TemplateName, as_json: json_option = False) -> None:
        """A template with every version's config."""
        state = state_of(ctx)
        state.show(state.api.get(f"/templates/{segment(name)}"), as_json, template_detail)
