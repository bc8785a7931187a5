"""`provisioner files …` and `provisioner dlq …` against a stub of their endpoints' contract
(docs/architecture.md §5.1 and the lead's brief: `/environments/{t}/{n}/files…`, `/dlq`,
`/dlq/ingest/redrive`),
since those routes are not in the service yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from provisioner.cli import render
from provisioner.cli.client import CliSettings, HttpClient
from tests.provisioner.cli.conftest import FILE_ID_FAILED, FILE_ID_OK, ContractStub, Outcome, invoke

Cli = Callable[..., Outcome]


def test_list_shows_counts_and_files(stub_cli: Cli, stub: ContractStub) -> None:
    outcome = stub_cli("files", "list", "acme", "dev")
    assert outcome.code == 0, outcome.err
    assert "COMPLETED 1" in outcome.out
    assert "FAILED 1" in outcome.out
    assert "incoming/trades-1.csv" in outcome.out
    assert "incoming/bad header.csv" in outcome.out


def test_list_passes_filters_and_prints_json(stub_cli: Cli, stub: ContractStub) -> None:
    outcome = stub_cli("files", "list", "acme", "dev", "--status", "failed", "--json")
    assert outcome.code == 0, outcome.err
    page = json.loads(outcome.out)
    assert [item["fileId"] for item in page["items"]] == [FILE_ID_FAILED]
    params = stub.requests[-1].url.params
    assert (params["status"], params["limit"]) == ("FAILED", "50")


def test_list_asks_for_canaries_only_when_told(stub_cli: Cli, stub: ContractStub) -> None:
    assert stub_cli("files", "list", "acme", "dev").code == 0
    assert "canary" not in stub.requests[-1].url.params
    assert stub_cli("files", "list", "acme", "dev", "--canary").code == 0
    assert stub.requests[-1].url.params["canary"] == "true"


def test_show_gives_the_error_or_the_symbols(stub_cli: Cli) -> None:
    completed = stub_cli("files", "show", "acme", "dev", FILE_ID_OK)
    assert completed.code == 0, completed.err
    assert "AAPL" in completed.out
    assert "1.75" in completed.out
    failed = stub_cli("files", "show", "acme", "dev", FILE_ID_FAILED)
    assert "validator · InvalidFileError: bad header" in failed.out


def test_retry_starts_a_new_attempt(stub_cli: Cli) -> None:
    outcome = stub_cli("files", "retry", "acme", "dev", FILE_ID_FAILED)
    assert outcome.code == 0, outcome.err
    assert outcome.out.strip() == "retrying incoming/bad header.csv: attempt 2, status RECEIVED"


def test_retry_of_a_file_that_did_not_fail_is_409(stub_cli: Cli) -> None:
    outcome = stub_cli("files", "retry", "acme", "dev", FILE_ID_OK)
    assert outcome.code == 1
    assert outcome.error_line() == f"error: conflict: file {FILE_ID_OK} is COMPLETED, not FAILED"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["files", "show", "acme", "dev", "0" * 64],
            f"error: not_found: file {'0' * 64} not found",
        ),
        (["files", "list", "acme", "prod"], "error: not_found: environment acme/prod not found"),
        (["dlq", "show", "acme", "prod"], "error: not_found: environment acme/prod not found"),
        (["dlq", "redrive", "acme", "prod"], "error: not_found: environment acme/prod not found"),
    ],
)
def test_unknown_file_or_environment_is_404(stub_cli: Cli, args: list[str], line: str) -> None:
    outcome = stub_cli(*args)
    assert outcome.code == 1
    assert outcome.error_line() == line


def test_dlq_show_peeks_at_messages(stub_cli: Cli) -> None:
    outcome = stub_cli("dlq", "show", "acme", "dev")
    assert outcome.code == 0, outcome.err
    assert "ingest" in outcome.out
    assert "StartExecution throttled" in outcome.out
    quiet = stub_cli("dlq", "show", "acme", "dev", "--no-messages")
    assert "StartExecution throttled" not in quiet.out
    depths = {
        q["name"]: q["depth"]
        for q in json.loads(stub_cli("dlq", "show", "acme", "dev", "--json").out)["queues"]
    }
    assert depths == {"ingest": 2, "validator": 0, "processor": 0, "aggregator": 0}


def test_dlq_redrive_moves_the_messages(stub_cli: Cli, stub: ContractStub) -> None:
    outcome = stub_cli("dlq", "redrive", "acme", "dev")
    assert outcome.code == 0, outcome.err
    assert outcome.out.strip() == "moved 2 message(s) from the ingest DLQ to the ingest queue"
    assert stub.dlq_depth == 0
    assert json.loads(stub_cli("dlq", "redrive", "acme", "dev", "--json").out) == {"moved": 0}


def test_bad_key_is_401(stub_cli: Cli) -> None:
    outcome = stub_cli("dlq", "show", "acme", "dev", key="mdp_nope")
    assert outcome.code == 1
    assert outcome.error_line() == "error: unauthorized: invalid or revoked API key"


def test_a_service_without_the_files_routes_says_so() -> None:
    def factory(settings: CliSettings) -> HttpClient:
        # What Starlette answers for a path no route serves.
        body = {"error": "not_found", "detail": "Not Found"}
        transport = httpx.MockTransport(lambda _request: httpx.Response(404, json=body))
        return httpx.Client(base_url=settings.url, transport=transport)

    outcome = invoke(factory, ["files", "list", "acme", "dev"])
    assert outcome.code == 1
    assert outcome.error_line() == (
        "error: not_found: the service has no such endpoint (is it older than this CLI?)"
    )


def test_show_lists_the_error_before_a_retry(stub_cli: Cli, stub: ContractStub) -> None:
    earlier = {"stage": "processor", "type": "InvalidFileError", "message": "too many bad rows"}
    stub.files[FILE_ID_FAILED]["lastError"] = earlier
    outcome = stub_cli("files", "show", "acme", "dev", FILE_ID_FAILED)
    assert "processor · InvalidFileError: too many bad rows" in outcome.out


@pytest.mark.parametrize(
    "when", ["2026-01-02T03:00:45Z", "2026-01-02T03:00:45+00:00", "1767322845000", 1767322845000]
)
def test_times_read_iso_or_epoch_milliseconds(when: str | int) -> None:
    # SQS reports SentTimestamp in epoch milliseconds; the status items use ISO 8601.
    now = datetime(2026, 1, 2, 3, 10, 45, tzinfo=UTC)
    assert render.ago(when, now=now) == "10m ago"
