"""The `provisioner` commands: env, op, files, dlq, keys, template and rollout, over the
service's HTTP API.

Results go to stdout (tables, or JSON with `--json` for scripts); progress and errors go to
stderr. Every failure ends with exit status 1 (3: a watched operation or rollout did not
succeed; 2: bad usage) and one line, `error: <code>: <detail>`, never a traceback. The API key
is never printed.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, ParamSpec

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from provisioner.cli import render, rollouts, templates
from provisioner.cli.client import (
    ApiClient,
    CliError,
    CliSettings,
    default_client,
    follow_operation,
    segment,
)

EXIT_OPERATION_FAILED: Final = 3
EXIT_USAGE: Final = 2

app = typer.Typer(
    name="provisioner",
    help="Provision market-data pipeline environments through the provisioner service.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks (with their locals, which hold the key) are never shown; errors are one line.
    pretty_exceptions_enable=False,
)
env_app = typer.Typer(
    help="Create, list, show, change and destroy environments.", no_args_is_help=True
)
op_app = typer.Typer(help="Follow and cancel operations.", no_args_is_help=True)
files_app = typer.Typer(help="An environment's files and their status.", no_args_is_help=True)
dlq_app = typer.Typer(help="An environment's dead-letter queues.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin key needed).", no_args_is_help=True)
template_app = typer.Typer(help="Pipeline-config templates.", no_args_is_help=True)
rollout_app = typer.Typer(help="Fleet rollouts in waves.", no_args_is_help=True)
app.add_typer(env_app, name="env")
app.add_typer(op_app, name="op")
app.add_typer(files_app, name="files")
app.add_typer(dlq_app, name="dlq")
app.add_typer(keys_app, name="keys")
app.add_typer(template_app, name="template")
app.add_typer(rollout_app, name="rollout")


@dataclass
class CliState:
    api: ApiClient
    out: Console
    err: Console

    def print_json(self, data: Any) -> None:
        self.out.out(json.dumps(data, indent=2, sort_keys=True))

    def show(self, data: Any, as_json: bool, view: Callable[[Any], RenderableType]) -> None:
        if as_json:
            self.print_json(data)
        else:
            # A one-line summary stays on one line even in a narrow terminal or a pipe.
            rendered = view(data)
            self.out.print(rendered, soft_wrap=isinstance(rendered, Text))


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Service URL (default: $PROVISIONER_URL, else http://127.0.0.1:8000).",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="API key (default: $PROVISIONER_API_KEY). Prefer the variable: command "
            "lines are visible to other users of the machine.",
            show_default=False,
        ),
    ] = None,
) -> None:
    # Tests (and embedders) hand in a client factory as the context object.
    factory = ctx.obj if callable(ctx.obj) else default_client
    overrides: dict[str, Any] = {}
    if url:
        overrides["url"] = url
    if api_key:
        overrides["api_key"] = api_key
    settings = CliSettings(**overrides)
    api = ApiClient(settings, factory)
    ctx.obj = CliState(api, render.make_console(), render.make_console(stderr=True))
    if factory is default_client:
        ctx.call_on_close(api.close)


P = ParamSpec("P")


def handled(command: Callable[P, None]) -> Callable[P, None]:
    """Turns a `CliError` into its one line on stderr and its exit status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CliError as error:
            console = render.make_console(stderr=True)
            console.print(Text(f"error: {error.message}", style="red"), soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def _state(ctx: typer.Context) -> CliState:
    state: CliState = ctx.obj
    return state


def _env_path(tenant: str, name: str) -> str:
    return f"/environments/{segment(tenant)}/{segment(name)}"


def _pairs(option: str, items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise CliError(f"{option} {item!r}: expected KEY=VALUE", EXIT_USAGE)
        pairs[key.strip()] = value
    return pairs


def _config(items: list[str]) -> dict[str, Any]:
    """Values are JSON scalars when they parse as one (512, 0.05, true, null), else strings."""
    config: dict[str, Any] = {}
    for key, raw in _pairs("--config", items).items():
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        config[key] = value if isinstance(value, str | int | float | bool) or value is None else raw
    return config


def _follow(state: CliState, operation: dict[str, Any]) -> dict[str, Any]:
    with render.OperationProgress(state.err, operation) as progress:
        return follow_operation(state.api, operation["id"], progress.on_event)


def _finish(state: CliState, operation: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    """After a 202: watch the operation (with --wait) or say how to; then report it."""
    if wait:
        operation = _follow(state, operation)
    state.show(operation, as_json, render.operation_summary)
    if not wait and not as_json:
        state.err.print(
            Text(f"follow it with: provisioner op watch {operation['id']}", style="dim"),
            soft_wrap=True,
        )
    if wait and operation["state"] != "SUCCEEDED":
        error = operation.get("error") or {}
        reason = f": {error['code']}: {error['message']}" if error else ""
        raise CliError(
            f"operation {operation['id']} {operation['state']}{reason}", EXIT_OPERATION_FAILED
        )


Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
Wait = Annotated[bool, typer.Option("--wait", help="Follow the operation until it ends.")]
Tenant = Annotated[str, typer.Argument(help="Tenant id, e.g. acme.", show_default=False)]
Name = Annotated[str, typer.Argument(help="Environment name, e.g. dev.", show_default=False)]
ConfigItems = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        metavar="KEY=VALUE",
        help="A config field, e.g. memory_mb=1024 (repeatable; values parse as JSON scalars).",
        show_default=False,
    ),
]
TagItems = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", "-t", metavar="KEY=VALUE", help="A tag (repeatable).", show_default=False
    ),
]


