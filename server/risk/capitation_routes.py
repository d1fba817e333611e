"""`POST /fhir/$capitation-adjustment`: capitation by line of business (SPEC §10) over HTTP.

The body is either the rates CSV itself (`Content-Type: text/csv`) or a Parameters resource with
`rates` and optionally `riskTransfers`, each a `valueString` holding the CSV or a `valueAttachment`
(`contentType` text/csv, base64 `data`). Files are validated whole (`capitation.py`): a bad row is
refused with 400 and an OperationOutcome whose expression names the file, the row and the field, and
nothing is stored. The answer is a MeasureReport (type summary) with one group per approach,
stratified by provider organization × line of business, stored under an id derived from the inputs
(so sending the same files again changes nothing), or the same table as CSV with `Accept: text/csv`.
Computing and storing a report needs create access to MeasureReport.

Member months a rates row leaves empty (or every row's, with `deriveMemberMonths` = true) are derived
from the stored Coverage periods and attribution (`member_months.py`): the base year is `baseYear`
(default: the year before the evaluation date's) and year 1 the one after it. With a CSV body both are
query parameters. Deriving counts over every member, so it needs search access to Coverage and
Patient not confined to some of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.measurereport import (
    MeasureReport,
    MeasureReportGroup,
    MeasureReportGroupStratifier,
    MeasureReportGroupStratifierStratum,
    MeasureReportGroupStratifierStratumComponent,
    MeasureReportGroupStratifierStratumPopulation,
)
from fhir.resources.R4B.money import Money
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity

from server.alignment.window import today_utc
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.http import fhir_response, read_body
from server.fhir.types import Reply
from server.risk.capitation import (
    APPROACHES,
    Adjustment,
    InputError,
    RateRow,
    adjustments,
    parse_rates,
    parse_transfers,
    to_csv,
    with_member_months,
)
from server.risk.member_months import member_months
from server.risk.store import store_reports

router = APIRouter(prefix="/fhir")
MEASURE_ID = "capitation-adjustment"
MEASURE = "https://planfit.dev/fhir/Measure/" + MEASURE_ID
APPROACH_SYSTEM = "https://planfit.dev/fhir/CodeSystem/capitation-approach"
EXT = "https://planfit.dev/fhir/StructureDefinition/capitation-"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
CURRENCY = "USD"
CAPITATION_MEASURE = {
    "resourceType": "Measure", "id": MEASURE_ID, "url": MEASURE, "version": "1", "name": "CapitationAdjustment",
    "title": "Capitation adjustment by line of business", "status": "active", "experimental": False,
    "publisher": "PlanFit",
    "description": ("PMPM capitation adjustment by provider organization and line of business under four approaches: "
                    + ", ".join(APPROACHES) + ". Stratum measureScore: adjusted PMPM; population count: base-year "
                    "member months. See README 'Capitation by line of business'."),
    "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "continuous-variable"}]},
}


def _text_of(param: dict[str, Any], name: str) -> str:
    if isinstance(param.get("valueString"), str):
        return param["valueString"]
    attachment = param.get("valueAttachment")
    if isinstance(attachment, dict) and isinstance(attachment.get("data"), str):
        try:
            return base64.b64decode(attachment["data"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise FhirError.of(400, "invalid", f"{name}: the attachment is not base64 of UTF-8 text", name) from None
    raise FhirError.of(400, "invalid", f"{name} needs valueString (the CSV) or valueAttachment.data", name)


@dataclass(frozen=True)
class Inputs:
    rates: str
    transfers: str | None = None
    derive: bool = False  # every row's member months from Coverage and attribution
    base_year: int | None = None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise FhirError.of(400, "invalid", f"{name} must be true or false", name)


def _year(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        year = int(value)
    except (TypeError, ValueError):
        raise FhirError.of(400, "invalid", f"{name} must be a year", name) from None
    if isinstance(value, bool) or not 1900 <= year <= 9998:
        raise FhirError.of(400, "invalid", f"{name} must be a year", name)
    return year


def _inputs(content_type: str, raw: bytes, query: Any) -> Inputs:
    if content_type == "text/csv":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FhirError.of(400, "invalid", "The CSV is not UTF-8") from None
        return Inputs(text, None, _flag(query.get("deriveMemberMonths", "false"), "deriveMemberMonths"),
                      _year(query.get("baseYear"), "baseYear"))
    if content_type not in ("application/fhir+json", "application/json"):
        raise FhirError.of(415, "not-supported", "Send text/csv (the rates file) or a Parameters resource")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError.of(400, "structure", "The body is not JSON") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" or not isinstance(body.get("parameter"), list):
        raise FhirError.of(400, "structure", "$capitation-adjustment takes a Parameters resource or a CSV")
    given: dict[str, Any] = {}
    for i, param in enumerate(body["parameter"]):
        name = param.get("name") if isinstance(param, dict) else None
        if name not in ("rates", "riskTransfers", "deriveMemberMonths", "baseYear"):
            raise FhirError.of(400, "not-supported", f"Parameter {name!r} is not defined by $capitation-adjustment",
                               f"Parameters.parameter[{i}]")
        if name in given:
            raise FhirError.of(400, "invalid", f"Parameter {name} is given more than once", name)
        given[name] = (_flag(param.get("valueBoolean"), name) if name == "deriveMemberMonths"
                       else _year(param.get("valueInteger"), name) if name == "baseYear" else _text_of(param, name))
    if "rates" not in given:
        raise FhirError.of(400, "required", "$capitation-adjustment needs the rates file", "rates")
    return Inputs(given["rates"], given.get("riskTransfers"), given.get("deriveMemberMonths", False),
                  given.get("baseYear"))


def _derived_rates(request: Request, rows: list[RateRow], inputs: Inputs) -> tuple[list[RateRow], int | None]:
    """The rows with their missing member months derived; the base year used, if any were."""
    if not inputs.derive and not any(r.derived for r in rows):
        return rows, None
    access = context_of(request).access
    for rtype in ("Coverage", "Patient"):  # counts over every member: never for a token confined to some
        access.require(rtype, "s")
        if access.clauses(rtype, "s"):
            raise FhirError.of(403, "forbidden", "Deriving member months counts every member: the access token "
                               f"is confined to some {rtype} resources", "deriveMemberMonths")
    engine = request.app.state.risk.engine
    as_of = engine.alignment.window().as_of
    base = inputs.base_year if inputs.base_year is not None else as_of.year - 1
    with engine.db.connect() as conn:
        counts = member_months(conn, engine.mappings, engine.keys, as_of, (base, base + 1))
    derived = {key: (by_year.get(base, 0), by_year.get(base + 1, 0)) for key, by_year in counts.items()}
    return with_member_months(rows, derived, inputs.derive), base


def _money(value: Any) -> Money:
    return Money(value=value, currency=CURRENCY)


def _extension(name: str, value: Decimal | Money) -> Extension:
    if isinstance(value, Money):
        return Extension(url=EXT + name, valueMoney=value)
    return Extension(url=EXT + name, valueDecimal=value)


def _text(text: str) -> CodeableConcept:
    return CodeableConcept(text=text)


def _stratum(a: Adjustment) -> MeasureReportGroupStratifierStratum:
    return MeasureReportGroupStratifierStratum(
        extension=[
            _extension("average-risk", a.average_risk),
            _extension("relative-risk", a.relative_risk),
            _extension("current-pmpm", _money(a.pmpm)),
            _extension("factor", a.factor),
            _extension("year1-factor", a.year1_factor),
            _extension("resettlement", _money(a.resettlement)),
        ],
        component=[MeasureReportGroupStratifierStratumComponent(code=_text("provider"), value=_text(a.provider)),
                   MeasureReportGroupStratifierStratumComponent(code=_text("lob"), value=_text(a.lob))],
        population=[MeasureReportGroupStratifierStratumPopulation(
            code=CodeableConcept(coding=[Coding(system=POPULATION, code="initial-population")]),
            count=int(a.member_months))],
        measureScore=Quantity(value=a.adjusted_pmpm, unit=CURRENCY, system="urn:iso:std:iso:4217", code=CURRENCY),
    )


def capitation_report(report_id: str, rows: list[Adjustment], today: date) -> dict[str, Any]:
    """The report as FHIR JSON, built with the R4B models: a handful of strata per request, so typing
    the nesting costs nothing that matters (the per-member reports of `measures/` stay plain dicts)."""
    groups = []
    for approach in APPROACHES:
        strata = [_stratum(a) for a in rows if a.approach == approach]
        if strata:
            groups.append(MeasureReportGroup(
                code=CodeableConcept(coding=[Coding(system=APPROACH_SYSTEM, code=approach)]),
                stratifier=[MeasureReportGroupStratifier(code=[_text("provider-lob")], stratum=strata)]))
    report = MeasureReport(id=report_id, status="complete", type="summary", measure=MEASURE, date=today,
                           period=Period(start=date(today.year, 1, 1), end=date(today.year, 12, 31)), group=groups)
    return orjson.loads(report.model_dump_json())


@router.post("/$capitation-adjustment", summary="Capitation adjustment by provider organization and line of business",
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}},
                                                        "application/fhir+json": {"schema": {"type": "object"}}}}})
async def capitation_adjustment(request: Request) -> Response:
    ctx = context_of(request)
    ctx.access.require("MeasureReport", "c")
    raw = await read_body(request, request.app.state.settings.max_body_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    inputs = _inputs(content_type, raw, request.query_params)
    try:
        rates = parse_rates(inputs.rates)
        transfers = parse_transfers(inputs.transfers) if inputs.transfers else None
        rates, base_year = await run_in_threadpool(_derived_rates, request, rates, inputs)
        rows = adjustments(rates, transfers)
    except InputError as exc:
        raise FhirError.of(400, "invalid", str(exc), exc.where) from None
    # Derived member months enter the id: the same files give a new report once the coverage changes.
    months = [[r.provider, r.lob, str(r.base_member_months), str(r.year1_member_months)] for r in rates]
    digest = hashlib.sha256(orjson.dumps([inputs.rates, inputs.transfers, base_year, months])).hexdigest()[:40]
    report = capitation_report(f"capitation-{digest}", rows, today_utc())
    await run_in_threadpool(store_reports, request.app.state.fhir, [report])
    if "text/csv" in request.headers.get("accept", ""):
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Location": f"MeasureReport/{report['id']}"})
    return fhir_response(Reply(200, orjson.dumps(report), {"Content-Location": f"MeasureReport/{report['id']}"}))
