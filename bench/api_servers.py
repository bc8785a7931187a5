"""The two servers `bench/api.py` measures, as uvicorn app factories.

`provisioner_app`: the real service (auth, registry query, last operations, serialisation)
over a registry prepared by the benchmark. `bare_app`: a bare FastAPI endpoint returning a
prebuilt page of the same size, the floor any FastAPI service pays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from provisioner.app import create_app
from provisioner.config import Settings


def provisioner_app() -> FastAPI:
    return create_app(Settings())


def bare_app() -> FastAPI:
    app = FastAPI()
    page: list[dict[str, Any]] = json.loads(Path(os.environ["BENCH_BARE_PAGE"]).read_text())

    @app.get("/environments")
    async def environments() -> Response:
        return Response(json.dumps(page), media_type="application/json")

    return app
