"""The ASGI application: lists the features and assembles them, once (`server/fhir/features.py`).

Each feature declares its routes, CapabilityStatement operations, start-up and shutdown tasks,
middleware and hook implementations; `assemble` adds them to the app. Route order does not matter
(operation paths never match the generic REST routes). The list order does, in three declared ways:
start-up tasks run in it (auth before the dashboard that registers its client), shutdown tasks in
reverse, and each feature's middleware wraps the previous ones (ops, last, is the outermost).
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.alignment.api import alignment_engine, alignment_feature
from server.audit.routes import audit_feature
from server.auth.install import auth_feature
from server.bulk.api import bulk_feature
from server.bulk.members import GroupMembership
from server.cohorts.routes import cohorts_feature
from server.config import Settings
from server.dashboard.routes import dashboard_feature
from server.fhir.errors import FhirError, Issue
from server.fhir.features import IN_TRANSACTION, POST_COMMIT, PRE_WRITE, Feature, Hooks
from server.fhir.headers import SecurityHeadersMiddleware
from server.fhir.http import error_response
from server.fhir.limits import LimitsMiddleware
from server.fhir.reindex import run_requested as run_requested_reindex
from server.fhir.routes import router as fhir_router
from server.fhir.service import FhirService
from server.interventions.routes import interventions_feature
from server.measures.operation import measures_feature
from server.ops.install import ops_feature
from server.projection.routes import projection_feature
from server.risk.routes import risk_feature
from server.rosters.routes import rosters_feature
from server.savings.routes import savings_feature
from server.store.db import is_lock_timeout, make_engine, migrate
from server.store.resources import Store

log = logging.getLogger("planfit")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    db = make_engine(settings.database_url, settings.sqlite_lock_wait_seconds, settings.database_pool_size)
    store = Store(db)
    service = FhirService(store, settings)
    hooks = Hooks()
    groups = GroupMembership(hooks)  # asks the features' GROUP_MEMBERS hooks, gathered by assemble()
    alignment = alignment_engine(service, settings, hooks)
    auth = auth_feature(service, settings)
    features = [
        Feature(name="fhir", routers=[fhir_router]),
        bulk_feature(service, settings, groups),
        alignment_feature(alignment, service, settings),
        # Before the other PRE_WRITE hooks: a client writing the audit's ids learns that they are the server's.
        audit_feature(alignment),
        cohorts_feature(service, alignment),
        measures_feature(service, alignment, groups),
        risk_feature(service, alignment, settings, groups),
        projection_feature(service),
        savings_feature(service),
        rosters_feature(service, alignment.mappings),
        interventions_feature(service, settings),
        # Inside auth's middleware, so it sees the authenticated client.
        Feature(name="limits", middleware=[(LimitsMiddleware, {"settings": settings})]),
        auth,
        # Around auth's middleware, so its answers carry the headers too.
        Feature(name="security-headers", middleware=[(SecurityHeadersMiddleware, {"settings": settings})]),
        dashboard_feature(auth.state.get("auth"), settings),
        ops_feature(),
    ]
    return assemble(db, store, service, hooks, features)


def assemble(db: Engine, store: Store, service: FhirService, hooks: Hooks, features: Sequence[Feature]) -> FastAPI:
    """The app serving `features`: the schema migrated and requested reindexing done before any
    feature starts."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await run_in_threadpool(migrate, db)
        await run_in_threadpool(run_requested_reindex, db, store.derivations)
        started: list[Feature] = []
        try:
            for feature in features:
                for task in feature.startup:
                    await run_in_threadpool(task)
                started.append(feature)
            # What start-up built (mappings, code tables, routes, cached statements) lives as long as the
            # process: frozen, the first full collections no longer walk it. They had paused every request
            # in flight for ~120 ms (`$evaluate-measure` p99 168-177 ms -> 51-59 ms; BENCHMARKS.md).
            gc.collect()
            gc.freeze()
            yield
        finally:
            for feature in reversed(started):
                for task in feature.shutdown:
                    await run_in_threadpool(task)
            db.dispose()

    # No Swagger UI: it loads scripts from a CDN, which the pages' Content-Security-Policy refuses.
    app = FastAPI(title="PlanFit FHIR R4 server", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = service.settings
    app.state.store = store
    app.state.fhir = service
    app.state.hooks = hooks
    app.state.features = tuple(features)
    for feature in features:
        for point, implementation in feature.hooks:
            hooks.add(point, implementation)
        for router in feature.routers:
            app.include_router(router)
        for path, application, name in feature.mounts:
            app.mount(path, application, name=name)
        for middleware, options in feature.middleware:
            app.add_middleware(middleware, **options)
        for key, value in feature.state.items():
            setattr(app.state, key, value)
    service.after_commit.extend(hooks.of(POST_COMMIT))
    service.write_guards.extend(hooks.of(PRE_WRITE))
    store.derivations.extend(hooks.of(IN_TRANSACTION))
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return error_response(FhirError.of(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, _exc: RequestValidationError) -> Response:
        return error_response(FhirError.of(400, "invalid", "Malformed request"))

    async def unusable_value(_request: Request, _exc: Exception) -> Response:
        # The database (or its driver: OverflowError) refused a value that came with the request, such
        # as NUL in text or a number out of range.
        return error_response(FhirError.of(400, "invalid", "A value in the request cannot be stored or searched"))

    app.add_exception_handler(DataError, unusable_value)
    app.add_exception_handler(OverflowError, unusable_value)

    @app.exception_handler(OperationalError)
    async def database_unavailable(_request: Request, exc: OperationalError) -> Response:
        if not is_lock_timeout(exc):
            raise exc  # answered by `unexpected`
        # Another writer held SQLite's write lock past `PLANFIT_SQLITE_LOCK_WAIT_SECONDS`: transient.
        log.warning("write lock not had in time (%s)", type(exc).__name__)
        return error_response(FhirError(503, Issue("error", "lock-error", "The database was busy with another "
                                                   "write; retry after the time Retry-After says"),
                                        {"Retry-After": "1"}))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        # The formatters (server/ops/logging.py) write an exception as its type and stack frames, never
        # its message: exception text can carry resource content (PHI).
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return error_response(FhirError.of(500, "exception", "Internal server error"))
