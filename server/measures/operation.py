"""`GET|POST /fhir/Measure/{id}/$evaluate-measure`, and the one call that wires measures into the app.

Reports are built from the persisted findings (never by re-running the rules):

* individual (`reportType=subject`, `subject=Patient/x`): one member's finding, the Patient and the
  caller's reach of it read in one statement (`server.alignment.api.ready_finding`). Needs read on MeasureReport and on that Patient; a Patient the token may not
  read is 404, exactly as a read of it, so a `patient/` token never learns whether another patient
  exists. The report shows diagnoses and products, so it also needs read access to every resource of
  that patient of the types in `ALIGNMENT_READS` (SPEC §6 "Operation results are data too"): 403
  otherwise, also for a granular filter that would see only some of them.
* summary (`population`) and `subject-list`: set-based SQL over every member, or a Group's members
  (`server.bulk.members.GroupMembership`). They reveal facts about many patients, so they need read on
  MeasureReport and search scopes on Patient and on each type of `ALIGNMENT_READS` that are not
  confined to a compartment or a filter: a `system/` token, or a `user/` token of a user who may open
  any patient. Anything narrower is 403.
  Subject lists are streamed: the counts first, then one contained List per population, written as
  the database cursor yields the ids, all read in one snapshot (REPEATABLE READ on PostgreSQL, one
  read transaction on SQLite) so the counts equal the lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import time_ns
from typing import Iterator

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, Engine, Select

from server.alignment.engine import AlignmentEngine
from server.alignment.mappings import Mappings
from server.bulk.members import GroupMembership
from server.fhir.context import RequestContext, context_of
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError
from server.fhir.features import PRE_WRITE, Feature, Operation
from server.fhir.http import FHIR_JSON, base_url, fhir_response, json_body
from server.alignment.api import ALIGNMENT_READS, ready_finding
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.measures.definitions import load_definitions, report_displays
from server.measures.params import EvaluateRequest, body_items, parse_request
from server.measures.populations import MEASURES, MeasureSql, Scope
from server.measures.report import (
    DENOMINATOR,
    INITIAL,
    NUMERATOR,
    ReportContext,
    alignment_individual,
    nonclaims_individual,
    population_report,
)
from server.measures.seed import refuse_writes_to, seed_definitions
from server.store.db import reading

router = APIRouter(prefix="/fhir")
OPERATION = "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure"
_FETCH = 5000  # ids per cursor fetch of a subject list
_LISTS = {INITIAL: "#initial-population", DENOMINATOR: "#initial-population", NUMERATOR: "#numerator"}


@dataclass(frozen=True)
class Measures:
    """What the operation needs, kept on `app.state.measures`."""

    service: FhirService
    engine: AlignmentEngine
    displays: dict[str, dict[str, str]]
    groups: GroupMembership

    @property
    def db(self) -> Engine:
        return self.engine.db

    @property
    def mappings(self) -> Mappings:
        return self.engine.mappings


def measures_feature(service: FhirService, engine: AlignmentEngine, groups: GroupMembership) -> Feature:
    """Seed the definitions of `profiles/` at start-up, protect them, serve `$evaluate-measure`."""
    definitions = load_definitions(engine.mappings)
    return Feature(
        name="measures",
        routers=[router],
        operations=[Operation("evaluate-measure", OPERATION, "Measure")],
        startup=[lambda: seed_definitions(service, definitions)],
        hooks=[(PRE_WRITE, refuse_writes_to(definitions))],
        state={"measures": Measures(service, engine, report_displays(definitions), groups)},
    )


@router.get("/Measure/{mid}/$evaluate-measure", summary="Evaluate a PlanFit measure")
async def evaluate_get(mid: str, request: Request) -> Response:
    return await _evaluate(mid, request, list(request.query_params.multi_items()))


@router.post("/Measure/{mid}/$evaluate-measure", summary="Evaluate a PlanFit measure (Parameters body)",
             openapi_extra={"requestBody": {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}})
async def evaluate_post(mid: str, request: Request) -> Response:
    return await _evaluate(mid, request, body_items(await json_body(request)))


async def _evaluate(mid: str, request: Request, items: list[tuple[str, str]]) -> Response:
    measures: Measures = request.app.state.measures
    measure = MEASURES.get(mid)
    if measure is None:
        raise FhirError.of(404, "not-found", f"Measure/{mid} cannot be evaluated here: PlanFit evaluates "
                                             f"{', '.join('Measure/' + m for m in MEASURES)}")
    request_ctx = context_of(request)
    request_ctx.access.require("MeasureReport", "r")
    req = parse_request(items, measures.engine.window())
    ctx = ReportContext(mid, req.report_type, req.period_start, req.period_end, req.subject,
                        instant_text(time_ns() // 1000), measures.displays)
    base = base_url(request)
    if req.report_type == "subject":
        return fhir_response(await run_in_threadpool(_individual, measures, request_ctx, req, ctx))
    ALIGNMENT_READS.require_for_population(request_ctx.access)
    if req.subject_type == "Group":
        await run_in_threadpool(measures.service.read, "Group", req.subject_id, base, request_ctx)
    if req.report_type == "population":
        return fhir_response(await run_in_threadpool(_summary, measures, measure, req, ctx))
    return StreamingResponse(_subject_list(measures, measure, req, ctx), media_type=FHIR_JSON + "; charset=utf-8")


# -- individual -------------------------------------------------------------------------------------------

def _individual(measures: Measures, request_ctx: RequestContext, req: EvaluateRequest, ctx: ReportContext) -> Reply:
    assert req.subject_id is not None
    with reading(measures.db) as conn:
        finding = ready_finding(conn, request_ctx, req.subject_id)
    if ctx.measure == "product-alignment":
        report = alignment_individual(ctx, finding)
    else:
        report = nonclaims_individual(ctx, finding, measures.mappings.non_claims_valuesets)
    return Reply(200, orjson.dumps(report))


# -- population and subject-list ---------------------------------------------------------------------------

def _scope(measures: Measures, conn: Connection, req: EvaluateRequest) -> Scope:
    return measures.groups.members(conn, req.subject_id) if req.subject_type == "Group" else None


def _snapshot(conn: Connection) -> Connection:
    """One consistent snapshot for every statement of a report (SQLite's read transaction is one already)."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _summary(measures: Measures, measure: MeasureSql, req: EvaluateRequest, ctx: ReportContext) -> Reply:
    with measures.db.connect() as conn:
        summary = measure.summary(conn, measures.mappings, _scope(measures, conn, req))
    return Reply(200, orjson.dumps(population_report(ctx, summary, measures.mappings.rates.currency)))


def _subject_list(measures: Measures, measure: MeasureSql, req: EvaluateRequest, ctx: ReportContext) -> Iterator[bytes]:
    m = measures.mappings
    with measures.db.connect() as raw:
        conn = _snapshot(raw)
        scope = _scope(measures, conn, req)
        report = population_report(ctx, measure.summary(conn, m, scope), m.rates.currency, _LISTS)
        yield orjson.dumps(report)[:-1] + b',"contained":['
        yield from _list(conn, "initial-population", measure.initial_ids(m, scope))
        yield b","
        yield from _list(conn, "numerator", measure.numerator_ids(m, scope))
        yield b"]}"


def _list(conn: Connection, list_id: str, ids: Select) -> Iterator[bytes]:
    """A contained List of Patient references, as the cursor yields the ids (FHIR ids need no escaping)."""
    yield b'{"resourceType":"List","id":"%s","status":"current","mode":"snapshot"' % list_id.encode()
    result = conn.execute(ids, execution_options={"stream_results": True, "yield_per": _FETCH})
    opened = False
    for rows in result.partitions():
        entries = b",".join(b'{"item":{"reference":"Patient/%s"}}' % row[0].encode() for row in rows)
        yield (b',"entry":[' if not opened else b",") + entries
        opened = True
    yield b"]}" if opened else b"}"
