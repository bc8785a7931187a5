"""The CLI's side of the HTTP API: its settings, an injectable HTTP client, one-line errors, and
following an operation's or a rollout's event stream across dropped connections.

The HTTP client is anything shaped like `httpx.Client` (`HttpClient`), made by a factory the
Typer context can carry, so tests run the CLI against the app's own `TestClient`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioner.cli.sse import ServerSentEvent, parse_events

DEFAULT_URL: Final = "http://127.0.0.1:8000"
# The service pings streams every 15 s, so a read that waits a minute means the link is dead.
_TIMEOUT: Final = httpx.Timeout(30.0, read=60.0)
FINAL_OPERATION_STATES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"})
FINAL_ROLLOUT_STATES: Final = frozenset({"SUCCEEDED", "HALTED", "CANCELLED"})
FINAL_ROLLOUT_EVENTS: Final = frozenset(
    f"rollout.{state.lower()}" for state in FINAL_ROLLOUT_STATES
)


class CliSettings(BaseSettings):
    """`PROVISIONER_URL` and `PROVISIONER_API_KEY`; `--url` / `--api-key` override them."""

    model_config = SettingsConfigDict(env_prefix="PROVISIONER_", extra="ignore")

    url: str = DEFAULT_URL
    api_key: SecretStr | None = None


class HttpResponse(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self, **kwargs: Any) -> Any: ...

    def iter_lines(self) -> Iterator[str]: ...

    def read(self) -> bytes: ...


class HttpClient(Protocol):
    """The part of `httpx.Client` the CLI uses (starlette's TestClient has it too)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse: ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[HttpResponse]: ...

    def close(self) -> None: ...


ClientFactory = Callable[[CliSettings], HttpClient]


def default_client(settings: CliSettings) -> HttpClient:
    return httpx.Client(
        base_url=settings.url,
        timeout=_TIMEOUT,
        headers={"User-Agent": "provisioner-cli"},
    )


class CliError(Exception):
    """Ends the command: `message` is printed as one line after `error: `."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.exit_code = exit_code


class ApiError(CliError):
    """The service answered with an error status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status = status
        self.code = code

    @classmethod
    def from_response(cls, response: HttpResponse) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            code, detail = body["error"], str(body.get("detail") or "")
            if response.status_code == 404 and detail == "Not Found":
                # Starlette's answer for a path no route serves (an older service).
                detail = "the service has no such endpoint (is it older than this CLI?)"
            return cls(response.status_code, code, detail)
        snippet = " ".join(response.text.split())[:200]
        return cls(response.status_code, f"HTTP {response.status_code}", snippet)


def segment(value: str) -> str:
    """A path segment from user input, encoded so that it stays one segment."""
    return quote(value, safe="")


class ApiClient:
    """Calls the API with the key; every failure becomes a `CliError` with one line to show."""

    def __init__(self, settings: CliSettings, factory: ClientFactory) -> None:
        self.settings = settings
        self._factory = factory
        self._http: HttpClient | None = None

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            self._http = self._factory(self.settings)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if not key:
            raise CliError("no API key: set PROVISIONER_API_KEY (or pass --api-key)")
        return {"Authorization": f"Bearer {key}", "Accept": "application/json", **(extra or {})}

    def _unreachable(self, error: httpx.TransportError) -> CliError:
        reason = str(error) or type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            reason = f"timed out ({type(error).__name__})"
        return CliError(f"cannot reach the provisioner at {self.settings.url}: {reason}")

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(
                method, path, params=query or None, json=json, headers=self._headers()
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        if not response.text:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"the service at {self.settings.url} did not answer with JSON "
                f"(HTTP {response.status_code}); is PROVISIONER_URL right?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def events(self, path: str, last_event_id: str | None) -> Iterator[ServerSentEvent]:
        """The events of the stream at `path` after `last_event_id`, until the stream ends."""
        headers = self._headers({"Accept": "text/event-stream"})
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        with self.http.stream("GET", path, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError.from_response(response)
            yield from parse_events(response.iter_lines())


def follow_events(
    api: ApiClient,
    resource_path: str,
    on_event: Callable[[ServerSentEvent], None],
    *,
    final_event: Callable[[ServerSentEvent], bool],
    final_states: frozenset[str],
    lost: str,
    max_reconnects: int = 5,
    backoff_s: float = 0.5,
) -> dict[str, Any]:
    """Stream the events of the resource at `resource_path` (an operation, a rollout) to
    `on_event` until it ends; returns the resource as it ended.

    The service ends a stream only once the resource has ended and every event was sent. A
    dropped connection is resumed with Last-Event-ID (the service replays what was missed),
    backing off between attempts; `max_reconnects` drops in a row give up with `lost`.
    """
    last_event_id: str | None = None
    failures = 0
    while True:
        finished = dropped = False
        try:
            for event in api.events(f"{resource_path}/events", last_event_id):
                last_event_id = event.id or last_event_id
                failures = 0
                on_event(event)
                finished = finished or final_event(event)
        except httpx.TransportError:
            dropped = True
        if finished or not dropped:
            # A stream also ends without a final event when an operation is cancelled before
            # it started, or when the service shuts down: the resource's state tells which.
            resource: dict[str, Any] = api.get(resource_path)
            if finished or resource["state"] in final_states:
                return resource
        failures += 1
        if failures > max_reconnects:
            raise CliError(lost)
        time.sleep(min(backoff_s * 2 ** (failures - 1), 10.0))


def follow_operation(
    api: ApiClient, operation_id: str, on_event: Callable[[ServerSentEvent], None]
) -> dict[str, Any]:
    """Follow an operation's events until it ends; returns the final operation."""
    return follow_events(
        api,
        f"/operations/{segment(operation_id)}",
        on_event,
        final_event=lambda event: event.event == "operation.finished",
        final_states=FINAL_OPERATION_STATES,
        lost=f"lost the event stream of operation {operation_id}; "
        f"follow it again with: provisioner op watch {operation_id}",
    )


def follow_rollout(
    api: ApiClient, rollout_id: str, on_event: Callable[[ServerSentEvent], None]
) -> dict[str, Any]:
    """Follow a rollout's events until it ends; returns the final rollout."""
    return follow_events(
        api,
        f"/rollouts/{segment(rollout_id)}",
        on_event,
        final_event=lambda event: event.event in FINAL_ROLLOUT_EVENTS,
        final_states=FINAL_ROLLOUT_STATES,
        lost=f"lost the event stream of rollout {rollout_id}; "
        f"follow it again with: provisioner rollout watch {rollout_id}",
    )
