"""SMART authorization and auditing as a feature of the app (`server/fhir/features.py`)."""

from __future__ import annotations

import logging
from typing import Any


from server.auth.audit import AuditTrail
from server.auth.discovery import capability_security
from server.auth.middleware import SmartMiddleware
from server.auth.routes import discovery_router, router
from server.auth.runtime import AuthRuntime
from server.auth.urls import Urls
from server.config import Settings
from server.fhir.features import Feature
from server.fhir.service import FhirService

log = logging.getLogger("planfit.auth")

AUTH_OFF_WARNING = (
    "PLANFIT_AUTH=off: SMART authorization is DISABLED; every caller may read and write all data "
    "(never use this outside local development)"
)


def auth_feature(service: FhirService, settings: Settings) -> Feature:
    """Authentication (the request context), the /auth endpoints, discovery and the audit trail. Its
    middleware must wrap every feature route's; with SMART off only the context and the audit remain."""
    audit = AuditTrail(service.store.engine)
    middleware = (SmartMiddleware, {"settings": settings, "audit": audit})
    if settings.auth != "on":  # the setting admits only on/off: a typo cannot disable auth
        middleware[1]["runtime"] = None
        return Feature(name="auth", middleware=[middleware],
                       startup=[lambda: log.warning(AUTH_OFF_WARNING), audit.start], shutdown=[audit.stop])
    runtime = AuthRuntime(settings, service.store.engine, service, audit)
    middleware[1]["runtime"] = runtime

    def security(fhir_base: str) -> dict[str, Any]:
        root = settings.base_url.rstrip("/") or fhir_base.removesuffix("/fhir")
        return {"security": capability_security(Urls(root))}

    return Feature(
        name="auth",
        routers=[router, discovery_router],
        capability=security,
        middleware=[middleware],
        startup=[runtime.start, audit.start],
        shutdown=[audit.stop],
        state={"auth": runtime},
    )
