"""The composition root: one FastAPI app with every service's routers and workers.

``create_app`` builds nothing at import; the runtime (engine, clock, workers) is
created in the lifespan, or passed in by tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

import services.alerts as alerts
import services.hl7v2 as hl7v2
import services.indicators as indicators
import services.ingest as ingest
import services.regions as regions
from qcpulse import console, schema
from services.indicators import measure_router
from services.ingest import bulk, bulk_router
from services.regions import bulletin_router, federation_router, submitter
from shared import audit, keys, openapi
from shared.auth import bootstrap
from shared.bus import Handler, OutboxConsumer, Topic, outbox_threads
from shared.db import READONLY_OPTION
from shared.election import Election
from shared.errors import AppError
from shared.http import (
    JSONResponse,
    app_error_handler,
    http_exception_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS
from shared.nats_bus import NatsBridge
from shared.runtime import Runtime
from shared.settings import Settings

log = structlog.get_logger(__name__)

ServeRole = Literal["all", "ingest", "indicators", "alerts"]


def prepare(runtime: Runtime) -> None:
    """Check the indicator definitions, migrate and bootstrap: what ``serve`` does
    before it answers. A bad definition file stops the start with its file and field."""
    indicators.catalogue_for(runtime.settings.indicators_dir)
    schema.migrate(runtime.engine)
    alerts.seal_weak_secrets(runtime)  # clear rows from before 0009 (docs/API.md §7)
    settings = runtime.settings
    if settings.bootstrap_tenant and settings.bootstrap_admin_key:
        with runtime.write() as session:
            bootstrap(
                session,
                settings.bootstrap_tenant,
                settings.bootstrap_admin_key.get_secret_value(),
                timezone=settings.default_timezone,
            )


def start_workers(runtime: Runtime, role: ServeRole = "all") -> list[threading.Thread]:
    """Start the background loops this process runs (none for a pure API replica)."""
    handlers: dict[Topic, Handler] = {}
    threads: list[threading.Thread] = []
    if role in ("all", "indicators"):
        handlers.update(indicators.handlers(runtime))
        threads += indicators.timers(runtime)
        threads += submitter.loops(runtime)  # to a region, when configured (FEDERATION.md)
    if role in ("all", "alerts"):
        handlers.update(alerts.handlers(runtime))
        threads += alerts.loops(runtime)
    if role in ("all", "ingest"):
        threads.append(bulk.worker(runtime))  # $import jobs (services/ingest/bulk.py)
    if runtime.settings.bus == "nats":
        prefix = runtime.settings.nats_prefix
        threads.append(NatsBridge(runtime, handlers, prefix=prefix, durable_prefix=prefix.lower()))
    else:
        consumers = [OutboxConsumer(t, runtime.write_factory, h) for t, h in handlers.items()]
        threads += outbox_threads(runtime.stop, runtime.notifier, consumers)
    for thread in threads:
        thread.start()
    return threads


def app_from_environment() -> FastAPI:
    """The app of one ``serve --workers N`` process: settings from the environment,
    the role from ``QCPULSE_SERVE_ROLE``."""
    from shared.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    role = os.environ.get("QCPULSE_SERVE_ROLE", "all")
    if role not in ("all", "ingest", "indicators", "alerts"):
        raise ValueError(f"QCPULSE_SERVE_ROLE={role!r} is not a role")
    return create_app(settings, role=role)  # type: ignore[arg-type]


class Background:
    """The loops one process of a deployment runs: outbox consumers, timers, webhook
    delivery, import jobs, the MLLP listener. With several API processes on one
    database (``serve --workers N``) only the elected one runs them."""

    def __init__(self, app: FastAPI, runtime: Runtime, role: ServeRole) -> None:
        self.app = app
        self.runtime = runtime
        self.role = role
        self.threads: list[threading.Thread] = []
        self.listener: hl7v2.MllpListener | None = None
        self.running = False

    async def start(self) -> None:
        rt = self.runtime
        self.threads = start_workers(rt, self.role)
        if self.role in ("all", "ingest") and rt.settings.mllp_port is not None:
            self.listener = hl7v2.MllpListener.from_settings(rt)
            await self.listener.start()
        self.app.state.mllp = self.listener
        self.running = True

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = self.app.state.mllp = None
        self.runtime.stop.set()
        for thread in self.threads:
            await asyncio.to_thread(thread.join, 5)
        self.threads = []
        self.runtime.stop.clear()
        self.running = False

    async def elect(self, election: Election) -> None:
        """Poll the election; run the loops while this process holds it."""
        interval = self.runtime.settings.election_interval.total_seconds()
        while True:
            try:
                if not self.running and await asyncio.to_thread(election.try_acquire):
                    log.info("elected to run the background work", pid=os.getpid())
                    await self.start()
                elif self.running and not await asyncio.to_thread(election.held):
                    await self.stop()
            except Exception as exc:  # the database is away: try again next round
                log.warning("background election failed", error=str(exc))
            await asyncio.sleep(interval)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    role: ServeRole = "all",
    run_workers: bool = True,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.from_settings(settings or Settings())
        if runtime is None:
            prepare(rt)
        app.state.runtime = rt
        app.state.mllp = None
        rt.stop.clear()
        background = Background(app, rt, role)
        election: Election | None = None
        elector: asyncio.Task[None] | None = None
        if run_workers and rt.settings.elect_background:
            election = Election(rt.engine, f"background-{role}")
            elector = asyncio.create_task(background.elect(election))
        elif run_workers:
            await background.start()
        log.info("qcpulse started", role=role, database=rt.engine.url.get_backend_name())
        try:
            yield
        finally:
            if elector is not None:
                elector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await elector
            await background.stop()
            if election is not None:
                election.release()
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="qcpulse",
        version="0.1.0",
        description="Live hospital quality indicators and alerts from FHIR R4.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # /docs and /redoc are the console's: served from the package, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)

    # Inside ``measure``: an audit write is part of the request's latency.
    app.middleware("http")(audit.audit_middleware)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, path).observe(time.perf_counter() - started)
        return response

    @app.get("/health", include_in_schema=False)
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready", include_in_schema=False)
    def ready(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        try:
            # Read-only: a health check never queues behind SQLite's writers.
            reader = rt.engine.execution_options(**{READONLY_OPTION: True})
            with reader.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = schema.is_current(reader)
        except Exception as exc:  # the database is down: not ready
            # /ready needs no key: the reason (host, user) goes to the log, not the caller.
            log.warning("not ready: database unreachable", error=str(exc))
            return JSONResponse(
                {"status": "unavailable", "detail": "database unavailable"}, status_code=503
            )
        if not current:
            return JSONResponse(
                {"status": "unavailable", "detail": "schema not current"}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(bulk_router.router, tags=["fhir"])  # before ingest's /fhir/{rtype}
    app.include_router(federation_router.router, tags=["regions"])
    app.include_router(measure_router.router, tags=["fhir"])  # before ingest's /fhir/{rtype}/{rid}
    app.include_router(ingest.router, tags=["fhir"])
    app.include_router(ingest.api_router, tags=["data quality"])
    app.include_router(hl7v2.router, tags=["hl7v2"])
    app.include_router(hl7v2.api_router, tags=["hl7v2"])
    app.include_router(keys.router, tags=["keys"])
    app.include_router(audit.router, tags=["audit"])
    app.include_router(indicators.router, tags=["indicators"])
    app.include_router(alerts.router, tags=["alerts"])
    app.include_router(regions.router, tags=["regions"])
    app.include_router(bulletin_router.router, tags=["bulletins"])
    app.include_router(console.router)
    openapi.install(app)  # the error schemas in components (docs/CONTRACT.md)
    return app
