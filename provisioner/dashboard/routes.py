"""Serves the ops dashboard: `/` is its page, `/dashboard/…` its scripts and styles.

The files themselves need no API key (they hold no data); every API call the page makes sends
the key the user signed in with. The routes stay out of the OpenAPI document, which describes
the API only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).parent / "static"

# The page loads only its own files and talks only to this service, so the policy can be
# strict: a stray `<script>` or inline handler injected through API data would not run.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate on every load (ETag/Last-Modified make that cheap), so an upgraded service
    # never runs against stale scripts.
    "Cache-Control": "no-cache",
}


class _DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


router.mount("/dashboard", _DashboardFiles(directory=STATIC_DIR), name="dashboard")
