"""`GET|POST /fhir/Measure/$ra.evaluate-measure` and `/fhir/Measure/{id}/$ra.evaluate-measure` (Da Vinci RA 2.1).

`periodStart`, `periodEnd`, `subject` = `Patient/x` | `Group/x`, optional `measureId`, `measureUrl`,
`measureIdentifier`. For every configured payment year whose diagnosis year overlaps the period, scores the
members, stores each member's Coding Gap MeasureReports (one per model version, deterministic ids, searchable
with `category=ra`) and answers a Parameters with one `return` Bundle (`ra-measurereport-bundle`) per patient.
Group subjects need population access. `evaluate_reports` also serves the feature's post-commit refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from server.alignment.api import ALIGNMENT_READS
from server.alignment.window import today_utc
from server.fhir.context import RequestContext, context_of
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError
from server.fhir.http import base_url, fhir_response, json_body
from server.fhir.types import Reply
from server.fhir.versions import valid_id
from server.measures.params import body_items
from server.risk.report import coding_gap_report, measure_id, report_bundle
from server.risk.results import read_member_risk
from server.risk.scores import diagnosis_year
from server.risk.state import Risk, param, risk_of
from server.risk.store import store_reports
from server.store.resources import chunks
from server.store.schema import resources

router = APIRouter(prefix="/fhir")
RA_OPERATION = "http://hl7.org/fhir/us/davinci-ra/OperationDefinition/ra.evaluate-measure"
_RA_NAMES = ("periodStart", "periodEnd", "subject", "measureId", "measureIdentifier", "measureUrl")


@dataclass(frozen=True)
class RaRequest:
    start: date
    end: date
    subject_type: str
    subject_id: str
    measure_ids: tuple[str, ...]
    measure_urls: tuple[str, ...]
    measure_identifiers: tuple[str, ...]


def _date(text: str, name: str, end: bool) -> date:
    """The first (or, for `end`, the last) day of a FHIR date of any precision."""
    try:
        lo, hi = date_range(text)
    except DateValueError:
        raise FhirError.of(400, "invalid", f"{name} must be a FHIR date", name) from None
    return datetime.fromtimestamp((hi if end else lo) / 1_000_000, tz=timezone.utc).date()


def parse_ra(items: list[tuple[str, str]], instance: str | None) -> RaRequest:
    given: dict[str, list[str]] = {}
    for name, value in items:
        if name in ("_format", "_pretty"):
            continue
        if name not in _RA_NAMES:
            raise FhirError.of(400, "not-supported", f"Parameter {name} is not defined by $ra.evaluate-measure", name)
        given.setdefault(name, []).append(value)
    for name in ("periodStart", "periodEnd", "subject"):
        if len(given.get(name, [])) != 1:
            raise FhirError.of(400, "required", f"$ra.evaluate-measure takes exactly one {name}", name)
    start, end = _date(given["periodStart"][0], "periodStart", False), _date(given["periodEnd"][0], "periodEnd", True)
    if start > end:
        raise FhirError.of(400, "invalid", "periodStart is after periodEnd", "periodStart")
    rtype, _, rid = given["subject"][0].partition("/")
    if rtype not in ("Patient", "Group") or not valid_id(rid):
        raise FhirError.of(400, "invalid", "subject must be Patient/<id> or Group/<id>", "subject")
    ids = tuple(given.get("measureId", ())) + ((instance,) if instance else ())
    return RaRequest(start, end, rtype, rid, ids, tuple(given.get("measureUrl", ())),
                     tuple(given.get("measureIdentifier", ())))


@router.get("/Measure/$ra.evaluate-measure", summary="Da Vinci RA coding gap reports")
async def ra_get(request: Request) -> Response:
    return await _ra(request, list(request.query_params.multi_items()), None)


@router.post("/Measure/$ra.evaluate-measure", summary="Da Vinci RA coding gap reports (Parameters body)")
async def ra_post(request: Request) -> Response:
    return await _ra(request, body_items(await json_body(request)), None)


@router.get("/Measure/{mid}/$ra.evaluate-measure", summary="Da Vinci RA coding gap reports of one RA model")
async def ra_instance_get(mid: str, request: Request) -> Response:
    return await _ra(request, list(request.query_params.multi_items()), mid)


@router.post("/Measure/{mid}/$ra.evaluate-measure", summary="Da Vinci RA coding gap reports of one RA model")
async def ra_instance_post(mid: str, request: Request) -> Response:
    return await _ra(request, body_items(await json_body(request)), mid)


def _selected(risk: Risk, req: RaRequest) -> list[tuple[int, str]]:
    """(payment year, version) of the RA Measures the request asks for, whose diagnosis year overlaps it."""
    chosen = []
    known = {d["id"]: d for d in risk.definitions if d["resourceType"] == "Measure"}
    for year, py in sorted(risk.model.years.items()):
        if not (req.start.year <= diagnosis_year(year) <= req.end.year):
            continue
        for m in py.models:
            measure = known[measure_id(m.version, year)]
            wanted = [
                not req.measure_ids or measure["id"] in req.measure_ids,
                not req.measure_urls or measure["url"] in req.measure_urls,
                not req.measure_identifiers or any(
                    i["value"] in req.measure_identifiers or f"{i['system']}|{i['value']}" in req.measure_identifiers
                    for i in measure["identifier"]),
            ]
            if all(wanted):
                chosen.append((year, m.version))
    for mid in req.measure_ids:
        if mid not in known:
            raise FhirError.of(404, "not-found", f"Measure/{mid} is not an RA model PlanFit evaluates")
    if not chosen:
        raise FhirError.of(400, "not-supported", "No configured RA model covers that period and measure: PlanFit scores "
                                                 f"payment years {', '.join(str(y) for y in sorted(risk.model.years))} "
                                                 "from the diagnoses of the year before each", "periodStart")
    return chosen


async def _ra(request: Request, items: list[tuple[str, str]], instance: str | None) -> Response:
    ctx = context_of(request)
    ctx.access.require("MeasureReport", "r")
    risk = risk_of(request)
    req = parse_ra(items, instance)
    chosen = _selected(risk, req)
    base = base_url(request)

    def work() -> Reply:
        patients = _subjects(risk, ctx, req, base)
        reports = evaluate_reports(risk, patients, chosen)
        bundles = []
        with risk.engine.db.connect() as conn:
            stored = {r.rid: orjson.loads(r.content) for batch in chunks(patients)
                      for r in conn.execute(select(resources.c.rid, resources.c.content)
                                            .where(resources.c.rtype == "Patient", resources.c.rid.in_(batch)))}
        for pid in patients:
            bundles.append(param("return", resource=report_bundle(stored[pid], reports.get(pid, []), base)))
        return Reply(200, orjson.dumps({"resourceType": "Parameters", "parameter": bundles}))

    return fhir_response(await run_in_threadpool(work))


def _subjects(risk: Risk, ctx: RequestContext, req: RaRequest, base: str) -> list[str]:
    if req.subject_type == "Patient":
        risk.service.read("Patient", req.subject_id, base, ctx)  # 404 / 410 as for a read
        ALIGNMENT_READS.require_for_patient(ctx.access, req.subject_id)
        return [req.subject_id]
    ALIGNMENT_READS.require_for_population(ctx.access)
    risk.service.read("Group", req.subject_id, base, ctx)
    with risk.engine.db.connect() as conn:
        ids = conn.execute(risk.groups.members(conn, req.subject_id)).scalars().all()
        live = set()
        for batch in chunks(sorted(set(ids))):
            live.update(conn.execute(select(resources.c.rid).where(
                resources.c.rtype == "Patient", resources.c.rid.in_(batch), resources.c.deleted.is_(False))).scalars())
    return sorted(live)


def evaluate_reports(risk: Risk, patients: list[str], chosen: list[tuple[int, str]]) -> dict[str, list[dict[str, Any]]]:
    """Score the members for each chosen payment year, render their reports and store them (one write
    transaction, by the server); returns Patient id → reports."""
    today = today_utc()
    out: dict[str, list[dict[str, Any]]] = {}
    for year in sorted({y for y, _ in chosen}):
        risk.engine.evaluate(year, patients)
        versions = [v for y, v in chosen if y == year]
        with risk.engine.db.connect() as conn:
            for pid in patients:
                member = read_member_risk(conn, risk.model.years[year], pid)
                if member is not None:
                    out.setdefault(pid, []).extend(coding_gap_report(member, v, today) for v in versions)
    store_reports(risk.service, [r for reports in out.values() for r in reports])
    return out
