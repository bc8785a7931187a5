"""`create_app()`: the FastAPI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from provisioner import errors, health, openapi
from provisioner.audit import endpoints as audit_endpoints
from provisioner.audit.middleware import AuditMiddleware
from provisioner.auth import endpoints as auth_endpoints
from provisioner.auth.service import ensure_bootstrap_admin_key
from provisioner.config import Settings
from provisioner.dashboard.routes import router as dashboard_router
from provisioner.datadir import private_data_dir
from provisioner.db import Database
from provisioner.engines import build_host, load_engine
from provisioner.engines import engine_reference as reference_of
from provisioner.engines.base import EngineHost
from provisioner.environments import endpoints as environment_endpoints
from provisioner.environments.service import restore_ephemeral_environments
from provisioner.files import endpoints as file_endpoints
from provisioner.files import local_api
from provisioner.fleet import endpoints as fleet_endpoints
from provisioner.lifeline import forget_children, keep_record, sweep_leftovers
from provisioner.logging import configure_logging, redactor
from provisioner.metrics import Metrics
from provisioner.middleware import BodyLimitMiddleware, HeadMiddleware
from provisioner.monitoring.service import HealthSampler
from provisioner.operations import endpoints as operation_endpoints
from provisioner.operations.events import OperationNotifier
from provisioner.operations.runner import OperationRunner
from provisioner.rollouts import endpoints as rollout_endpoints
from provisioner.rollouts.scheduler import RolloutScheduler
from provisioner.rollouts.verify import Verifier, data_plane_verifier
from provisioner.schedules.scheduler import Clock, Scheduler
from provisioner.state import AppState
from provisioner.templates import endpoints as template_endpoints
from provisioner.templates.service import ensure_default_template
from provisioner.tenants import endpoints as tenant_endpoints
from provisioner.versions import service_code_version
from provisioner.webhooks import endpoints as webhook_endpoints
from provisioner.webhooks.dispatcher import WebhookDispatcher

log = structlog.get_logger(__name__)

HostFactory = Callable[[Settings], EngineHost]


def create_app(
    settings: Settings | None = None,
    *,
    engine_reference: str | None = None,
    host_factory: HostFactory | None = None,
    clock: Clock | None = None,
    code_version: str | None = None,
    rollout_verifier: Verifier | None = None,
) -> FastAPI:
    """Build the app. `engine_reference`/`host_factory` let tests run their own engine,
    `clock` tells the scheduler the time, and `code_version` stands in for the digest of this
    tree (provisioner.versions), and `rollout_verifier` stands in for
    verified rollouts' data-plane smoke test."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    redactor.register(settings.secret_values())
    reference = engine_reference or reference_of(settings.engine)
    # Before the database is opened: SQLite would create the directory (0755) and its files.
    private_data_dir(settings)
    database = Database(settings.resolved_database_url)
    service_version = code_version or service_code_version()
    # Built now: a malformed PROVISIONER_WEBHOOK_ALLOWED_HOSTS stops the app before it starts.
    dispatcher = WebhookDispatcher(settings, database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(database.create_schema)
        await asyncio.to_thread(ensure_default_template, database)
        private_data_dir(settings)  # the files SQLite created meanwhile (-wal, -shm)
        generated = await asyncio.to_thread(ensure_bootstrap_admin_key, settings, database)
        if generated is not None:
            log.warning(
                "auth.admin_key_generated",
                path=str(generated),
                hint="read the admin API key from this file (mode 0600)",
            )
        swept = await asyncio.to_thread(sweep_leftovers, settings.data_dir)
        if swept:
            log.warning("service.leftover_processes_killed", count=swept)
        host = host_factory(settings) if host_factory else build_host(reference, settings)
        await asyncio.to_thread(host.start)
        if host.ephemeral:
            recreated = await asyncio.to_thread(_restore_ephemeral, database, settings, host)
            if recreated:
                log.warning("service.environments_recreated", count=recreated)
        notifier = OperationNotifier()
        notifier.bind(asyncio.get_running_loop())
        metrics = Metrics(database)
        runner = OperationRunner(
            settings, database, reference, host, metrics, notifier, code_version=service_version
        )
        await runner.start()
        engine_name = load_engine(reference).name
        sampler = HealthSampler(settings, database, host, engine_name, clock)
        scheduler = Scheduler(
            settings,
            database,
            engine_name,
            runner.wake,
            clock,
            code_version=service_version,
            health=sampler,
        )
        await scheduler.start()
        verifier = rollout_verifier or data_plane_verifier(host)
        rollouts = RolloutScheduler(
            settings, database, engine_name, runner.wake, notifier, verifier
        )
        await rollouts.start()
        await dispatcher.start()
        recorder = asyncio.create_task(
            keep_record(settings.data_dir, settings.heartbeat_interval_s), name="child-record"
        )
        app.state.services = AppState(
            settings=settings,
            database=database,
            engine_name=engine_name,
            host=host,
            runner=runner,
            metrics=metrics,
            notifier=notifier,
            scheduler=scheduler,
            rollouts=rollouts,
            code_version=service_version,
        )
        log.info(
            "service.started",
            engine=settings.engine,
            url=settings.public_url,
            code_version=service_version,
        )
        try:
            yield
        finally:
            await scheduler.stop()
            await rollouts.stop()
            await runner.stop()
            await dispatcher.stop()
            await asyncio.to_thread(host.stop)
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            forget_children(settings.data_dir)
            database.dispose()
            log.info("service.stopped")

    app = FastAPI(
        title="Market-data pipeline provisioner",
        version="0.1.0",
        description=(
            "Create and destroy market-data pipeline environments (one Pulumi stack per "
            "tenant and environment). Every route except `/healthz` needs "
            "`Authorization: Bearer <API key>`."
        ),
        lifespan=lifespan,
    )
    app.state.database = database
    app.add_middleware(AuditMiddleware, database_getter=lambda: app.state.database)
    # Added last, so they run first: HEAD becomes GET for everything inside, and the body
    # cap comes before anything else reads the request.
    app.add_middleware(HeadMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    errors.install(app)
    openapi.install(app)
    for router in (
        health.router,
        environment_endpoints.router,
        file_endpoints.router,
        operation_endpoints.router,
        auth_endpoints.router,
        audit_endpoints.router,
        tenant_endpoints.router,
        fleet_endpoints.router,
        template_endpoints.admin_router,
        template_endpoints.router,
        rollout_endpoints.router,
        webhook_endpoints.router,
        local_api.router,
    ):
        app.include_router(router)
    app.include_router(dashboard_router)
    return app


def _restore_ephemeral(database: Database, settings: Settings, host: EngineHost) -> int:
    with database.session() as session:
        recreated = restore_ephemeral_environments(session, settings, settings.engine, host.restore)
        return len(recreated)
