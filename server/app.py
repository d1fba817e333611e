"""The ASGI application: wires settings, store, FHIR service and routes together."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.audit.routes import install_audit
from server.bulk.service import BulkExports
from server.cohorts.routes import install_cohorts
from server.auth.install import install_auth
from server.config import Settings
from server.dashboard.routes import install_dashboard
from server.fhir.errors import FhirError
from server.bulk.api import router as export_router
from server.bulk.api import with_export_capability
from server.fhir.headers import SecurityHeadersMiddleware
from server.fhir.http import error_response
from server.fhir.limits import LimitsMiddleware
from server.fhir.reindex import run_requested as run_requested_reindex
from server.alignment.api import install_alignment
from server.fhir.routes import router as fhir_router
from server.fhir.service import FhirService
from server.measures.operation import install_measures
from server.risk.routes import install_risk
from server.ops.install import install_ops
from server.projection.routes import install_projection
from server.rosters.routes import install_rosters
from server.store.db import make_engine, migrate
from server.store.resources import Store

log = logging.getLogger("planfit")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        migrate(engine)
        run_requested_reindex(engine)
        app.state.bulk.start()
        yield
        app.state.bulk.stop()
        engine.dispose()

    # No Swagger UI: it loads scripts from a CDN, which the pages' Content-Security-Policy refuses.
    app = FastAPI(title="PlanFit FHIR R4 server", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    store = Store(engine)
    app.state.settings = settings
    app.state.store = store
    app.state.fhir = FhirService(store, settings)
    app.state.bulk = BulkExports(app.state.fhir, settings)
    app.state.capability_extras = with_export_capability(getattr(app.state, "capability_extras", None))
    app.include_router(export_router)  # before fhir_router, which would read Patient/$export as a read
    alignment = install_alignment(app, app.state.fhir, settings)  # before fhir_router: its routes would take $operations
    install_cohorts(app, app.state.fhir, alignment)  # before fhir_router: cohort reads stream their members
    install_measures(app, app.state.fhir, alignment)  # before fhir_router: Measure/{id}/$evaluate-measure
    install_risk(app, app.state.fhir, alignment, settings)  # before fhir_router: Measure/$ra.evaluate-measure
    install_projection(app, app.state.fhir)  # before install_rosters: its GET Group/{id} would take Group/$alignment-churn
    install_rosters(app, app.state.fhir, alignment.mappings)  # before fhir_router: Group/{id} reads and the ATR operations
    install_audit(app, app.state.fhir, alignment)  # before fhir_router: Patient/$worklist
    app.include_router(fhir_router)
    app.add_middleware(LimitsMiddleware, settings=settings)  # before install_auth: inside it, it sees the client
    install_auth(app, settings)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)  # around the auth middleware's answers too
    install_dashboard(app)  # after install_auth: registers its client once auth has started
    _install_error_handlers(app)
    install_ops(app)  # last: its middleware is the outermost
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

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        # The formatters (server/ops/logging.py) write an exception as its type and stack frames, never
        # its message: exception text can carry resource content (PHI).
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return error_response(FhirError.of(500, "exception", "Internal server error"))
