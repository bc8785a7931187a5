"""Fixtures for the CLI tests: the service (scripted engine) behind a TestClient that the CLI
uses as its HTTP client, a runner that invokes `provisioner …` against it, and a stub of the
files/DLQ endpoints' contract for the commands whose routes are not in the service yet."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from provisioner.app import create_app
from provisioner.cli import app
from provisioner.cli.client import CliSettings, HttpClient
from tests.factories import ADMIN_KEY
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

Run = Callable[..., Result]


@dataclass
class Outcome:
    """What a user sees: exit status, stdout, stderr."""

    result: Result

    @property
    def code(self) -> int:
        return self.result.exit_code

    @property
    def out(self) -> str:
        return self.result.stdout

    @property
    def err(self) -> str:
        return self.result.stderr

    def error_line(self) -> str:
        """The one `error: …` line of a failed command (and proof that there is just one)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, self.err
        assert "Traceback" not in self.result.output
        assert errors[0] == lines[-1], self.err
        return errors[0]


def invoke(
    factory: Callable[[CliSettings], HttpClient] | None,
    args: Sequence[str],
    *,
    key: str | None = ADMIN_KEY,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> Outcome:
    environment = {"PROVISIONER_API_KEY": key, "PROVISIONER_URL": None, "COLUMNS": "200"}
    result = CliRunner().invoke(
        app,
        list(args),
        obj=factory,
        input=input,
        env={**environment, **(env or {})},
        catch_exceptions=False,
    )
    return Outcome(result)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'registry.db'}")
    with TestClient(create_app(settings, engine_reference=SCRIPTED_ENGINE)) as client:
        yield client


@pytest.fixture
def cli(service: TestClient) -> Callable[..., Outcome]:
    """`cli("env", "list")` runs `provisioner env list` against the service."""

    def run(*args: str, **kwargs: Any) -> Outcome:
        return invoke(lambda _settings: service, args, **kwargs)

    return run


# --- a stub of the files and DLQ contract (the lead's routes are not in the service yet) ---

FILE_ID_OK = "a" * 64
FILE_ID_FAILED = "f" * 64


def _file(file_id: str, key: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "fileId": file_id,
        "bucket": "p-acme-dev-abc123",
        "objectKey": key,
        "versionId": "v1",
        "status": status,
        "stage": extra.pop("stage", "aggregator"),
        "receivedAt": "2026-01-02T03:04:05Z",
        "updatedAt": "2026-01-02T03:04:09Z",
        "expirationTime": 1_770_000_000,
        "attempt": 1,
        **extra,
    }


@dataclass
class ContractStub:
    """Answers the files/DLQ endpoints for acme/dev as the contract says; records requests."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    dlq_depth: int = 2
    requests: list[httpx.Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files[FILE_ID_OK] = _file(
            FILE_ID_OK,
            "incoming/trades-1.csv",
            "COMPLETED",
            rowCount=1000,
            rejectedRows=2,
            symbolCount=1,
            resultKey=f"results/{FILE_ID_OK}.json",
            symbols={
                "AAPL": {
                    "open": 1.5, "high": 2.0, "low": 1.0, "close": 1.75, "volume": 300,
                    "vwap": 1.6, "trades": 3, "firstTs": "t0", "lastTs": "t1",
                }
            },
        )  # fmt: skip
        self.files[FILE_ID_FAILED] = _file(
            FILE_ID_FAILED,
            "incoming/bad header.csv",
            "FAILED",
            stage="validator",
            error={"stage": "validator", "type": "InvalidFileError", "message": "bad header"},
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {ADMIN_KEY}":
            return _error(401, "unauthorized", "invalid or revoked API key")
        parts = request.url.path.strip("/").split("/")
        if parts[:1] != ["environments"] or len(parts) < 4:
            return _error(404, "not_found", "Not Found")
        if parts[1:3] != ["acme", "dev"]:
            return _error(404, "not_found", f"environment {parts[1]}/{parts[2]} not found")
        rest = parts[3:]
        if rest == ["files"] and request.method == "GET":
            status = request.url.params.get("status")
            items = [f for f in self.files.values() if status in (None, f["status"])]
            counts = {s: 0 for s in ("RECEIVED", "COMPLETED", "FAILED")}
            for f in self.files.values():
                counts[f["status"]] = counts.get(f["status"], 0) + 1
            return httpx.Response(200, json={"items": items, "counts": counts, "nextCursor": None})
        if len(rest) == 2 and rest[0] == "files" and request.method == "GET":
            found = self.files.get(rest[1])
            if found is None:
                return _error(404, "not_found", f"file {rest[1]} not found")
            return httpx.Response(200, json=found)
        if len(rest) == 3 and rest[0] == "files" and rest[2] == "retry":
            found = self.files.get(rest[1])
            if found is None:
                return _error(404, "not_found", f"file {rest[1]} not found")
            if found["status"] != "FAILED":
                return _error(409, "conflict", f"file {rest[1]} is {found['status']}, not FAILED")
            found.update(
                status="RECEIVED",
                attempt=found["attempt"] + 1,
                previousErrors=[found.pop("error")],
            )
            return httpx.Response(202, json=found)
        if rest == ["dlq"]:
            message = {
                "messageId": "m-1",
                "fileId": FILE_ID_FAILED,
                "objectKey": "incoming/bad header.csv",
                "stage": "ingest",
                "reason": "StartExecution throttled",
                "sentAt": "2026-01-02T03:04:05Z",
            }
            queues = [
                {"name": "ingest", "depth": self.dlq_depth, "messages": [message] * self.dlq_depth},
                *({"name": n, "depth": 0, "messages": []} for n in ("validator", "processor")),
                {"name": "aggregator", "depth": 0, "messages": []},
            ]
            return httpx.Response(200, json={"queues": queues})
        if rest == ["dlq", "ingest", "redrive"] and request.method == "POST":
            moved, self.dlq_depth = self.dlq_depth, 0
            return httpx.Response(200, json={"moved": moved})
        return _error(404, "not_found", "Not Found")


def _error(status: int, code: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "detail": detail})


@pytest.fixture
def stub() -> ContractStub:
    return ContractStub()


@pytest.fixture
def stub_cli(stub: ContractStub) -> Callable[..., Outcome]:
    """`stub_cli("files", "list", "acme", "dev")` runs against the contract stub."""

    def factory(settings: CliSettings) -> HttpClient:
        return httpx.Client(base_url=settings.url, transport=httpx.MockTransport(stub.handle))

    def run(*args: str, **kwargs: Any) -> Outcome:
        return invoke(factory, args, **kwargs)

    return run
