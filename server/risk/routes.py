"""Risk adjustment over HTTP, and the one call that wires it into the app (SPEC §10).

* `POST /fhir/$risk-evaluate` (`paymentYear`, default the year after the evaluation date) scores every
  member, set-based; system-level (it rewrites every member's scores), answered with a summary.
* `GET /fhir/Patient/{id}/$risk` (`paymentYear`): the member's scores from claims alone and from all
  sources, per model and blended into the payment score, the uplift, and each condition category with
  its gap status and evidence. Scored at the request, so it is current. Shows diagnoses and coverage:
  it needs what `$alignment` needs (read on the Patient, and on all of its `ALIGNMENT_READS`).
* `GET|POST /fhir/Measure/$ra.evaluate-measure` and `/fhir/Measure/{id}/$ra.evaluate-measure` (Da Vinci
  RA 2.1): `periodStart`, `periodEnd`, `subject` = `Patient/x` | `Group/x`, optional `measureId`,
  `measureUrl`, `measureIdentifier`. For every configured payment year whose diagnosis year overlaps
  the period, scores the members, stores each member's Coding Gap MeasureReports (one per model
  version, deterministic ids, searchable with `category=ra`) and answers a Parameters with one
  `return` Bundle (`ra-measurereport-bundle`) per patient. Group subjects need population access.
* Stored reports are kept current: after every committed write, the members it touched that have
  stored reports are scored again and their reports rewritten (unchanged reports stay as they are).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from time import perf_counter
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from server.alignment.codes import install_codes
from server.alignment.engine import AlignmentEngine
from server.alignment.hooks import ALIGNMENT_PARAMETERS
from server.alignment.findings import Finding, read_finding
from server.alignment.touched import touched_members
from server.alignment.window import today_utc
from server.bulk.members import GroupMembership
from server.config import Settings
from server.data_files import MappingError
from server.fhir.context import RequestContext, context_of
from server.fhir.types import WriteContext
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError
from server.fhir.features import POST_COMMIT, PRE_WRITE, Feature, Operation
from server.fhir.http import base_url, fhir_response, json_body
from server.alignment.api import ALIGNMENT_READS
from server.fhir.service import FhirService
from server.fhir.versions import valid_id
from server.fhir.types import Reply, Written
from server.measures.params import body_items
from server.measures.seed import refuse_writes_to, seed_definitions
from server.risk.capitation_routes import CAPITATION_MEASURE
from server.risk.capitation_routes import router as capitation_router
from server.risk.model import RiskModel, code_rows, install_model, load_risk_model, model_rows, risk_codes_key
from server.risk.report import REPORT_PREFIX, REPORTER, coding_gap_report, measure_id, model_measures, report_bundle, report_id
from server.risk.levers import levers_parameter, member_levers
from server.risk.population import PopulationRisk, population_risk
from server.risk.results import MemberRisk, read_member_risk
from server.risk.scores import RiskEngine, diagnosis_year
from server.risk.store import store_reports
from server.store.db import begin_writing
from server.store.resources import chunks
from server.store.schema import resources

log = logging.getLogger("planfit.risk")
router = APIRouter(prefix="/fhir")
RA_OPERATION = "http://hl7.org/fhir/us/davinci-ra/OperationDefinition/ra.evaluate-measure"
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"
_RA_NAMES = ("periodStart", "periodEnd", "subject", "measureId", "measureIdentifier", "measureUrl")


@dataclass
class Risk:
    """What the routes need, kept on `app.state.risk`."""

    service: FhirService
    engine: RiskEngine
    definitions: list[dict[str, Any]]
    groups: GroupMembership

    @property
    def model(self) -> RiskModel:
        return self.engine.model


def risk_feature(
    service: FhirService, alignment: AlignmentEngine, settings: Settings, groups: GroupMembership
) -> Feature:
    """Load the risk configuration (a broken file stops the server), load the model tables and seed the RA
    Measures at start-up, keep stored reports current, add the second lever to `$alignment`, serve the
    operations."""
    try:
        model = load_risk_model(settings.mappings_dir or None)
    except MappingError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(f"planfit: cannot start: {exc}") from None
    digest, rows = model_rows(model)
    codes = code_rows(rows)
    key = risk_codes_key(codes)
    definitions = [REPORTER, CAPITATION_MEASURE, *model_measures(list(model.years.values()))]
    risk = Risk(service, RiskEngine(alignment, model, key), definitions, groups)

    def prepare() -> None:
        with alignment.db.begin() as conn:
            AlignmentEngine.lock(conn)
            install_model(conn, digest, rows)
            install_codes(conn, key, codes)
        seed_definitions(service, definitions)

    return Feature(
        name="risk",
        routers=[router, capitation_router],
        operations=[Operation("risk-evaluate", _DEFINITION + "risk-evaluate"),
                    Operation("capitation-adjustment", _DEFINITION + "capitation-adjustment"),
                    Operation("risk", _DEFINITION + "Patient-risk", "Patient"),
                    Operation("ra.evaluate-measure", RA_OPERATION, "Measure")],
        startup=[prepare],
        hooks=[(POST_COMMIT, lambda written, ctx: _refresh_reports(risk, written, ctx)),
               (PRE_WRITE, refuse_writes_to(definitions)),
               (ALIGNMENT_PARAMETERS, lambda finding: _alignment_levers(risk, finding))],
        state={"risk": risk},
    )


def risk_of(request: Request) -> Risk:
    return request.app.state.risk


def _param(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}


def _payment_year(risk: Risk, given: str | None) -> int:
    if given is None:
        year = risk.engine.current_payment_year()
    else:
        try:
            year = int(given)
        except ValueError:
            raise FhirError.of(400, "invalid", "paymentYear must be a year", "paymentYear") from None
    if risk.model.year(year) is None:
        raise FhirError.of(400, "not-supported", f"Payment year {year} is not configured (configured: "
                                                 f"{', '.join(str(y) for y in sorted(risk.model.years))})", "paymentYear")
    return year


# -- $risk-evaluate -------------------------------------------------------------------------------------

@router.post("/$risk-evaluate", summary="Score every member's CMS-HCC risk for a payment year")
async def risk_evaluate(request: Request) -> Response:
    context_of(request).access.require("*", "u")
    risk = risk_of(request)
    year = _payment_year(risk, request.query_params.get("paymentYear"))
    started = perf_counter()

    def work() -> PopulationRisk:
        risk.engine.evaluate(year)
        with risk.engine.db.connect() as conn:
            return population_risk(conn, risk.model.years[year], risk.engine.mappings.rates)

    totals = await run_in_threadpool(work)
    return fhir_response(Reply(200, orjson.dumps({"resourceType": "Parameters", "parameter": [
        _param("paymentYear", valueInteger=year),
        _param("members", valueInteger=totals.members),
        _param("meanPaymentScoreClaims", valueDecimal=round(totals.mean_claims, 4)),
        _param("meanPaymentScoreAll", valueDecimal=round(totals.mean_all, 4)),
        _param("totalUplift", valueDecimal=round(totals.total_uplift, 4)),
        _param("membersWithUplift", valueInteger=totals.members_with_uplift),
        _param("openHistoricGaps", valueInteger=totals.open_historic),
        _param("openSuspectedGaps", valueInteger=totals.open_suspected),
        _param("closedGaps", valueInteger=totals.closed),
        _param("pendingGaps", valueInteger=totals.pending),
        _param("productChangeAnnual", valueMoney={"value": float(totals.product_change_annual),
                                                  "currency": risk.engine.mappings.rates.currency}),
        _param("rafUpliftAnnual", valueMoney={"value": float(totals.raf_uplift_annual),
                                              "currency": risk.engine.mappings.rates.currency}),
        _param("seconds", valueDecimal=round(perf_counter() - started, 3)),
    ]})))


# -- Patient/$risk --------------------------------------------------------------------------------------

@router.get("/Patient/{rid}/$risk", summary="A member's CMS-HCC risk scores, uplift and condition categories")
async def patient_risk(rid: str, request: Request) -> Response:
    ctx = context_of(request)
    risk = risk_of(request)
    year = _payment_year(risk, request.query_params.get("paymentYear"))

    def work() -> Reply:
        risk.service.read("Patient", rid, "", ctx)  # 404 / 410 as for a read
        ALIGNMENT_READS.require_for_patient(ctx.access, rid)
        risk.engine.evaluate(year, [rid])
        with risk.engine.db.connect() as conn:
            member = read_member_risk(conn, risk.model.years[year], rid)
            finding = read_finding(conn, rid)
        if member is None:
            raise FhirError.of(404, "not-found", f"Patient/{rid} has no risk score for payment year {year}: only "
                                                 "Medicare members with a birth date and a sex are scored")
        body = risk_parameters(member)
        body["parameter"].append(levers_parameter(member_levers(finding, member.uplift, risk.engine.mappings.rates)))
        return Reply(200, orjson.dumps(body))

    return fhir_response(await run_in_threadpool(work))


def _scores(member: MemberRisk, basis: str) -> dict[str, Any]:
    scores = member.scores[basis]
    parts = [_param("basis", valueCode=basis), _param("paymentScore", valueDecimal=round(scores.payment, 4))]
    for version, raw in sorted(scores.raw.items()):
        parts.append(_param("model", part=[
            _param("version", valueString=version),
            _param("rawScore", valueDecimal=round(raw, 4)),
            _param("demographicScore", valueDecimal=round(scores.demographic[version], 4)),
        ]))
    return _param("score", part=parts)


def risk_parameters(member: MemberRisk) -> dict[str, Any]:
    py = member.payment_year
    out = [
        _param("subject", valueReference={"reference": f"Patient/{member.patient_id}"}),
        _param("paymentYear", valueInteger=py.year),
        _param("diagnosisYear", valueInteger=diagnosis_year(py.year)),
        _param("age", valueInteger=member.age),
        _param("sex", valueCode="male" if member.sex == "1" else "female"),
        _param("segment", valueCode=member.segment.rstrip("_").upper()),
        _param("newEnrollee", valueBoolean=member.new_enrollee),
        _param("disabled", valueBoolean=member.disabled),
        _param("entitlementReason", valueCode=member.orec),
        _param("originallyDisabled", valueBoolean=member.orig_disabled),
        _param("institutional", valueBoolean=member.institutional),
    ]
    if member.dual_code:
        out.append(_param("dualStatusCode", valueCode=member.dual_code))
    out += [
        _param("codingIntensity", valueDecimal=py.coding_intensity),
        *(_param("normalization", part=[_param("version", valueString=m.version),
                                        _param("weight", valueDecimal=m.weight),
                                        _param("factor", valueDecimal=m.normalization)]) for m in py.models),
        _param("factorsSource", valueString=py.source),
        _scores(member, "claims"),
        _scores(member, "all"),
        _param("uplift", valueDecimal=round(member.uplift, 4)),
    ]
    for c in member.categories:
        parts = [
            _param("code", valueCoding={"system": "http://terminology.hl7.org/CodeSystem/cmshcc", "version": c.version,
                                        "code": c.cc, **({"display": c.label} if c.label else {})}),
            _param("ccType", valueCode=c.cc_type),
            _param("evidenceStatus", valueCode=c.evidence_status),
            _param("superseded", valueBoolean=c.superseded),
        ]
        if c.coefficient is not None:
            parts.append(_param("coefficient", valueDecimal=c.coefficient))
        for e in c.evidence:
            parts.append(_param("evidence", part=[
                _param("resource", valueReference={"reference": e.reference}),
                _param("code", valueCode=e.code or e.icd),
                _param("sourceKind", valueCode=e.source_kind),
                _param("priorYear", valueBoolean=e.prior),
                _param("pending", valueBoolean=e.pending),
            ]))
        out.append(_param("category", part=parts))
    return {"resourceType": "Parameters", "parameter": out}


# -- $ra.evaluate-measure ---------------------------------------------------------------------------------

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
            bundles.append(_param("return", resource=report_bundle(stored[pid], reports.get(pid, []), base)))
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


def _alignment_levers(risk: Risk, finding: Finding) -> list[dict[str, Any]]:
    """`$alignment`'s second lever: the member's RAF uplift for the current payment year, scored now."""
    year = risk.engine.current_payment_year()
    if risk.model.year(year) is None:
        return []
    with risk.engine.db.connect() as conn, begin_writing(conn) as scoring:
        risk.engine.score_in(conn, year, [finding.patient_id])
        member = read_member_risk(conn, risk.model.years[year], finding.patient_id)
        scoring.rollback()  # every `$alignment` read scores anew, so nothing is kept
    if member is None:
        return []
    levers = levers_parameter(member_levers(finding, member.uplift, risk.engine.mappings.rates))
    levers["part"].insert(0, {"name": "paymentYear", "valueInteger": year})
    return [levers]


def _refresh_reports(risk: Risk, written: list[Written], _ctx: WriteContext) -> None:
    """After a commit: score again the touched members that have stored reports, and rewrite those."""
    if not any(w.rtype != "MeasureReport" for w in written):
        return
    with risk.engine.db.connect() as conn:
        # One index probe: while no coding gap report is stored (bulk loads), writes cost nothing more.
        if conn.execute(select(resources.c.rid).where(resources.c.rtype == "MeasureReport",
                                                      resources.c.rid.startswith(REPORT_PREFIX)).limit(1)).first() is None:
            return
        members = sorted(touched_members(conn, risk.engine.keys, written))
        if not members:
            return
        wanted = {report_id(pid, m.version, year): (pid, year, m.version)
                  for pid in members for year, py in risk.model.years.items() for m in py.models}
        have = set()
        for batch in chunks(sorted(wanted)):
            have.update(conn.execute(select(resources.c.rid).where(
                resources.c.rtype == "MeasureReport", resources.c.rid.in_(batch), resources.c.deleted.is_(False))).scalars())
    by_year: dict[int, set[str]] = {}
    chosen: set[tuple[int, str]] = set()
    for rid in have:
        pid, year, version = wanted[rid]
        by_year.setdefault(year, set()).add(pid)
        chosen.add((year, version))
    for year, pids in by_year.items():
        evaluate_reports(risk, sorted(pids), sorted(c for c in chosen if c[0] == year))

