"""The Bulk Data export interactions, independent of the web framework.

Kick-off stores a job and returns its id; polling reports progress or the manifest; cancel and
file lookup are the rest. Every interaction takes the caller's `RequestContext`. A job belongs to
the client, user and patient context that kicked it off: to anyone else it does not exist (404),
which tells them nothing about other exports. A file download also checks that the caller may still
search the file's type exactly as the job was allowed to: a token of the same owner with narrower
scopes gets 403. A client may have `PLANFIT_EXPORT_MAX_JOBS` exports queued or running at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from server.bulk import jobs
from server.bulk.jobs import Owner
from server.bulk.kickoff import KickOff, plan_export
from server.bulk.members import GroupMembership
from server.bulk.plan import ExportPlan
from server.bulk.runner import now_us
from server.bulk.worker import ExportWorkers
from server.config import Settings
from server.fhir.context import RequestContext, forbidden
from server.fhir.dates import http_date, instant_text
from server.fhir.errors import FhirError, Issue, operation_outcome
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.store.bulk_schema import BulkJob

_US = 1_000_000
_MAX_PROGRESS = 99  # X-Progress must stay under 100 characters
# A poll this much earlier than Retry-After still counts as on time (network and timer jitter).
_POLL_SLACK = 0.8


@dataclass(frozen=True)
class ExportFile:
    path: Path
    rtype: str
    kind: str  # output | error


def status_url(base: str, job_id: str) -> str:
    return f"{base}/$export-status/{job_id}"


def file_url(base: str, job_id: str, name: str) -> str:
    return f"{base}/$export-file/{job_id}/{name}"


class BulkExports:
    def __init__(self, service: FhirService, settings: Settings, groups: GroupMembership):
        self.service = service
        self.settings = settings
        self.groups = groups
        self.engine = service.store.engine
        self.workers = ExportWorkers(service.store, settings, groups)

    def start(self) -> None:
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop()

    def kick_off(self, ctx: RequestContext, kick: KickOff, request_url: str, base: str) -> Reply:
        plan = plan_export(self.service, self.groups, ctx, kick, base)
        job_id = str(uuid.uuid4())
        cap = self.settings.export_max_jobs
        with self.engine.begin() as conn:
            accepted = jobs.create(conn, job_id, _owner(ctx), request_url, plan.to_json(), now_us(), cap)
        if not accepted:
            retry = str(self.settings.export_retry_after_seconds)
            raise FhirError(429, Issue("error", "throttled", f"This client already has {cap} exports queued or running: "
                                                             "wait for one to finish, or cancel one"), {"Retry-After": retry})
        self.workers.wake()
        body = orjson.dumps(operation_outcome([Issue("information", "informational", "Export job accepted")]))
        return Reply(202, body, {"Content-Location": status_url(base, job_id)})

    def status(self, ctx: RequestContext, job_id: str, base: str) -> Reply:
        now = now_us()
        with self.engine.connect() as conn:
            job = _own(jobs.get(conn, job_id), ctx, now)
            records = jobs.files(conn, job_id) if job.status == "completed" else []
        if job.status in jobs.ACTIVE:
            return self._in_progress(job, now)
        if job.status == "failed":
            return Reply(500, job.outcome)
        manifest = {
            "transactionTime": instant_text(job.transaction_us or 0),
            "request": job.request,
            "requiresAccessToken": True,
            "output": [
                {"type": f.rtype, "url": file_url(base, job_id, f.name), "count": f.count} for f in records if f.kind == "output"
            ],
            "error": [
                {"type": f.rtype, "url": file_url(base, job_id, f.name), "count": f.count} for f in records if f.kind == "error"
            ],
        }
        headers = {"Content-Type": "application/json", "Expires": http_date(job.expires_us or now)}
        return Reply(200, orjson.dumps(manifest), headers)

    def _in_progress(self, job: BulkJob, now: int) -> Reply:
        """202 with progress, or 429 when polled sooner than the last Retry-After said."""
        retry = self.settings.export_retry_after_seconds
        with self.engine.begin() as conn:
            on_time = jobs.record_poll(conn, job.id, now, now - int(retry * _US * _POLL_SLACK))
        if not on_time:
            raise FhirError(
                429,
                Issue("error", "throttled", f"Polled too soon: wait {retry} s between status requests"),
                {"Retry-After": str(retry)},
            )
        return Reply(202, None, {"X-Progress": _progress(job), "Retry-After": str(retry)})

    def cancel(self, ctx: RequestContext, job_id: str) -> Reply:
        with self.engine.begin() as conn:
            cancelled = jobs.cancel(conn, job_id, _owner(ctx), now_us())
        if not cancelled:
            raise FhirError.of(404, "not-found", "No such export job")
        body = orjson.dumps(operation_outcome([Issue("information", "informational", "Export job cancelled")]))
        return Reply(202, body)

    def file(self, ctx: RequestContext, job_id: str, name: str) -> ExportFile:
        """A completed job's file, for its own owner, whose access to the file's type must still be what
        the job exported with (its compartment and filters), not only the type's scope."""
        with self.engine.connect() as conn:
            job = _own(jobs.get(conn, job_id), ctx, now_us())
            records = jobs.files(conn, job_id) if job.status == "completed" else []
        for record in records:
            path = Path(self.settings.export_dir) / record.path
            if record.name == name and path.is_file():
                if record.kind == "output":
                    _require_plan_access(ctx, ExportPlan.from_json(job.plan), record.rtype)
                return ExportFile(path, record.rtype, record.kind)
        raise FhirError.of(404, "not-found", "No such export file")


def _owner(ctx: RequestContext) -> Owner:
    return Owner(ctx.client_id, ctx.username, ctx.patient)


def _require_plan_access(ctx: RequestContext, plan: ExportPlan, rtype: str) -> None:
    ctx.access.require(rtype, "s")
    exported = next((t.access for t in plan.types if t.rtype == rtype), None)
    if exported != tuple(ctx.access.clauses(rtype, "s")):
        raise forbidden(f"This export's {rtype} file was made for other access than this token's")


def _own(job: BulkJob | None, ctx: RequestContext, now: int) -> BulkJob:
    """The job, if it is the caller's and still current; otherwise 404 with no further detail."""
    if (
        job is None
        or (job.client_id, job.username, job.patient) != (ctx.client_id, ctx.username, ctx.patient)
        or job.status == "cancelled"
        or (job.expires_us is not None and job.expires_us < now)
    ):
        raise FhirError.of(404, "not-found", "No such export job")
    return job


def _progress(job: BulkJob) -> str:
    if job.status == "queued":
        text = "queued" if job.attempts == 0 else f"queued for attempt {job.attempts + 1}"
    else:
        text = job.progress or "running"
        if job.attempts > 1:
            text = f"attempt {job.attempts}: {text}"
    return text[:_MAX_PROGRESS]
