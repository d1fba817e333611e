"""Alignment operations under /fhir, and the one call that wires the engine into the app.

* `POST /fhir/$evaluate-alignment` runs a full re-evaluation (system-level: it rewrites every member's
  finding) and answers with a Parameters summary: members per status, evaluation date, duration.
* `GET /fhir/Patient/{id}/$alignment` returns the member's persisted finding as Parameters: status,
  enrolled and recommended product, each with the `InsurancePlan` naming it (`plans.py`), eligible products with the criteria met and their evidence, the
  diagnosis categories with their evidence and source kinds (patient-reported evidence is shown as
  such, and never qualifies), the non-claims diagnoses, reasons and the estimated annual impact. The
  answer shows diagnoses and products, so it needs read access to the Patient (404 as for a read) and
  to all of that patient's resources of the types in `ALIGNMENT_READS` (403 otherwise; SPEC §6).
* `GET /fhir/$alignment-status` tells how far findings have caught up with the committed writes (mode,
  latest write, the txid through which every write is evaluated, caught up or not): in deferred mode
  (`server/alignment/deferred.py`) findings follow a write by a moment instead of before its response.
  It describes the whole server's writes, so it needs a `system/` scope.

Other features add parameters to a member's `$alignment` answer through the `ALIGNMENT_PARAMETERS`
hook (risk adjustment: the second lever).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.alignment.claim_facts import maintain as maintain_claim_lines
from server.alignment.codes import search_lookup
from server.alignment.deferred import DeferredEvaluation
from server.alignment.coverage_facts import maintain as maintain_coverages
from server.alignment.diagnoses import maintain as maintain_diagnoses
from server.alignment.engine import AlignmentEngine, EngineConfig, RunSummary
from server.alignment.findings import Category, CoverageFact, EligibleProduct, Finding, member_finding
from server.alignment.hooks import ALIGNMENT_PARAMETERS
from server.alignment.mappings import MappingError, Mappings, load_mappings
from server.alignment.mappings.rates import ANY, SEGMENTS
from server.alignment.patient_facts import maintain as maintain_patients
from server.alignment.plans import PlanCatalogue, plan_reference
from server.alignment.risk_factors import MemberFactor, load_risk_factors, member_risk_factors
from server.alignment.window import EvaluationWindow
from server.config import Settings
from server.fhir.consistency import ConsistencyMiddleware
from server.fhir.context import PATIENT_REPORTED, Reads, RequestContext, context_of
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError
from server.fhir.features import IN_TRANSACTION, POST_COMMIT, PRE_WRITE, Feature, Hooks, Operation
from server.fhir.http import fhir_response
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.store.db import reading

log = logging.getLogger("planfit.alignment")
router = APIRouter(prefix="/fhir")

_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"
Extras = Callable[[str], dict]
# What a finding shows: diagnoses (Conditions, and those of claims) and products (Coverage).
ALIGNMENT_READS = Reads(("Condition", "Coverage", "Claim", "ExplanationOfBenefit"))


def alignment_engine(service: FhirService, settings: Settings, hooks: Hooks) -> AlignmentEngine:
    """Load the mappings (a broken file stops the server with the loader's message) and make the engine,
    which calls the POST_EVALUATION and EVALUATED implementations in `hooks`."""
    try:
        mappings = load_mappings(settings.mappings_dir or None, rates_file=settings.rates_file or None)
        config = EngineConfig.parse(settings.lookback_months, settings.evaluation_date, settings.alignment_mode)
        load_risk_factors(mappings.directory)  # checked at start like the other mapping files
    except (MappingError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(f"planfit: cannot start: {exc}") from None
    service.valueset_lookup = search_lookup(mappings)
    return AlignmentEngine(service.store.engine, mappings, config, hooks)


def alignment_feature(engine: AlignmentEngine, service: FhirService, settings: Settings) -> Feature:
    """Keep findings current after every committed write (at once, or by the deferred worker); at
    start-up seed and load the plan catalogue and install the value-set code rows; serve the operations."""
    deferred = DeferredEvaluation(engine) if engine.config.mode == "deferred" else None
    catalogue = PlanCatalogue(service, engine)
    startup: list[Callable[[], None]] = [catalogue.start, engine.prepare]
    shutdown: list[Callable[[], None]] = []
    if deferred is not None:
        startup.append(deferred.start)
        shutdown.append(deferred.stop)
    return Feature(
        name="alignment",
        routers=[router],
        operations=[Operation("evaluate-alignment", _DEFINITION + "evaluate-alignment"),
                    Operation("alignment", _DEFINITION + "Patient-alignment", "Patient")],
        startup=startup,
        shutdown=shutdown,
        middleware=[(ConsistencyMiddleware, {"progress": engine.progress,
                                             "wait_seconds": settings.alignment_wait_seconds})],
        hooks=[(POST_COMMIT, deferred.on_commit if deferred else engine.on_commit),
               (POST_COMMIT, catalogue.on_commit), (PRE_WRITE, catalogue.guard), (IN_TRANSACTION, maintain_diagnoses),
               (IN_TRANSACTION, maintain_coverages), (IN_TRANSACTION, maintain_patients),
               (IN_TRANSACTION, maintain_claim_lines)],
        state={"alignment": engine},
    )


def engine_of(request: Request) -> AlignmentEngine:
    return request.app.state.alignment


@router.post("/$evaluate-alignment", summary="Re-evaluate every member's product alignment")
async def evaluate_alignment(request: Request) -> Response:
    context_of(request).access.require("*", "u")
    summary = await run_in_threadpool(engine_of(request).evaluate_all)
    return fhir_response(Reply(200, orjson.dumps(summary_parameters(summary))))


@router.get("/$alignment-status", summary="How far findings have caught up with the committed writes")
async def alignment_status(request: Request) -> Response:
    context_of(request).access.require_system()
    engine = engine_of(request)
    latest, through = await run_in_threadpool(engine.progress)
    return fhir_response(Reply(200, orjson.dumps({
        "resourceType": "Parameters",
        "parameter": [
            _param("mode", valueCode=engine.config.mode),
            _param("latestWrite", valueInteger=latest),
            _param("evaluatedThrough", valueInteger=through),
            _param("caughtUp", valueBoolean=through >= latest),
        ],
    })))


@router.get("/Patient/{rid}/$alignment", summary="A member's product-alignment finding")
async def patient_alignment(rid: str, request: Request) -> Response:
    ctx = context_of(request)
    engine = engine_of(request)

    def work() -> Reply:
        with reading(engine.db) as conn:
            finding = ready_finding(conn, ctx, rid)
            factors = member_risk_factors(conn, load_risk_factors(engine.mappings.directory),
                                          EvaluationWindow(finding.as_of, engine.config.lookback_months), rid)
        body = finding_parameters(finding, engine.mappings)
        body["parameter"] += [_risk_factor(f) for f in factors]
        body["parameter"] += [p for extra in request.app.state.hooks.of(ALIGNMENT_PARAMETERS) for p in extra(finding)]
        return Reply(200, orjson.dumps(body))

    return fhir_response(await run_in_threadpool(work))


def ready_finding(conn, ctx: RequestContext, patient_id: str) -> Finding:
    """A member's finding for the caller, read in one statement: 403 without the read scopes, 404 / 410 as
    a read of the Patient answers (a Patient beyond the caller's reach is not known), 404 until evaluated,
    403 unless the caller may read every resource of the patient that the finding shows."""
    ctx.access.require("Patient", "r")
    member = member_finding(conn, patient_id, ctx.access.clauses("Patient", "r"))
    if not member.found:
        raise FhirError.of(404, "not-found", f"Patient/{patient_id} is not known")
    if member.deleted:
        raise FhirError.of(410, "deleted", f"Patient/{patient_id} has been deleted")
    ALIGNMENT_READS.require_for_patient(ctx.access, patient_id)
    if member.finding is None:
        raise FhirError.of(404, "not-found", f"Patient/{patient_id} has not been evaluated yet: run $evaluate-alignment")
    return member.finding


# -- rendering -------------------------------------------------------------------------------------------


def _param(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}


def _ref(reference: str) -> dict[str, Any]:
    return {"reference": reference}


def summary_parameters(summary: RunSummary) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            _param("evaluationDate", valueDate=summary.as_of.isoformat()),
            _param("lookbackStart", valueDate=summary.lookback_start.isoformat()),
            _param("members", valueInteger=summary.members),
            *(_param("status", part=[_param("code", valueCode=code), _param("count", valueInteger=count)])
              for code, count in summary.statuses.items()),
            _param("seconds", valueDecimal=round(summary.seconds, 3)),
        ],
    }


def finding_parameters(finding: Finding, mappings: Mappings) -> dict[str, Any]:
    """The finding as Parameters. The plans named are those the evaluation chose (`plan_choice.py`): an
    enrolled product with several plans has none when the data cannot tell which (reason
    `enrolled-plan-unknown`); each rate cell the impact used is shown with its PMPM (`rateCell`)."""
    out = [
        _param("subject", valueReference=_ref(f"Patient/{finding.patient_id}")),
        _param("evaluationDate", valueDate=finding.as_of.isoformat()),
        _param("lookbackStart", valueDate=finding.lookback_start.isoformat()),
        _param("evaluated", valueInstant=instant_text(finding.evaluated_at_us)),
        _param("status", valueCode=finding.status),
    ]
    if finding.kind:
        out.append(_param("kind", valueCode=finding.kind))
    if finding.age is not None:
        out.append(_param("age", valueInteger=finding.age))
    for role, product, plan in (("enrolled", finding.enrolled_product, finding.enrolled_plan),
                                ("recommended", finding.recommended_product, finding.recommended_plan)):
        if product:
            out.append(_param(f"{role}Product", valueCode=product))
            if plan:
                out.append(_param(f"{role}Plan", valueReference=_ref(plan_reference(plan))))
    if finding.dual_level:
        out.append(_param("dualLevel", valueCode=finding.dual_level))
    if finding.annual_impact is not None:
        out.append(_param("estimatedAnnualImpact",
                          valueMoney={"value": float(finding.annual_impact), "currency": finding.currency}))
    for role, key in (("recommended", finding.recommended_rate_cell), ("enrolled", finding.enrolled_rate_cell)):
        if key:
            out.append(_rate_cell(role, key, mappings.rates.pmpm_of(key), finding.currency))
    if finding.overpayment_exposure is not None:
        out.append(_param("overpaymentExposure",
                          valueMoney={"value": float(finding.overpayment_exposure), "currency": finding.currency}))
        out.append(_param("exposureMonths", valueInteger=finding.exposure_months))
    out += [_param("reason", valueCode=code) for code in finding.reasons]
    out += [_eligible(finding, product) for product in finding.eligible]
    out += [_param("nonClaimsCategory", valueCode=code) for code in finding.non_claims_categories]
    out += [_category(finding, category) for category in _categories(finding)]
    out += [_param("coverage", part=_coverage(coverage)) for coverage in finding.coverages]
    return {"resourceType": "Parameters", "parameter": out}


def _rate_cell(role: str, key: str, pmpm: Decimal | None, currency: str) -> dict[str, Any]:
    """The rate cell (SPEC §4.3) priced for the recommended or enrolled product: a product code alone is the
    product's own PMPM; else `product/region/segment[/age band]`, a part `*` being one the cell leaves out,
    the segment part a dual segment (`segment`) or a Medicaid aid category (`aidCategory`), the age band
    (`ageBand`) the member's age on the evaluation date fell in."""
    product, region, segment, band = (key.split("/") + [ANY, ANY, ANY])[:4]
    parts = [_param("role", valueCode=role), _param("product", valueCode=product)]
    parts += [_param("region", valueCode=region)] if region != ANY else []
    if segment != ANY:
        parts.append(_param("segment" if segment in SEGMENTS else "aidCategory", valueCode=segment))
    parts += [_param("ageBand", valueCode=band)] if band != ANY else []

    if pmpm is not None:
        parts.append(_param("pmpm", valueMoney={"value": float(pmpm), "currency": currency}))
    return _param("rateCell", part=parts)


def _risk_factor(factor: MemberFactor) -> dict[str, Any]:
    """A HARP risk factor the member's claims show (SPEC §4.3: listed for referral candidates)."""
    return _param("riskFactor", part=[
        _param("code", valueCode=factor.factor.code),
        _param("display", valueString=factor.factor.display),
        _param(factor.factor.measure, valueInteger=factor.value),
        _param("threshold", valueInteger=factor.factor.at_least),
        _param("met", valueBoolean=factor.met),
        *(_param("evidence", valueReference=_ref(ref)) for ref in factor.claims),
    ])


def _eligible(finding: Finding, product: EligibleProduct) -> dict[str, Any]:
    parts = [_param("product", valueCode=product.product),
             _param("plan", valueReference=_ref(plan_reference(product.plan))),
             _param("priority", valueInteger=product.priority)]
    for criterion in product.criteria:
        evidence = finding.criterion_evidence(criterion)
        parts.append(_param("criterion", part=[
            _param("name", valueCode=criterion.name),
            _param("value", valueString=criterion.value),
            *(_param("evidence", valueReference=_ref(ref)) for ref in evidence),
        ]))
    return _param("eligibleProduct", part=parts)


def _categories(finding: Finding) -> list[Category]:
    """The finding's categories, and those only suspect evidence names (patient-reported, provisional,
    resolved: it never counts, so the engine records no category for them): shown with clinical, claims
    and nonClaims false."""
    counted = {c.category for c in finding.categories}
    reported = dict.fromkeys(e.category for e in finding.evidence if e.category not in counted)
    return [*finding.categories, *(Category(category, False, False, False) for category in reported)]


def _category(finding: Finding, category: Category) -> dict[str, Any]:
    evidence = [e for e in finding.evidence if e.category == category.category]
    parts = [
        _param("code", valueCode=category.category),
        _param("clinical", valueBoolean=category.clinical),
        _param("claims", valueBoolean=category.claims),
        _param("nonClaims", valueBoolean=category.non_claims),
        _param("patientReported", valueBoolean=any(e.source_kind == PATIENT_REPORTED for e in evidence)),
        _param("suspect", valueBoolean=any(not e.qualifying for e in evidence)),
    ]
    for e in evidence:
        evidence = [_param("resource", valueReference=_ref(e.reference))]
        if e.system:
            evidence.append(_param("system", valueUri=e.system))
        if e.code:
            evidence.append(_param("code", valueCode=e.code))
        evidence += [_param("date", valueDate=e.date.isoformat()), _param("sourceKind", valueCode=e.source_kind),
                     _param("grade", valueCode=e.grade)]
        if e.lifelong:
            evidence.append(_param("lastAffirmed", valueDate=e.last_affirmed.isoformat()))
        parts.append(_param("evidence", part=evidence))
    return _param("category", part=parts)


def _coverage(coverage: CoverageFact) -> list[dict[str, Any]]:
    parts = [_param("resource", valueReference=_ref(coverage.reference))]
    if coverage.product:
        parts.append(_param("product", valueCode=coverage.product))
    if coverage.line_of_business:
        parts.append(_param("lineOfBusiness", valueCode=coverage.line_of_business))
    if coverage.dual_code:
        parts.append(_param("dualStatusCode", valueCode=coverage.dual_code))
    if coverage.dual_level:
        parts.append(_param("dualLevel", valueCode=coverage.dual_level))
    if coverage.harp_status:
        parts.append(_param("nyHarpStatus", valueCode=coverage.harp_status))
    if coverage.aid_category:
        parts.append(_param("aidCategory", valueCode=coverage.aid_category))

    parts.append(_param("current", valueBoolean=coverage.current))
    return parts
