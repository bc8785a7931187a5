"""`provisioner rollout start|list|show|watch|pause|resume|cancel`: fleet rollouts in waves
(docs/architecture.md §7)."""

# No `from __future__ import annotations`: the commands' annotations are the option types
# `register` receives, which Typer must see as objects, not as names it cannot resolve.
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from provisioner.cli import render
from provisioner.cli.client import ApiClient, CliError, follow_rollout, segment
from provisioner.cli.sse import ServerSentEvent

# `rollout watch` (and `start --watch`) exit with this unless the rollout SUCCEEDED.
EXIT_ROLLOUT_FAILED = 3

RolloutId = Annotated[str, typer.Argument(help="Rollout id.", show_default=False)]


def selector(
    tenants: list[str],
    template: str | None,
    outdated: bool | None,
    tags: Mapping[str, str],
    environments: list[str],
) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if tenants:
        chosen["tenants"] = tenants
    if template is not None:
        chosen["template"] = template
    if outdated is not None:
        chosen["outdated"] = outdated
    if tags:
        chosen["tags"] = dict(tags)
    if environments:
        chosen["environments"] = environments
    return chosen


def _counts(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    done = [
        f"{counts[state]} {state.lower()}"
        for state in counts
        if counts[state] and state != "PENDING"
    ]
    return f"{total} targets" + (f": {', '.join(done)}" if done else "")


def rollout_line(rollout: Mapping[str, Any]) -> Text:
    text = Text.assemble(
        f"{rollout['action']} rollout ",
        (rollout["id"], "bold"),
        " ",
        render.state(rollout["state"]),
        f" ({_counts(rollout['counts'])})",
    )
    if rollout.get("reason"):
        text.append(f" — {rollout['reason']}", style="red" if rollout["state"] == "HALTED" else "")
    return text


def rollouts_table(page: Mapping[str, Any]) -> RenderableType:
    items = page["items"]
    if not items:
        return Text("No rollouts.", style="dim")
    table = Table(box=None, header_style="bold")
    for column in ("ID", "STATE", "ACTION", "TENANT", "TARGETS", "CREATED"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item["id"],
            render.state(item["state"]),
            item["action"],
            item.get("tenant") or "—",
            _counts(item["counts"]),
            render.ago(item["createdAt"]),
        )
    return table


def rollout_detail(rollout: Mapping[str, Any]) -> RenderableType:
    table = Table(box=None, header_style="bold")
    for column in ("TARGET", "WAVE", "STATE", "TEMPLATE", "ATTEMPTS", "OPERATION", "REASON"):
        table.add_column(column)
    for target in rollout["targets"]:
        goal = target["template"]
        table.add_row(
            f"{target['tenant']}/{target['name']}" + (" (canary)" if target["canary"] else ""),
            str(target["wave"]),
            render.state(target["state"]),
            f"{goal['name']}@{target['fromTemplate']['version']}"
            + (f" → {goal['version']}" if goal["version"] is not None else ""),
            str(target["attempts"]),
            target.get("operationId") or "—",
            target.get("reason") or "",
        )
    return Group(rollout_line(rollout), table)


def event_line(event: ServerSentEvent) -> Text:
    """One line per rollout event, for `watch`'s progress on stderr."""
    body = event.json()
    style = "red" if event.event in ("target.failed", "rollout.halting", "rollout.halted") else ""
    if event.event in ("target.succeeded", "rollout.succeeded"):
        style = "green"
    return Text(f"{event.event}: {body['message']}", style=style)


def watch(api: ApiClient, err: Console, rollout_id: str) -> dict[str, Any]:
    return follow_rollout(
        api, rollout_id, lambda event: err.print(event_line(event), soft_wrap=True)
    )


def _require_success(rollout: Mapping[str, Any]) -> None:
    if rollout["state"] != "SUCCEEDED":
        reason = f": {rollout['reason']}" if rollout.get("reason") else ""
        raise CliError(f"rollout {rollout['id']} {rollout['state']}{reason}", EXIT_ROLLOUT_FAILED)


def register(
    rollout_app: typer.Typer,
    handled: Callable[[Callable[..., None]], Callable[..., None]],
    state_of: Callable[[typer.Context], Any],
    pairs_of: Callable[[str, list[str]], dict[str, str]],
    json_option: Any,
) -> None:
    """The commands, on the CLI's own state, error handling and option types."""

    @rollout_app.command("start")
    @handled
    def rollout_start(
        ctx: typer.Context,
        tenant: Annotated[
            list[str] | None,
            typer.Option("--tenant", help="Only this tenant (repeatable).", show_default=False),
        ] = None,
        template: Annotated[
            str | None,
            typer.Option(help='Only environments on this template ("gold" or "gold@1").'),
        ] = None,
        outdated: Annotated[
            bool | None,
            typer.Option("--outdated/--current", help="Only outdated (or only current) ones."),
        ] = None,
        tag: Annotated[
            list[str] | None,
            typer.Option(
                "--tag", "-t", metavar="KEY=VALUE", help="Carrying this tag (repeatable)."
            ),
        ] = None,
        env: Annotated[
            list[str] | None,
            typer.Option("--env", metavar="TENANT/NAME", help="Exactly these (repeatable)."),
        ] = None,
        action: Annotated[str, typer.Option(help='"update" or "refresh".')] = "update",
        to: Annotated[
            int | None,
            typer.Option("--to", help="update: the template version to move to (default latest)."),
        ] = None,
        canary: Annotated[int, typer.Option(help="Targets updated first, alone.")] = 1,
        max_concurrent: Annotated[int, typer.Option(help="Targets at a time.")] = 1,
        max_failures: Annotated[int, typer.Option(help="Failures tolerated; one more halts.")] = 0,
        verify: Annotated[
            bool, typer.Option("--verify", help="Each target must pass a data-plane canary.")
        ] = False,
        verify_timeout: Annotated[float, typer.Option(help="Seconds per canary.")] = 120,
        force: Annotated[
            bool, typer.Option("--force", help="Also targets already current.")
        ] = False,
        follow: Annotated[
            bool,
            typer.Option(
                "--watch", help="Follow the rollout until it ends (exit 3 unless SUCCEEDED)."
            ),
        ] = False,
        as_json: json_option = False,
    ) -> None:
        """Start a rollout over a fixed snapshot of the environments the options select."""
        state = state_of(ctx)
        body: dict[str, Any] = {
            "selector": selector(
                tenant or [], template, outdated, pairs_of("--tag", tag or []), env or []
            ),
            "action": action,
            "strategy": {
                "canary": canary,
                "maxConcurrent": max_concurrent,
                "maxFailures": max_failures,
                "verify": verify,
                "verifyTimeoutSeconds": verify_timeout,
                "force": force,
            },
        }
        if to is not None:
            body["templateVersion"] = to
        rollout = state.api.call("POST", "/rollouts", json=body)
        if follow:
            rollout = state.api.get(f"/rollouts/{segment(rollout['id'])}")
            state.err.print(rollout_line(rollout), soft_wrap=True)
            rollout = watch(state.api, state.err, rollout["id"])
        state.show(rollout, as_json, rollout_detail)
        if not follow and not as_json:
            state.err.print(
                Text(f"follow it with: provisioner rollout watch {rollout['id']}", style="dim"),
                soft_wrap=True,
            )
        if follow:
            _require_success(rollout)

    @rollout_app.command("list")
    @handled
    def rollout_list(
        ctx: typer.Context,
        state_filter: Annotated[
            str | None, typer.Option("--state", help="Only rollouts in this state.")
        ] = None,
        as_json: json_option = False,
    ) -> None:
        """Rollouts, newest first."""
        state = state_of(ctx)
        params: dict[str, Any] = {"limit": 500}
        if state_filter:
            params["state"] = state_filter
        state.show(state.api.get("/rollouts", **params), as_json, rollouts_table)

    @rollout_app.command("show")
    @handled
    def rollout_show(
        ctx: typer.Context, rollout_id: RolloutId, as_json: json_option = False
    ) -> None:
        """A rollout and every target: wave, state, template move, operation, reason."""
        state = state_of(ctx)
        state.show(state.api.get(f"/rollouts/{segment(rollout_id)}"), as_json, rollout_detail)

    @rollout_app.command("watch")
    @handled
    def rollout_watch(
        ctx: typer.Context, rollout_id: RolloutId, as_json: json_option = False
    ) -> None:
        """Follow a rollout's events live; exit 3 unless it SUCCEEDED."""
        state = state_of(ctx)
        rollout = watch(state.api, state.err, rollout_id)
        state.show(rollout, as_json, rollout_detail)
        _require_success(rollout)

    def action(verb: str, summary: str) -> None:
        def command(
            ctx: typer.Context, rollout_id: RolloutId, as_json: json_option = False
        ) -> None:
            state = state_of(ctx)
            rollout = state.api.call("POST", f"/rollouts/{segment(rollout_id)}/{verb}")
            state.show(rollout, as_json, rollout_line)

        command.__doc__ = summary
        command.__name__ = f"rollout_{verb}"
        rollout_app.command(verb)(handled(command))

    action("pause", "Pause: start no new target (running ones finish).")
    action("resume", "Resume a paused rollout.")
    action("cancel", "Cancel: skip pending targets and unstarted operations; running ones finish.")
