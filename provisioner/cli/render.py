"""How the CLI shows API objects with rich: tables, detail panels, operation progress.

Everything from the API is rendered as plain text (the consoles have markup off), so a `[red]`
in an environment's tag or an error message is shown, not interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from provisioner.cli.sse import ServerSentEvent

STATE_STYLES: Mapping[str, str] = {
    "READY": "green",
    "SUCCEEDED": "green",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "INTERRUPTED": "yellow",
    "CANCELLED": "dim",
    "DESTROYED": "dim",
}


def make_console(*, stderr: bool = False) -> Console:
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def state(value: str | None) -> Text:
    if not value:
        return Text("—", style="dim")
    return Text(value, style=STATE_STYLES.get(value, "cyan"))


def _when(value: str | int | float) -> datetime:
    """ISO 8601 text, or epoch milliseconds (SQS reports SentTimestamp that way)."""
    if isinstance(value, int | float) or value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return then if then.tzinfo else then.replace(tzinfo=UTC)


def ago(value: str | int | float | None, now: datetime | None = None) -> str:
    if value is None or value == "":
        return "—"
    try:
        then = _when(value)
    except ValueError:
        return str(value)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def changes(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{step} {count}" for step, count in (counts or {}).items())


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", expand=False)


def _pairs(rows: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in rows:
        if not isinstance(value, Text):
            value = Text("—", style="dim") if value is None else Text(str(value))
        table.add_row(label, value)
    return table


# --- environments and operations ---


def environments_table(page: Mapping[str, Any]) -> RenderableType:
    items = page["items"]
    if not items:
        return Text("No environments.", style="dim")
    table = _table()
    columns = ("TENANT", "NAME", "STATE", "TEMPLATE", "ENGINE", "REGION", "LAST OPERATION", "AGE")
    for column in columns:
        table.add_column(column)
    for env in items:
        last = env.get("lastOperation")
        template = env.get("template")
        table.add_row(
            env["tenant"],
            env["name"],
            state(env["state"]),
            Text.assemble(
                f"{template['name']}@{template['version']}" if template else "—",
                (" outdated", "yellow") if env.get("outdated") else "",
            ),
            env["engine"],
            env["region"],
            Text.assemble(f"{last['kind']} ", state(last["state"])) if last else Text("—"),
            ago(env.get("createdAt")),
        )
    shown = f"{page['offset'] + 1}-{page['offset'] + len(items)} of {page['total']}"
    return Group(table, Text(f"showing {shown}", style="dim"))


def operation_summary(operation: Mapping[str, Any]) -> Text:
    text = Text.assemble(
        f"{operation['kind']} {operation['tenant']}/{operation['name']}: operation ",
        (operation["id"], "bold"),
        " ",
        state(operation["state"]),
    )
    if operation.get("changes"):
        text.append(f" ({changes(operation['changes'])})")
    if operation.get("error"):
        error = operation["error"]
        text.append(f" — {error['code']}: {error['message']}", style="red")
    return text


def environment_detail(env: Mapping[str, Any]) -> RenderableType:
    last = env.get("lastOperation")
    rows: list[tuple[str, Any]] = [
        ("Environment", f"{env['tenant']}/{env['name']}"),
        ("State", state(env["state"])),
        ("Engine", env["engine"]),
        ("Region", env["region"]),
        ("Created", f"{env['createdAt']} ({ago(env['createdAt'])})"),
        ("Updated", f"{env['updatedAt']} ({ago(env['updatedAt'])})"),
    ]
    if env.get("failureReason"):
        rows.append(("Failure", Text(env["failureReason"], style="red")))
    if last:
        rows.append(("Last operation", operation_summary(last)))
    if env.get("awsEndpointUrl"):
        rows.append(("AWS endpoint", env["awsEndpointUrl"]))
    parts: list[RenderableType] = [_pairs(rows)]
    config = env.get("config") or {}
    parts += [Text("\nConfiguration", style="bold underline"), _pairs(sorted(config.items()))]
    tags = env.get("tags") or {}
    parts.append(Text("\nTags", style="bold underline"))
    parts.append(_pairs(sorted(tags.items())) if tags else Text("none", style="dim"))
    outputs = env.get("outputs") or {}
    parts.append(Text("\nOutputs", style="bold underline"))
    parts.append(_pairs(sorted(outputs.items())) if outputs else Text("none yet", style="dim"))
    return Group(*parts)


class OperationProgress:
    """A progress bar fed by an operation's events; notable events are printed above it."""

    def __init__(self, console: Console, operation: Mapping[str, Any]) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        label = f"{operation['kind']} {operation['tenant']}/{operation['name']}"
        progress = operation.get("progress") or {}
        self.task = self.progress.add_task(
            label, total=progress.get("total") or None, completed=progress.get("done", 0)
        )

    def __enter__(self) -> OperationProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: ServerSentEvent) -> None:
        try:
            data = event.json()
        except ValueError:
            data = {"message": event.data}
        progress = data.get("progress") or {}
        if progress.get("total"):
            self.progress.update(self.task, total=progress["total"], completed=progress["done"])
        message = str(data.get("message", ""))
        if event.event == "resource.failed" or data.get("severity") == "error":
            self.progress.console.print(Text(f"✗ {message}", style="red"))
        elif event.event == "resource.finished":
            self.progress.console.print(Text(f"✓ {message}", style="green"))
        elif event.event in ("diagnostic", "summary", "operation.started"):
            self.progress.console.print(Text(f"· {message}", style="dim"))
        elif event.event == "operation.finished":
            self.progress.console.print(Text(f"· {message}", style="bold"))


