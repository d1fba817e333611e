"""Health probes, metrics and request logging as a feature of the app (`server/fhir/features.py`)."""

from __future__ import annotations

from server.alignment.hooks import EVALUATED
from server.fhir.features import POST_COMMIT, Feature
from server.ops import health, metrics
from server.ops.middleware import OpsMiddleware


def ops_feature() -> Feature:
    """Listed last in `create_app`: its middleware must be the outermost, to time and log everything."""
    return Feature(
        name="ops",
        routers=[health.router, metrics.router],
        middleware=[(OpsMiddleware, {})],
        hooks=[(POST_COMMIT, metrics.count_written), (EVALUATED, metrics.observe_evaluation)],
    )
