"""Wiring of SMART authorization and auditing into the FastAPI app (one call from `create_app`)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from server.auth.audit import AuditTrail
from server.auth.discovery import capability_security
from server.auth.middleware import SmartMiddleware
from server.auth.routes import discovery_router, router
from server.auth.runtime import AuthRuntime
from server.auth.urls import Urls
from server.config import Settings

log = logging.getLogger("planfit.auth")

AUTH_OFF_WARNING = (
    "PLANFIT_AUTH=off: SMART authorization is DISABLED; every caller may read and write all data "
    "(never use this outside local development)"
)


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Install authentication (the request context), the /auth endpoints, discovery and the audit trail."""
    enabled = settings.auth == "on"  # the setting admits only on/off: a typo cannot disable auth
    fhir = app.state.fhir
    audit = AuditTrail(app.state.store.engine)
    runtime = None
    if enabled:
        runtime = AuthRuntime(settings, app.state.store.engine, fhir, audit)
        app.state.auth = runtime
        app.include_router(router)
        _include_first(app, discovery_router)
        app.state.capability_extras = _with_security(getattr(app.state, "capability_extras", None), settings)
    app.add_middleware(SmartMiddleware, settings=settings, audit=audit, runtime=runtime)
    _wrap_lifespan(app, runtime, audit)


def _include_first(app: FastAPI, router_to_add) -> None:
    """Include a router ahead of the existing routes: `/fhir/.well-known/…` must win over the FHIR
    router's `/fhir/{type}/{id}` pattern, which would otherwise match it first."""
    before = len(app.router.routes)
    app.include_router(router_to_add)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


def _with_security(previous: Callable[[str], dict] | None, settings: Settings) -> Callable[[str], dict]:
    """CapabilityStatement extras: whatever was there, plus `rest.security`."""

    def extras(fhir_base: str) -> dict[str, Any]:
        parts = previous(fhir_base) if previous else {}
        root = settings.base_url.rstrip("/") or fhir_base.removesuffix("/fhir")
        return {**parts, "security": capability_security(Urls(root))}

    return extras


def _wrap_lifespan(app: FastAPI, runtime: AuthRuntime | None, audit: AuditTrail) -> None:
    """Run after the app's own startup (which migrates the schema): load keys and clients, start
    the audit writer; drain the audit queue at shutdown."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI):
        async with inner(application) as state:
            if runtime is None:
                log.warning(AUTH_OFF_WARNING)
            else:
                await run_in_threadpool(runtime.start)
            audit.start()
            try:
                yield state
            finally:
                await run_in_threadpool(audit.stop)

    app.router.lifespan_context = lifespan
