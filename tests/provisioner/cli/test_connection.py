"""Reaching the service: where the URL and key come from, and the one-line errors when the key
is missing or wrong, the service is unreachable, or something else answers."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from provisioner.cli.client import CliSettings, HttpClient
from tests.provisioner.cli.conftest import Outcome, invoke

Cli = Callable[..., Outcome]


def test_missing_key(cli: Cli) -> None:
    outcome = cli("env", "list", key=None)
    assert outcome.code == 1
    assert outcome.error_line() == "error: no API key: set PROVISIONER_API_KEY (or pass --api-key)"


def test_wrong_key_is_a_one_line_401_that_never_shows_the_key(cli: Cli) -> None:
    secret = "mdp_wrong-but-secret-value"
    for outcome in (cli("--api-key", secret, "env", "list"), cli("env", "list", key=secret)):
        assert outcome.code == 1
        assert outcome.error_line() == "error: unauthorized: invalid or revoked API key"
        assert secret not in outcome.result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("source", ["option", "environment"])
def test_unreachable_service_is_one_line(source: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    args = ["--url", url] if source == "option" else []
    env = {"PROVISIONER_URL": url} if source == "environment" else {}
    # No client factory: the CLI's own httpx client, as users run it.
    outcome = invoke(None, [*args, "env", "list"], env=env)
    assert outcome.code == 1
    assert outcome.error_line().startswith(f"error: cannot reach the provisioner at {url}: ")


def test_settings_default_to_the_local_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_URL", raising=False)
    monkeypatch.delenv("PROVISIONER_API_KEY", raising=False)
    settings = CliSettings()
    assert settings.url == "http://127.0.0.1:8000"
    assert settings.api_key is None


def _answering(status: int, text: str) -> Callable[[CliSettings], HttpClient]:
    def factory(settings: CliSettings) -> HttpClient:
        transport = httpx.MockTransport(lambda _request: httpx.Response(status, text=text))
        return httpx.Client(base_url=settings.url, transport=transport)

    return factory


def test_a_non_api_error_page_is_one_line() -> None:
    outcome = invoke(_answering(502, "<html>\n<h1>Bad Gateway</h1>\n</html>"), ["env", "list"])
    assert outcome.code == 1
    assert outcome.error_line() == "error: HTTP 502: <html> <h1>Bad Gateway</h1> </html>"


def test_a_non_json_success_says_the_url_may_be_wrong() -> None:
    outcome = invoke(_answering(200, "<html>hello</html>"), ["env", "list"])
    assert outcome.code == 1
    assert outcome.error_line() == (
        "error: the service at http://127.0.0.1:8000 did not answer with JSON (HTTP 200); "
        "is PROVISIONER_URL right?"
    )
