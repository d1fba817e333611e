"""The ASGI application: wires settings, store, FHIR service and routes together."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.bulk.service import BulkExports
from server.auth.install import install_auth
from server.config import Settings
from server.fhir.errors import FhirError
from server.fhir.export import router as export_router
from server.fhir.export import with_export_capability
from server.fhir.http import error_response
from server.fhir.operations import install_alignment
from server.fhir.routes import router as fhir_router
from server.fhir.service import FhirService
from server.store.db import make_engine, migrate
from server.store.resources import Store

log = logging.getLogger("planfit")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        migrate(engine)
        app.state.bulk.start()
        yield
        app.state.bulk.stop()
        engine.dispose()

    app = FastAPI(title="PlanFit FHIR R4 server", version="0.1.0", lifespan=lifespan)
    store = Store(engine)
    app.state.settings = settings
    app.state.store = store
    app.state.fhir = FhirService(store, settings)
    app.state.bulk = BulkExports(app.state.fhir, settings)
    app.state.capability_extras = with_export_capability(getattr(app.state, "capability_extras", None))
    app.include_router(export_router)  # before fhir_router, which would read Patient/$export as a read
    install_alignment(app, app.state.fhir, settings)  # before fhir_router: its routes would take $operations
    app.include_router(fhir_router)
    install_auth(app, settings)
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

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        # Log the type only: exception text can carry resource content (PHI).
        log.error("unhandled %s", type(exc).__name__, exc_info=False)
        return error_response(FhirError.of(500, "exception", "Internal server error"))
