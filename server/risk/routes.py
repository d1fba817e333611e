"""Risk adjustment over HTTP, and the one call that wires it into the app (SPEC §10).

* `POST /fhir/$risk-evaluate` (`paymentYear`, default the year after the evaluation date) scores every
  member, set-based; system-level (it rewrites every member's scores), answered with a summary.
* `GET /fhir/Patient/{id}/$risk` (`paymentYear`): the member's scores from claims alone and from all
  sources, per model and blended into the payment score, the uplift, and each condition category with
  its gap status and evidence. Scored at the request, so it is current. Shows diagnoses and coverage:
  it needs what `$alignment` needs (read on the Patient, and on all of its `ALIGNMENT_READS`).
* `GET|POST /fhir/Measure/$ra.evaluate-measure` (Da Vinci RA 2.1): `ra_operation.py`.
* `POST /fhir/$capitation-adjustment`: `capitation_routes.py`.
* Stored reports are kept current: after every committed write, the members it touched that have
  stored reports are scored again and their reports rewritten (unchanged reports stay as they are).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from server.alignment.api import ALIGNMENT_READS
from server.alignment.codes import install_codes
from server.alignment.engine import AlignmentEngine
from server.alignment.findings import Finding, read_finding
from server.alignment.hooks import ALIGNMENT_PARAMETERS
from server.alignment.touched import touched_members
from server.bulk.members import GroupMembership
from server.config import Settings
from server.data_files import MappingError
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.features import POST_COMMIT, PRE_WRITE, Feature, Operation
from server.fhir.http import fhir_response
from server.fhir.service import FhirService
from server.fhir.types import Reply, WriteContext, Written
from server.measures.seed import refuse_writes_to, seed_definitions
from server.risk.capitation_routes import CAPITATION_MEASURE
from server.risk.capitation_routes import router as capitation_router
from server.risk.levers import levers_parameter, member_levers
from server.risk.model import (
    code_rows,
    install_model,
    load_risk_model,
    model_rows,
    risk_codes_key,
)
from server.risk.population import PopulationRisk, population_risk
from server.risk.ra_operation import RA_OPERATION, evaluate_reports
from server.risk.ra_operation import router as ra_router
from server.risk.report import REPORT_PREFIX, REPORTER, model_measures, report_id
from server.risk.results import MemberRisk, read_member_risk
from server.risk.scores import RiskEngine, diagnosis_year
from server.risk.state import Risk, param, risk_of
from server.store.resources import chunks
from server.store.schema import resources

log = logging.getLogger("planfit.risk")
router = APIRouter(prefix="/fhir")
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"


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
        routers=[router, ra_router, capitation_router],
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
        param("paymentYear", valueInteger=year),
        param("members", valueInteger=totals.members),
        param("meanPaymentScoreClaims", valueDecimal=round(totals.mean_claims, 4)),
        param("meanPaymentScoreAll", valueDecimal=round(totals.mean_all, 4)),
        param("totalUplift", valueDecimal=round(totals.total_uplift, 4)),
        param("membersWithUplift", valueInteger=totals.members_with_uplift),
        param("openHistoricGaps", valueInteger=totals.open_historic),
        param("openSuspectedGaps", valueInteger=totals.open_suspected),
        param("closedGaps", valueInteger=totals.closed),
        param("pendingGaps", valueInteger=totals.pending),
        param("productChangeAnnual", valueMoney={"value": float(totals.product_change_annual),
                                                  "currency": risk.engine.mappings.rates.currency}),
        param("rafUpliftAnnual", valueMoney={"value": float(totals.raf_uplift_annual),
                                              "currency": risk.engine.mappings.rates.currency}),
        param("seconds", valueDecimal=round(perf_counter() - started, 3)),
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
    parts = [param("basis", valueCode=basis), param("paymentScore", valueDecimal=round(scores.payment, 4))]
    for version, raw in sorted(scores.raw.items()):
        parts.append(param("model", part=[
            param("version", valueString=version),
            param("rawScore", valueDecimal=round(raw, 4)),
            param("demographicScore", valueDecimal=round(scores.demographic[version], 4)),
        ]))
    return param("score", part=parts)


def risk_parameters(member: MemberRisk) -> dict[str, Any]:
    py = member.payment_year
    out = [
        param("subject", valueReference={"reference": f"Patient/{member.patient_id}"}),
        param("paymentYear", valueInteger=py.year),
        param("diagnosisYear", valueInteger=diagnosis_year(py.year)),
        param("age", valueInteger=member.age),
        param("sex", valueCode="male" if member.sex == "1" else "female"),
        param("segment", valueCode=member.segment.rstrip("_").upper()),
        param("newEnrollee", valueBoolean=member.new_enrollee),
        param("disabled", valueBoolean=member.disabled),
        param("entitlementReason", valueCode=member.orec),
        param("originallyDisabled", valueBoolean=member.orig_disabled),
        param("institutional", valueBoolean=member.institutional),
    ]
    if member.dual_code:
        out.append(param("dualStatusCode", valueCode=member.dual_code))
    out += [
        param("codingIntensity", valueDecimal=py.coding_intensity),
        *(param("normalization", part=[param("version", valueString=m.version),
                                        param("weight", valueDecimal=m.weight),
                                        param("factor", valueDecimal=m.normalization)]) for m in py.models),
        param("factorsSource", valueString=py.source),
        _scores(member, "claims"),
        _scores(member, "all"),
        param("uplift", valueDecimal=round(member.uplift, 4)),
    ]
    for c in member.categories:
        parts = [
            param("code", valueCoding={"system": "http://terminology.hl7.org/CodeSystem/cmshcc", "version": c.version,
                                        "code": c.cc, **({"display": c.label} if c.label else {})}),
            param("ccType", valueCode=c.cc_type),
            param("evidenceStatus", valueCode=c.evidence_status),
            param("superseded", valueBoolean=c.superseded),
        ]
        if c.coefficient is not None:
            parts.append(param("coefficient", valueDecimal=c.coefficient))
        for e in c.evidence:
            parts.append(param("evidence", part=[
                param("resource", valueReference={"reference": e.reference}),
                param("code", valueCode=e.code or e.icd),
                param("sourceKind", valueCode=e.source_kind),
                param("priorYear", valueBoolean=e.prior),
                param("pending", valueBoolean=e.pending),
            ]))
        out.append(param("category", part=parts))
    return {"resourceType": "Parameters", "parameter": out}


def _alignment_levers(risk: Risk, finding: Finding) -> list[dict[str, Any]]:
    """`$alignment`'s second lever: the member's RAF uplift for the current payment year, scored now."""
    year = risk.engine.current_payment_year()
    if risk.model.year(year) is None:
        return []
    with risk.engine.scored_apart(year, [finding.patient_id]) as (conn, tables):  # writes no shared table
        member = read_member_risk(conn, risk.model.years[year], finding.patient_id, tables)
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

