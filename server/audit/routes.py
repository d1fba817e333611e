"""Audit routes under /fhir, and the one call that wires the audit feature into the app.

* `GET /fhir/Patient/$worklist`: the worklist (`worklist.py`), as Parameters or, with `_format=csv` (or
  `Accept: text/csv`), as CSV of the same page. It lists many members' findings, so it needs what a
  population report needs (`ALIGNMENT_READS.require_for_population`): unconfined search scopes on
  Patient and on every type a finding shows.

* `POST /fhir/Measure/product-alignment/$audit-quarter` (`quarter=2026Q3`, in the query or a Parameters
  body) closes the quarter (`report.py`): snapshot, reconciliation with the previous quarter, stored
  MeasureReport, which it returns. It reads every member's finding and writes a MeasureReport, so it needs
  the population reads and create/update on MeasureReport.
* `GET /fhir/Measure/product-alignment/$audit-quarter?quarter=2026Q3` returns the stored report; with
  `_format=csv` the reconciliation's members (`part=changes`, the default) or the strata (`part=strata`).

* `GET|POST /fhir/Measure/encounter-completeness/$completeness` (`periodStart`, `periodEnd`, `window` in
  days; query or Parameters body) answers the encounter data completeness MeasureReport
  (`completeness.py`), computed on each call; with `_format=csv` its rows per source and month. It reads
  every member's Conditions, Encounters and claims: the population reads, and Encounter search.

* `POST /fhir/ExplanationOfBenefit/$denial-root-cause` classifies every denied EOB line (`denials.py`)
  and answers with the stored summary `MeasureReport/denial-root-cause`; `GET` returns that report, or with
  `_format=csv` the results per line (`part=lines`, default), per member (`members`) or per billing
  provider (`providers`). It reads claims and findings of every member: population reads, plus
  create/update on MeasureReport and Group for the POST.
"""

from __future__ import annotations

from typing import Callable

import logging
from time import time_ns

import orjson

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.alignment.engine import AlignmentEngine
from server.alignment.mappings import MappingError
from server.audit.output import WORKLIST_CSV_HEADER, csv_response, wants_csv, worklist_csv_rows, worklist_parameters
from server.audit import completeness, denials
from server.audit.benefits import load_benefits
from server.audit.quarter import Quarter
from server.audit.report import (
    CHANGES_CSV_HEADER,
    STRATA_CSV_HEADER,
    changes_csv_rows,
    close_quarter,
    refuse_client_writes,
    stored_changes,
    stored_report,
    strata_csv_rows,
)
from server.audit.worklist import parse_query, read_page
from server.fhir.context import context_of
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError
from server.fhir.features import IN_TRANSACTION, PRE_WRITE, Feature, Operation
from server.fhir.http import fhir_response, json_body
from server.alignment.api import ALIGNMENT_READS
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.measures.params import body_items

log = logging.getLogger("planfit.audit")
router = APIRouter(prefix="/fhir")
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"
Extras = Callable[[str], dict]


def audit_feature(engine: AlignmentEngine) -> Feature:
    """Serve the audit routes and protect the stored audit reports (the quarter's strata are named with
    the measures' code displays, `app.state.measures`)."""
    try:
        benefits = load_benefits(engine.mappings)  # a broken matrix stops the server
    except MappingError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(f"planfit: cannot start: {exc}") from None
    return Feature(
        name="audit",
        routers=[router],
        operations=[Operation("worklist", _DEFINITION + "Patient-worklist", "Patient"),
                    Operation("denial-root-cause", _DEFINITION + "denial-root-cause", "ExplanationOfBenefit"),
                    Operation("audit-quarter", _DEFINITION + "Measure-audit-quarter", "Measure"),
                    Operation("completeness", _DEFINITION + "Measure-completeness", "Measure")],
        hooks=[(PRE_WRITE, refuse_client_writes), (PRE_WRITE, denials.refuse_client_writes),
               (IN_TRANSACTION, denials.maintain_lines)],
        state={"benefits": benefits, "audit_engine": engine},
    )


