"""The one call from `create_app` that installs the health probes, metrics and request logging."""

from __future__ import annotations

from fastapi import FastAPI

from server.ops import health, metrics
from server.ops.middleware import OpsMiddleware


def install_ops(app: FastAPI) -> None:
    """Call last in `create_app`: the middleware must be the outermost, to time and log everything."""
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.state.fhir.after_commit.append(metrics.count_written)
    metrics.time_evaluations(app.state.alignment)
    app.add_middleware(OpsMiddleware)
