"""ASGI middleware that runs before routing: the request-body cap and HEAD for every GET.

The body cap is the outermost layer (docs/architecture.md §9): a body is counted while it
streams in and refused (413) past `PROVISIONER_MAX_BODY_BYTES`, before authentication and
before any parser holds it, so an anonymous client cannot make the service buffer more than
the cap.
"""

from __future__ import annotations

import json
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class BodyLimitMiddleware:
    """Refuses bodies larger than `max_bytes` with 413 `payload_too_large`.

    A declared Content-Length over the cap is refused before a byte is read; a chunked body
    is read up to the cap and refused as soon as it passes it. The app then gets the body
    (at most the cap) in one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = self.max_bytes + 1  # the server would refuse it too; do not read it
            if length > self.max_bytes:
                await self._refuse(scope, send, declared=length)
                return
            if length == 0 and not chunked:
                await self.app(scope, receive, send)
                return
        elif not chunked and scope["method"] in _NO_BODY_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, send, declared=None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later: http.disconnect, which streaming responses watch

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, *, declared: int | None) -> None:
        log.warning(
            "http.body_too_large",
            method=scope["method"],
            path=scope["path"],
            declared_bytes=declared,
            max_bytes=self.max_bytes,
        )
        payload = json.dumps(
            {
                "error": "payload_too_large",
                "detail": f"the request body exceeds {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    # The rest of the body is not read; the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})


class HeadMiddleware:
    """Serves HEAD wherever GET is served: the GET route runs (auth included) and its status
    and headers are sent without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # Shared with the outer layers (the audit middleware reads the caller from it).
        scope.setdefault("state", {})
        finished = False

        async def send_headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
                return
            if finished:
                return
            # The first body message ends the response; a stream (SSE) then sees the client
            # as gone and stops.
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