# --- env ---


@env_app.command("create")
@handled
def env_create(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    region: Annotated[
        str | None, typer.Option(help="AWS region (default: us-east-1).", show_default=False)
    ] = None,
    config: ConfigItems = None,
    tag: TagItems = None,
    template: Annotated[
        str | None,
        typer.Option(help="Template: NAME (its latest) or NAME@VERSION.", show_default=False),
    ] = None,
    wait: Wait = False,
    as_json: Json = False,
) -> None:
    """Create an environment (or retry a FAILED one, or re-create a DESTROYED one)."""
    state = _state(ctx)
    body: dict[str, Any] = {"tenant": tenant, "name": name}
    if region:
        body["region"] = region
    if template:
        body["template"] = template
    if config:
        body["config"] = _config(config)
    if tag:
        body["tags"] = _pairs("--tag", tag)
    operation = state.api.call("POST", "/environments", json=body)
    _finish(state, operation, wait=wait, as_json=as_json)


@env_app.command("list")
@handled
def env_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    state_filter: Annotated[
        str | None,
        typer.Option("--state", help="Only this state (READY, FAILED, PROVISIONING…)."),
    ] = None,
    template: Annotated[str | None, typer.Option(help="Only this template.")] = None,
    outdated: Annotated[
        bool | None,
        typer.Option("--outdated/--current", help="Only outdated (or only current) environments."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """List environments, newest first."""
    state = _state(ctx)
    page = state.api.get(
        "/environments",
        tenant=tenant,
        state=state_filter.upper() if state_filter else None,
        template=template,
        outdated=None if outdated is None else str(outdated).lower(),
        limit=limit,
        offset=offset,
    )
    state.show(page, as_json, render.environments_table)


@env_app.command("show")
@handled
def env_show(ctx: typer.Context, tenant: Tenant, name: Name, as_json: Json = False) -> None:
    """An environment's state, config, tags, outputs and last operation."""
    state = _state(ctx)
    state.show(state.api.get(_env_path(tenant, name)), as_json, render.environment_detail)


@env_app.command("update")
@handled
def env_update(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    config: ConfigItems = None,
    tag: TagItems = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    wait: Wait = False,
    as_json: Json = False,
) -> None:
    """Change config fields and/or replace the tags (--tag replaces them all)."""
    state = _state(ctx)
    body: dict[str, Any] = {}
    if config:
        body["config"] = _config(config)
    if tag or clear_tags:
        body["tags"] = _pairs("--tag", tag or [])
    if not body:
        raise CliError(
            "nothing to update: pass --config KEY=VALUE, --tag KEY=VALUE or --clear-tags",
            EXIT_USAGE,
        )
    operation = state.api.call("PATCH", _env_path(tenant, name), json=body)
    _finish(state, operation, wait=wait, as_json=as_json)


@env_app.command("extend")
@handled
def env_extend(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    ttl_minutes: Annotated[
        int | None, typer.Option("--ttl-minutes", help="Expire this many minutes from now.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Expire at this ISO 8601 time (with offset).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Move an environment's expiry (no operation: the service destroys it when it expires)."""
    if (ttl_minutes is None) == (until is None):
        raise CliError("pass exactly one of --ttl-minutes N or --until ISO", EXIT_USAGE)
    state = _state(ctx)
    body = {"ttlMinutes": ttl_minutes} if ttl_minutes is not None else {"expiresAt": until}
    environment = state.api.call("PATCH", _env_path(tenant, name), json=body)
    state.show(environment, as_json, render.environment_detail)


@env_app.command("delete")
@handled
def env_delete(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for the typed confirmation.")
    ] = False,
    wait: Wait = False,
    as_json: Json = False,
) -> None:
    """Destroy an environment: every resource, every object version (typed confirmation)."""
    state = _state(ctx)
    label = f"{tenant}/{name}"
    if not yes:
        typed = typer.prompt(
            f"This destroys every resource of {label}. Type {label} to confirm",
            default="",
            show_default=False,
            err=True,
        )
        if not sys.stdin.isatty():
            state.err.print()  # piped answers are not echoed: end the prompt's line
        if typed.strip() != label:
            raise CliError(f"confirmation did not match; {label} was not destroyed")
    operation = state.api.call("DELETE", _env_path(tenant, name))
    _finish(state, operation, wait=wait, as_json=as_json)


def _environment_operation(kind: str, summary: str) -> None:
    """`env refresh` and `env preview`: an operation on the environment as it is."""

    @env_app.command(kind, help=summary)
    @handled
    def command(
        ctx: typer.Context, tenant: Tenant, name: Name, wait: Wait = False, as_json: Json = False
    ) -> None:
        state = _state(ctx)
        operation = state.api.call("POST", f"{_env_path(tenant, name)}/{kind}")
        _finish(state, operation, wait=wait, as_json=as_json)


_environment_operation("refresh", "Check for drift between the stack and what exists.")
_environment_operation(
    "preview", "Plan what an update would change (the counts show when it ends)."
)


# --- op ---

OperationId = Annotated[str, typer.Argument(help="Operation id.", show_default=False)]


@op_app.command("watch")
@handled
def op_watch(ctx: typer.Context, operation_id: OperationId, as_json: Json = False) -> None:
    """Follow an operation live (progress bar); exit 3 unless it SUCCEEDED."""
    state = _state(ctx)
    operation = state.api.get(f"/operations/{segment(operation_id)}")
    _finish(state, operation, wait=True, as_json=as_json)


@op_app.command("show")
@handled
def op_show(ctx: typer.Context, operation_id: OperationId, as_json: Json = False) -> None:
    """An operation's state, progress, changes and error."""
    state = _state(ctx)
    operation = state.api.get(f"/operations/{segment(operation_id)}")
    state.show(operation, as_json, render.operation_summary)


@op_app.command("cancel")
@handled
def op_cancel(ctx: typer.Context, operation_id: OperationId, as_json: Json = False) -> None:
    """Cancel a queued operation at once, a running one gracefully."""
    state = _state(ctx)
    operation = state.api.call("POST", f"/operations/{segment(operation_id)}/cancel")
    state.show(operation, as_json, render.operation_summary)


# --- files ---

FileId = Annotated[str, typer.Argument(help="File id (sha256 hex).", show_default=False)]


@files_app.command("list")
@handled
def files_list(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    status: Annotated[
        str | None, typer.Option(help="Only this status (COMPLETED, FAILED…).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Only this object key.")] = None,
    canary: Annotated[
        bool, typer.Option("--canary", help="Only canary files (verified rollouts' uploads).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="Next page (from the previous page).")] = None,
    as_json: Json = False,
) -> None:
    """Files newest first, with counts by status (canary files only with --canary)."""
    state = _state(ctx)
    page = state.api.get(
        f"{_env_path(tenant, name)}/files",
        status=status.upper() if status else None,
        key=key,
        canary="true" if canary else None,
        limit=limit,
        cursor=cursor,
    )
    state.show(page, as_json, render.files_table)


@files_app.command("show")
@handled
def files_show(
    ctx: typer.Context, tenant: Tenant, name: Name, file_id: FileId, as_json: Json = False
) -> None:
    """One file's status, counts, error and per-symbol results."""
    state = _state(ctx)
    file = state.api.get(f"{_env_path(tenant, name)}/files/{segment(file_id)}")
    state.show(file, as_json, render.file_detail)


@files_app.command("retry")
@handled
def files_retry(
    ctx: typer.Context, tenant: Tenant, name: Name, file_id: FileId, as_json: Json = False
) -> None:
    """Start a new attempt of a FAILED file."""
    state = _state(ctx)
    file = state.api.call("POST", f"{_env_path(tenant, name)}/files/{segment(file_id)}/retry")
    state.show(
        file,
        as_json,
        lambda f: Text(
            f"retrying {f['objectKey']}: attempt {f.get('attempt') or '?'}, status {f['status']}"
        ),
    )


# --- dlq ---


@dlq_app.command("show")
@handled
def dlq_show(
    ctx: typer.Context,
    tenant: Tenant,
    name: Name,
    messages: Annotated[
        bool, typer.Option("--messages/--no-messages", help="Peek at the messages too.")
    ] = True,
    as_json: Json = False,
) -> None:
    """Depth of each dead-letter queue, and a peek at their messages (not consumed)."""
    state = _state(ctx)
    answer = state.api.get(f"{_env_path(tenant, name)}/dlq")
    state.show(answer, as_json, lambda a: render.dlq_tables(a, messages=messages))


@dlq_app.command("redrive")
@handled
def dlq_redrive(ctx: typer.Context, tenant: Tenant, name: Name, as_json: Json = False) -> None:
    """Move the ingest DLQ's messages back to the ingest queue."""
    state = _state(ctx)
    answer = state.api.call("POST", f"{_env_path(tenant, name)}/dlq/ingest/redrive")
    state.show(
        answer,
        as_json,
        lambda a: Text(f"moved {a['moved']} message(s) from the ingest DLQ to the ingest queue"),
    )


# --- keys ---


@keys_app.command("create")
@handled
def keys_create(
    ctx: typer.Context,
    scope: Annotated[
        str, typer.Option(help='"admin" or "tenant:<tenant id>".', show_default=False)
    ],
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: Json = False,
) -> None:
    """Create an API key. The key is printed once, alone on stdout; store it now."""
    state = _state(ctx)
    created = state.api.call(
        "POST", "/admin/api-keys", json={"scope": scope, "description": description}
    )
    if as_json:
        state.print_json(created)
        return
    state.err.print(
        Text(
            f"created API key {created['id']} (scope {created['scope']}); "
            "it is shown only now: store it safely",
            style="yellow",
        ),
        soft_wrap=True,
    )
    state.out.out(created["key"])


@keys_app.command("list")
@handled
def keys_list(ctx: typer.Context, as_json: Json = False) -> None:
    """API keys (ids, scopes and prefixes; never the keys)."""
    state = _state(ctx)
    state.show(state.api.get("/admin/api-keys"), as_json, render.keys_table)


@keys_app.command("revoke")
@handled
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id.", show_default=False)],
    as_json: Json = False,
) -> None:
    """Revoke an API key: it stops working at once."""
    state = _state(ctx)
    revoked = state.api.call("DELETE", f"/admin/api-keys/{segment(key_id)}")
    state.show(
        revoked,
        as_json,
        lambda k: Text(f"revoked API key {k['id']} (scope {k['scope']}, prefix {k['prefix']})"),
    )


templates.register(template_app, handled, _state, ConfigItems, _config, Json)
rollouts.register(rollout_app, handled, _state, _pairs, Json)
