"""`create_app()`: the FastAPI application (placeholder until the service lands)."""

from __future__ import annotations

from fastapi import FastAPI

from provisioner.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="Market-data pipeline provisioner")
    app.state.settings = settings or Settings()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
