"""An app factory for the crash-recovery test: the service with the scripted engine, configured
from PROVISIONER_* variables, run by uvicorn in a separate process that the test kills."""

from __future__ import annotations

from fastapi import FastAPI

from provisioner.app import create_app
from provisioner.config import Settings


def create() -> FastAPI:
    return create_app(
        Settings(), engine_reference="tests.provisioner.scripted_engine:ScriptedEngine"
    )
