"""Requests from the service's own process to the emulator, without a socket.

The emulator runs in the service's process, yet the service's clients (the ingest pollers, the
data-plane access of the API, the alarm evaluation) and the Step Functions interpreter's
service integrations would each reach it over loopback HTTP: a connection, werkzeug's request
parsing and a thread per request, for a request that ends in the same process. `InProcessTransport`
hands such a request straight to the emulator's WSGI application instead — the one its HTTP
server serves, through the same `RequestGate` — with the WSGI environ werkzeug's server would
have built. moto answers exactly as over HTTP; only the socket and the HTTP server are skipped.

It is a botocore `before-send` handler: a client (or every client of a session) it is attached
to sends requests for the emulator's endpoint here, anything else over the network as usual.
The runtime workers are other processes and keep using HTTP.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import boto3
import structlog
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from moto.core.request import (
    PRESERVED_HEADER_NAMES_ENVIRON_KEY,
    environ_key_for_header,
    should_preserve_original_header_name,
)

from provisioner.emulator.gate import Environ, WsgiApp

if TYPE_CHECKING:
    from botocore.client import BaseClient

logger = structlog.get_logger(__name__)

_EVENT: Final = "before-send"
# Headers the HTTP framing consumes: the body arrives here whole, with its length.
_FRAMING_HEADERS: Final = ("transfer-encoding", "content-length")
# http.client sends `Content-Length: 0` for these even without a body.
_METHODS_WITH_BODY: Final = ("POST", "PUT", "PATCH")
# As werkzeug's server: no body in these answers, whatever the application returned.
_BODILESS_STATUSES: Final = (204, 304)
_INTERNAL_ERROR_BODY: Final = (
    b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was "
    b"unable to complete your request.</p>\n"
)


class ResponseBody(io.BytesIO):
    """A response body as botocore reads a raw HTTP response (`read`, `stream`)."""

    def stream(self, amt: int = 2**16, **kwargs: Any) -> Iterable[bytes]:
        while chunk := self.read(amt):
            yield chunk


def _wsgi_text(value: str) -> str:
    """PEP 3333's 'bytes as latin-1' spelling of a URL part, as werkzeug's server gives it."""
    return value.encode("utf-8").decode("latin-1")


def _header_text(value: str | bytes) -> str:
    # Over HTTP a header arrives as bytes that the server decodes as latin-1.
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):  # a file or botocore's AwsChunkedWrapper: what HTTP would send
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(bytes(chunk) for chunk in body)  # an iterable of chunks (chunked upload)


def _preserve_underscored_names(environ: Environ, headers: list[tuple[str, str]]) -> None:
    """What moto's request handler adds to werkzeug's environ (`MotoRequestHandler`): S3
    metadata headers whose names hold an underscore, under their original spelling."""
    dashed = {environ_key_for_header(name) for name, _ in headers if "_" not in name}
    names: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = environ_key_for_header(name)
        if not should_preserve_original_header_name(name) or key in dashed:
            continue
        names.setdefault(key, name)
        values.setdefault(key, []).append(value.replace("\r\n", ""))
    for key, key_values in values.items():
        environ[key] = ",".join(key_values)
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names


class InProcessTransport:
    """Sends botocore requests for `endpoint_url` to `app` (the emulator's gated WSGI app)."""

    def __init__(self, app: WsgiApp, endpoint_url: str) -> None:
        endpoint = urlsplit(endpoint_url)
        if endpoint.hostname is None or endpoint.port is None:
            raise ValueError(f"not an emulator endpoint: {endpoint_url!r}")
        self._app = app
        self._scheme = endpoint.scheme
        self._netloc = endpoint.netloc.lower()
        self._server_name = endpoint.hostname
        self._server_port = str(endpoint.port)
        self.endpoint_url = endpoint_url
        # botocore's hooks are typed as returning nothing; `before-send` may return a response.
        self._handler: Callable[..., Any] = self.send

    # --- attaching ------------------------------------------------------------------------------

    def attach(self, client: BaseClient) -> BaseClient:
        """Route `client`'s requests for the emulator here; returns the client."""
        client.meta.events.register_first(_EVENT, self._handler)
        return client

    def session(
        self, *, region: str, access_key_id: str = "local", secret_access_key: str = "local"
    ) -> boto3.session.Session:
        """A session whose every client sends its emulator requests here."""
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        session.events.register_first(_EVENT, self._handler)
        return session

    # --- one request ----------------------------------------------------------------------------

    def handles(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme == self._scheme and parts.netloc.lower() == self._netloc

    def send(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        """The `before-send` handler: the emulator's answer, or None to send over HTTP."""
        if not self.handles(request.url):
            return None
        environ = self.environ(request)
        captured: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            captured[:] = [int(status.split(" ", 1)[0]), headers]
            return lambda data: None  # the legacy write() callable; moto never uses it

        try:
            body = b"".join(self._app(environ, start_response))
        except Exception:
            # What werkzeug's server does with an application that raises: log it and answer
            # 500, which the client treats like any server error.
            logger.exception("emulator.in_process.app_error", method=request.method)
            captured[:] = [500, [("Content-Type", "text/html; charset=utf-8")]]
            body = _INTERNAL_ERROR_BODY
        status, headers = captured
        if request.method == "HEAD" or status < 200 or status in _BODILESS_STATUSES:
            body = b""
        return AWSResponse(request.url, status, HTTPHeaders.from_pairs(headers), ResponseBody(body))

    def environ(self, request: AWSPreparedRequest) -> Environ:
        """The WSGI environ werkzeug's HTTP server would build for this request."""
        url = urlsplit(request.url)
        raw_path = url.path or "/"
        raw_uri = f"{raw_path}?{url.query}" if url.query else raw_path
        body = _body_bytes(request.body)
        environ: Environ = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self._scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _wsgi_text(unquote(raw_path)),
            "QUERY_STRING": _wsgi_text(url.query),
            "REQUEST_URI": _wsgi_text(raw_uri),
            "RAW_URI": _wsgi_text(raw_uri),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": 0,
            "SERVER_NAME": self._server_name,
            "SERVER_PORT": self._server_port,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if body or request.method in _METHODS_WITH_BODY or "Content-Length" in request.headers:
            environ["CONTENT_LENGTH"] = str(len(body))
        headers = [(str(name), _header_text(value)) for name, value in request.headers.items()]
        for name, value in headers:
            if "_" in name or name.lower() in _FRAMING_HEADERS:
                # werkzeug drops names with an underscore; the framing is replaced above.
                continue
            key = environ_key_for_header(name)
            value = value.replace("\r\n", "")
            if key != "CONTENT_TYPE" and key in environ:
                value = f"{environ[key]},{value}"
            environ[key] = value
        _preserve_underscored_names(environ, headers)
        # What http.client adds to every request it sends.
        environ.setdefault("HTTP_HOST", url.netloc)
        environ.setdefault("HTTP_ACCEPT_ENCODING", "identity")
        return environ