@router.get("/Patient/$worklist", summary="Members with findings: filtered, by estimated impact, a page at a time")
async def worklist(request: Request) -> Response:
    ALIGNMENT_READS.require_for_population(context_of(request).access)
    engine: AlignmentEngine = request.app.state.audit_engine
    params = list(request.query_params.multi_items())
    query = parse_query(params, engine.mappings)

    def work():
        with engine.db.connect() as conn:
            return read_page(conn, query, engine.keys)

    page = await run_in_threadpool(work)
    if wants_csv(request.query_params.get("_format"), request.headers.get("accept")):
        return csv_response("worklist.csv", WORKLIST_CSV_HEADER, worklist_csv_rows(page))
    return fhir_response(Reply(200, orjson.dumps(worklist_parameters(page))))


def _quarter(items: list[tuple[str, str]], allowed: tuple[str, ...] = ()) -> Quarter:
    quarters = [value for name, value in items if name == "quarter"]
    unknown = [name for name, _ in items if name not in ("quarter", *allowed)]
    if unknown:
        raise FhirError.of(400, "not-supported", f"Parameter {unknown[0]} is not supported by $audit-quarter", unknown[0])
    if len(quarters) != 1:
        raise FhirError.of(400, "required", "Give one quarter, like quarter=2026Q3", "quarter")
    return Quarter.parse(quarters[0])


@router.post("/Measure/product-alignment/$audit-quarter", summary="Close a quarter's enrollment audit")
async def audit_quarter_close(request: Request) -> Response:
    ctx = context_of(request)
    ALIGNMENT_READS.require_for_population(ctx.access)
    ctx.access.require("MeasureReport", "c")
    ctx.access.require("MeasureReport", "u")
    items = list(request.query_params.multi_items())
    if request.headers.get("content-length", "0") != "0":
        items += body_items(await json_body(request))
    quarter = _quarter(items)
    service: FhirService = request.app.state.fhir
    engine: AlignmentEngine = request.app.state.audit_engine
    displays = request.app.state.measures.displays
    closed = await run_in_threadpool(close_quarter, service.store, engine, quarter, displays)
    return fhir_response(Reply(200, orjson.dumps(closed.report)))


@router.get("/Measure/product-alignment/$audit-quarter", summary="A closed quarter's enrollment audit")
async def audit_quarter_read(request: Request) -> Response:
    ctx = context_of(request)
    ALIGNMENT_READS.require_for_population(ctx.access)
    ctx.access.require("MeasureReport", "r")
    items = list(request.query_params.multi_items())
    quarter = _quarter(items, allowed=("_format", "part"))
    service: FhirService = request.app.state.fhir
    report = await run_in_threadpool(stored_report, service.store, quarter)
    if not wants_csv(request.query_params.get("_format"), request.headers.get("accept")):
        return fhir_response(Reply(200, orjson.dumps(report)))
    part = request.query_params.get("part", "changes")
    if part == "strata":
        return csv_response(f"audit-{quarter}-strata.csv", STRATA_CSV_HEADER, strata_csv_rows(quarter, report))
    if part != "changes":
        raise FhirError.of(400, "invalid", "part is changes or strata", "part")
    changes = await run_in_threadpool(stored_changes, service.store, quarter)
    return csv_response(f"audit-{quarter}-changes.csv", CHANGES_CSV_HEADER, changes_csv_rows(quarter, changes))


DENIAL_CSV = {
    "lines": ("eob", "sequence", "patient", "provider", "service_date", "procedure", "revenue", "place_of_service",
              "carc", "rarc", "submitted", "currency", "category", "finding_status", "enrolled_product",
              "recommended_product", "classification"),
    "members": ("patient", "denied_lines", "denied_amount", "product_mismatch_lines", "product_mismatch_amount"),
    "providers": ("provider", "denied_lines", "denied_amount", "product_mismatch_lines", "product_mismatch_amount"),
}


