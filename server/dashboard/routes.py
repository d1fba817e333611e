"""Serving the dashboard at /app/, and its one call from `create_app`.

The page is a static SMART app: `index.html` plus ES modules and a stylesheet, all same-origin, so
the strict Content-Security-Policy below (no inline script or style, no other origin) holds. The
app reads data only through /fhir with the access token it obtains by SMART App Launch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from server.auth.runtime import AuthRuntime
from server.config import Settings
from server.dashboard.client import register_dashboard
from server.fhir.features import Feature

log = logging.getLogger("planfit.dashboard")
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The launch URL carries the authorization code: never send it to anyone as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
router = APIRouter(tags=["Dashboard"])


@router.get("/app", include_in_schema=False)
async def app_root() -> Response:
    return RedirectResponse("/app/", status_code=308)


@router.get("/app/", include_in_schema=False)
async def app_page() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def dashboard_feature(auth: AuthRuntime | None, settings: Settings) -> Feature:
    """Serve /app/ and its assets; with SMART on, register the dashboard client at start-up (after the
    auth feature has started)."""

    def register() -> None:
        if auth is not None:
            register_dashboard(auth.store, settings)
            log.info("dashboard client registered")

    return Feature(name="dashboard", routers=[router], startup=[register],
                   mounts=[("/app/assets", StaticFiles(directory=STATIC / "assets"), "dashboard-assets")])
