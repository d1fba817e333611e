"""Settlements and payment-assurance checks as summary MeasureReports and CSV, both built from one list of
figures (code, value, unit), so the two never disagree. Each figure is a `group` whose `code` is from
PlanFit's savings CodeSystem and whose `measureScore` is a Quantity (USD, %, count or score). A withheld
savings figure is absent; the contained OperationOutcome says why, next to the open methodology questions."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from server.fhir.dates import instant_text
from server.fhir.errors import Issue, operation_outcome
from server.savings.service import Assurance, Result

CODES = "https://planfit.dev/fhir/CodeSystem/savings"
MEASURE = "https://planfit.dev/fhir/Measure/"
ACO_SYSTEM = "https://planfit.dev/fhir/sid/aco"
TRIGGER_EXT = "https://planfit.dev/fhir/StructureDefinition/trigger-status"
OUTCOME_EXT = "https://planfit.dev/fhir/StructureDefinition/report-outcome"
UCUM = "http://unitsofmeasure.org"
_UNITS = {"USD": ("USD", "urn:iso:std:iso:4217", "USD"), "%": ("%", UCUM, "%"), "1": ("count", UCUM, "1"),
          "score": ("score", UCUM, "1")}


@dataclass(frozen=True)
class Figure:
    code: str
    value: Decimal | int | None
    unit: str  # USD | % | 1 | score
    status: str | None = None  # triggers: met | not-met | not-evaluated
    text: str | None = None


def _usd(value_cents: int) -> Decimal:
    return Decimal(value_cents) / 100


def result_figures(result: Result) -> list[Figure]:
    out = [Figure("beneficiaries", result.beneficiaries, "1"), Figure("member-months", result.member_months, "1")]
    for line in result.lines:
        out += [Figure(f"risk-score-{line.basis}", line.raw_score.quantize(Decimal("0.0001")), "score"),
                Figure(f"applied-risk-score-{line.basis}", line.applied_score.quantize(Decimal("0.0001")), "score",
                       text="held at the growth cap" if line.capped else None),
                Figure(f"benchmark-{line.basis}", _usd(line.amount_cents), "USD")]
    if result.settlement is not None:
        s = result.settlement
        out += [Figure("benchmark", _usd(s.benchmark_cents), "USD"), Figure("spend", _usd(s.spend_cents), "USD"),
                Figure("savings", _usd(s.savings_cents), "USD"),
                Figure("savings-rate", s.savings_percent.quantize(Decimal("0.0001")), "%"),
                Figure("minimum-savings-rate", None if s.msr_percent is None else s.msr_percent.quantize(Decimal("0.0001")), "%"),
                Figure("shared-savings", _usd(s.shared_savings_cents), "USD", text=s.outcome),
                Figure("shared-losses", _usd(s.shared_losses_cents), "USD")]
    if result.margin is not None:
        m = result.margin
        benchmark = sum(line.amount_cents for line in result.lines)
        out += [Figure("benchmark", _usd(benchmark), "USD"), Figure("spend", _usd(m.spend_cents), "USD"),
                Figure("savings", _usd(benchmark - m.spend_cents), "USD"),
                Figure("capitation-pmpm", _usd(m.pmpm_cents), "USD"),
                Figure("capitation-received", _usd(m.received_cents), "USD"),
                Figure("capitation-margin", _usd(m.margin_cents), "USD")]
    return out


def assurance_figures(done: Assurance) -> list[Figure]:
    out = [Figure("attributed", done.match.attributed, "1"), Figure("locked-cohort", done.match.locked, "1"),
           Figure("attributed-not-in-cohort", done.match.only_attributed, "1"),
           Figure("cohort-not-attributed", done.match.only_locked, "1"),
           Figure("claims-received", done.claims_received, "1"),
           Figure("claims-expected", done.claims_expected.quantize(Decimal("0.1")), "1"),
           Figure("claims-not-received", None if done.completion is None else
                  ((1 - done.completion) * 100).quantize(Decimal("0.01")), "%")]
    if done.estimate is not None:
        out += [Figure(f"provisional-{f.code}", f.value, f.unit, text=f.text) for f in result_figures(done.estimate)
                if f.code in ("benchmark", "spend", "savings", "shared-savings", "shared-losses", "capitation-margin")]
    out += [Figure(f"trigger-{code}", None, "1", status, why) for code, status, why in done.triggers]
    return out


def _group(figure: Figure) -> dict:
    group: dict = {"code": {"coding": [{"system": CODES, "code": figure.code}]}}
    if figure.text:
        group["code"]["text"] = figure.text
    if figure.status:
        group["extension"] = [{"url": TRIGGER_EXT, "valueCode": figure.status}]
    if figure.value is not None:
        unit, system, code = _UNITS[figure.unit]
        # orjson writes no Decimal; a float keeps every figure here (cents, 4-decimal scores) exactly.
        value = float(figure.value) if isinstance(figure.value, Decimal) else figure.value
        group["measureScore"] = {"value": value, "unit": unit, "system": system, "code": code}
    return group


def measure_report(kind: str, aco: str, period: dict, found: list[Figure], subject: str | None = None,
                   issues: list[Issue] | None = None) -> dict:
    report: dict = {"resourceType": "MeasureReport", "status": "complete", "type": "summary",
                    "identifier": [{"system": ACO_SYSTEM, "value": aco}], "measure": MEASURE + kind,
                    "date": instant_text(time.time_ns() // 1000), "period": period,
                    "group": [_group(f) for f in found]}
    if subject:
        report["subject"] = {"reference": subject}
    if issues:
        report["contained"] = [{**operation_outcome(issues), "id": "outcome"}]
        report["extension"] = [{"url": OUTCOME_EXT, "valueReference": {"reference": "#outcome"}}]
    return report


def assurance_issues(done: Assurance) -> list[Issue]:
    """Why savings are withheld (errors), then the open methodology questions (information)."""
    return [*done.refusals, *(Issue("information", "informational", q) for q in done.questions)]


def assurance_report(done: Assurance) -> dict:
    year = done.contract.performance_year
    return measure_report("payment-assurance", done.contract.aco, {"start": f"{year}-01-01", "end": _month_end(done.month)},
                          assurance_figures(done), done.cohort, assurance_issues(done))


def settlement_report(result: Result) -> dict:
    year = result.contract.performance_year
    return measure_report(f"{result.contract.program}-settlement", result.contract.aco,
                          {"start": f"{year}-01-01", "end": f"{year}-12-31"}, result_figures(result))


def _month_end(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    following = f"{year + number // 12}-{number % 12 + 1:02d}-01"
    return (date.fromisoformat(following) - timedelta(days=1)).isoformat()


def figures_csv(found: list[Figure], issues: list[Issue] = ()) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "value", "unit", "status", "note"])
    for f in found:
        writer.writerow([f.code, "" if f.value is None else str(f.value), f.unit, f.status or "", f.text or ""])
    for issue in issues:
        writer.writerow([f"issue-{issue.severity}", "", "", issue.code, issue.diagnostics])
    return out.getvalue()