def _denial_csv_rows(store, part: str) -> list[list]:
    with store.engine.connect() as conn:
        if part == "lines":
            return [[f"ExplanationOfBenefit/{r.eob_id}", r.sequence, f"Patient/{r.patient_id}", r.provider,
                     r.service_date.isoformat(), r.procedure or "", r.revenue or "", r.place_of_service or "", r.carc,
                     r.rarc or "", f"{r.submitted_cents / 100:.2f}", r.currency, r.category or "",
                     r.finding_status or "", r.enrolled_product or "", r.recommended_product or "", r.classification]
                    for r in denials.stored_rows(conn)]
        rows = denials.rollup(conn, "patient_id" if part == "members" else "provider")
    prefix = "Patient/" if part == "members" else ""
    return [[prefix + key, n, f"{(cents or 0) / 100:.2f}", m, f"{(m_cents or 0) / 100:.2f}"]
            for key, n, cents, m, m_cents in rows]


@router.post("/ExplanationOfBenefit/$denial-root-cause", summary="Classify every denied claim line")
async def denial_root_cause_run(request: Request) -> Response:
    ctx = context_of(request)
    ALIGNMENT_READS.require_for_population(ctx.access)
    for rtype in ("MeasureReport", "Group"):
        ctx.access.require(rtype, "c")
        ctx.access.require(rtype, "u")
    service: FhirService = request.app.state.fhir
    report = await run_in_threadpool(denials.run, service.store, request.app.state.audit_engine,
                                     request.app.state.benefits)
    return fhir_response(Reply(200, orjson.dumps(report)))


@router.get("/ExplanationOfBenefit/$denial-root-cause", summary="The last denial root-cause results")
async def denial_root_cause_read(request: Request) -> Response:
    ctx = context_of(request)
    ALIGNMENT_READS.require_for_population(ctx.access)
    ctx.access.require("MeasureReport", "r")
    service: FhirService = request.app.state.fhir
    if not wants_csv(request.query_params.get("_format"), request.headers.get("accept")):
        return fhir_response(await run_in_threadpool(service.read, "MeasureReport", denials.REPORT_ID, "", ctx))
    part = request.query_params.get("part", "lines")
    if part not in DENIAL_CSV:
        raise FhirError.of(400, "invalid", f"part is one of {', '.join(DENIAL_CSV)}", "part")
    rows = await run_in_threadpool(_denial_csv_rows, service.store, part)
    return csv_response(f"denials-{part}.csv", DENIAL_CSV[part], rows)


async def _completeness(request: Request, items: list[tuple[str, str]]) -> Response:
    ctx = context_of(request)
    ALIGNMENT_READS.require_for_population(ctx.access)
    ctx.access.require("Encounter", "s")
    ctx.access.require("MeasureReport", "r")
    engine: AlignmentEngine = request.app.state.audit_engine
    query = completeness.parse_query(items, engine.window().as_of)

    def work():
        with engine.db.connect() as conn:
            return completeness.compute(conn, query)

    total, rows = await run_in_threadpool(work)
    if wants_csv(request.query_params.get("_format"), request.headers.get("accept")):
        return csv_response(f"completeness-{query.start}-{query.end}.csv", completeness.CSV_HEADER,
                            completeness.csv_rows(rows))
    report = completeness.measure_report(query, total, rows, instant_text(time_ns() // 1000))
    return fhir_response(Reply(200, orjson.dumps(report)))


@router.get("/Measure/encounter-completeness/$completeness", summary="Encounter data completeness by source and month")
async def completeness_get(request: Request) -> Response:
    return await _completeness(request, list(request.query_params.multi_items()))


@router.post("/Measure/encounter-completeness/$completeness", summary="Encounter data completeness (Parameters body)")
async def completeness_post(request: Request) -> Response:
    items = list(request.query_params.multi_items())
    if request.headers.get("content-length", "0") != "0":
        items += body_items(await json_body(request))
    return await _completeness(request, items)