# --- files and dead-letter queues ---


def files_table(page: Mapping[str, Any]) -> RenderableType:
    counts = page.get("counts") or {}
    summary = Text("  ".join(f"{name} {count}" for name, count in counts.items()), style="dim")
    if page.get("truncated"):
        summary.append("  (more files than one listing scans: filter with --key)")
    items = page.get("items") or []
    if not items:
        return Group(summary, Text("No files.", style="dim"))
    table = _table()
    for column in ("FILE ID", "OBJECT KEY", "STATUS", "STAGE", "ATTEMPT", "ROWS", "UPDATED"):
        table.add_column(column, overflow="fold")
    for file in items:
        table.add_row(
            file["fileId"][:12],
            file["objectKey"],
            state(file["status"]),
            file.get("stage") or "—",
            _text(file.get("attempt")),
            _text(file.get("rowCount")),
            ago(file.get("updatedAt")),
        )
    parts: list[RenderableType] = [summary, table]
    if page.get("nextCursor"):
        parts.append(Text(f"more: --cursor {page['nextCursor']}", style="dim"))
    return Group(*parts)


def file_detail(file: Mapping[str, Any]) -> RenderableType:
    error = file.get("error")
    rows: list[tuple[str, Any]] = [
        ("File id", file["fileId"]),
        ("Object key", file["objectKey"]),
        ("Bucket", file.get("bucket", "—")),
        ("Version", file.get("versionId") or "—"),
        ("Status", state(file["status"])),
        ("Stage", file.get("stage") or "—"),
        ("Attempt", file.get("attempt", 1)),
        ("Received", file.get("receivedAt", "—")),
        ("Updated", file.get("updatedAt", "—")),
        ("Rows", file.get("rowCount", "—")),
        ("Rejected rows", file.get("rejectedRows", "—")),
        ("Result", file.get("resultKey") or "—"),
    ]
    if error:
        rows.append(("Error", Text(_error(error), style="red")))
    # Earlier attempts: `previousErrors` (a list) or `lastError` (the one before a retry).
    earlier = file.get("previousErrors") or ([file["lastError"]] if file.get("lastError") else [])
    for previous in earlier:
        rows.append(("Earlier error", Text(_error(previous), style="yellow")))
    parts: list[RenderableType] = [_pairs(rows)]
    symbols = file.get("symbols") or {}
    if symbols:
        table = _table("Symbols")
        for column in ("SYMBOL", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME", "VWAP", "TRADES"):
            table.add_column(column, justify="left" if column == "SYMBOL" else "right")
        for symbol, values in sorted(symbols.items()):
            table.add_row(
                symbol,
                *(
                    _text(values.get(key))
                    for key in ("open", "high", "low", "close", "volume", "vwap", "trades")
                ),
            )
        parts.append(table)
    return Group(*parts)


def _error(error: Mapping[str, Any]) -> str:
    return f"{error.get('stage')} · {error.get('type')}: {error.get('message')}"


def dlq_tables(answer: Mapping[str, Any], *, messages: bool) -> RenderableType:
    queues = answer.get("queues") or []
    summary = _table("Dead-letter queues")
    summary.add_column("QUEUE")
    summary.add_column("DEPTH", justify="right")
    for queue in queues:
        summary.add_row(
            queue["name"], Text(str(queue["depth"]), style="red" if queue["depth"] else "")
        )
    parts: list[RenderableType] = [summary]
    if messages:
        for queue in queues:
            if not queue.get("messages"):
                continue
            table = _table(f"{queue['name']} DLQ")
            for column in ("MESSAGE", "FILE ID", "OBJECT KEY", "STAGE", "REASON", "SENT"):
                table.add_column(column, overflow="fold")
            for message in queue["messages"]:
                table.add_row(
                    _text(message.get("messageId"))[:12],
                    _text(message.get("fileId"))[:12],
                    _text(message.get("objectKey")),
                    _text(message.get("stage")),
                    _text(message.get("reason")),
                    ago(message.get("sentAt")),
                )
            parts.append(table)
    return Group(*parts)


# --- API keys ---


def keys_table(keys: list[Mapping[str, Any]]) -> RenderableType:
    if not keys:
        return Text("No API keys.", style="dim")
    table = _table()
    for column in ("ID", "SCOPE", "PREFIX", "DESCRIPTION", "CREATED", "LAST USED", "REVOKED"):
        table.add_column(column, overflow="fold")
    for key in keys:
        table.add_row(
            key["id"],
            key["scope"],
            key["prefix"],
            key.get("description") or "",
            ago(key.get("createdAt")),
            ago(key.get("lastUsedAt")),
            Text(key["revokedAt"], style="red") if key.get("revokedAt") else Text("—"),
        )
    return table
