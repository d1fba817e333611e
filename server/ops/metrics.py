"""Prometheus metrics at `GET /metrics`.

* `planfit_http_requests_total` and `planfit_http_request_duration_seconds` by method, route template and
  status (recorded by the request middleware; the template keeps the label set small and free of ids);
* `planfit_resources_written_total` by resource type and operation (a `POST_COMMIT` hook, so only
  committed writes count);
* `planfit_alignment_evaluation_seconds` by scope (`full` re-evaluations, `incremental` after writes);
* `planfit_export_jobs` by state, read from the bulk job table at scrape time (jobs are shared rows, so
  any process reports the same numbers).

Several worker processes: set PROMETHEUS_MULTIPROC_DIR (`planfit serve --workers N` does it) and every
worker's counters are merged at scrape time. `PLANFIT_METRICS_TOKEN`, when set, is required as a Bearer
token; otherwise the endpoint is open (it holds counts only, no data).
"""

from __future__ import annotations

import hmac
import os
from typing import Iterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from server.auth.middleware import bearer_token
from server.fhir.types import WriteContext, Written
from server.store.bulk_schema import bulk_jobs

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXPORT_STATES = ("queued", "running", "completed", "failed", "cancelled")

REQUESTS = Counter("planfit_http_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "planfit_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WRITTEN = Counter("planfit_resources_written", "Resource versions committed", ["type", "operation"])
EVALUATION = Histogram(
    "planfit_alignment_evaluation_seconds", "Duration of alignment evaluations", ["scope"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

router = APIRouter()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    code = str(status)
    REQUESTS.labels(method, route, code).inc()
    LATENCY.labels(method, route, code).observe(seconds)


def count_written(written: list[Written], _ctx: WriteContext) -> None:
    """`POST_COMMIT` hook."""
    for w in written:
        WRITTEN.labels(w.rtype, "delete" if w.deleted else "create" if w.version == 1 else "update").inc()


def observe_evaluation(kind: str, seconds: float) -> None:
    """`EVALUATED` hook: full runs, and incremental ones after a write (sync mode) or by the deferred
    worker's drain, when there was something to evaluate."""
    EVALUATION.labels(kind).observe(seconds)


class ExportJobs(Collector):
    """`planfit_export_jobs{state}` counted in the database at each scrape."""

    def __init__(self, db: Engine):
        self.db = db

    def collect(self) -> Iterator[Metric]:
        with self.db.connect() as conn:
            counts = dict(conn.execute(select(bulk_jobs.c.status, func.count()).group_by(bulk_jobs.c.status)).all())
        family = GaugeMetricFamily("planfit_export_jobs", "Bulk Data export jobs by state", labels=["state"])
        for state in sorted(set(EXPORT_STATES) | set(counts)):
            family.add_metric([state], counts.get(state, 0))
        yield family


def exposition(db: Engine) -> bytes:
    """This process's (or, in multiprocess mode, every worker's) metrics, then the export job counts."""
    if os.environ.get(MULTIPROC_ENV):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
    else:
        shared = REGISTRY
    jobs = CollectorRegistry()
    jobs.register(ExportJobs(db))
    return generate_latest(shared) + generate_latest(jobs)


def authorized(request: Request, token: str) -> bool:
    if not token:
        return True
    given = bearer_token(request.headers) or ""
    return hmac.compare_digest(given.encode(), token.encode())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not authorized(request, request.app.state.settings.metrics_token):
        return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="planfit-metrics"'})
    body = await run_in_threadpool(exposition, request.app.state.store.engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
