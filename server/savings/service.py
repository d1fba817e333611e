"""The savings operations, independent of the web framework: load an ACO's contract, beneficiaries and
claims; settle its performance year (benchmark, MSSP sharing or REACH capitation margin); and the monthly
payment-assurance check against a locked roster, which withholds every savings figure when the attributed
beneficiaries are not exactly the locked cohort."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import orjson
from sqlalchemy import Connection, select

from server.fhir.context import RequestContext
from server.fhir.errors import FhirError, Issue
from server.fhir.service import FhirService
from server.fhir.writer import Writer
from server.fhir.types import Reply
from server.projection.service import aco_of, parsed_files
from server.rosters.atr import is_attribution_list, list_status
from server.rosters.params import OperationInput
from server.savings import arithmetic, figures
from server.savings.arithmetic import BenchmarkLine, Margin, Settlement, cents
from server.savings.inputs import parse_beneficiaries, parse_claims, replace_inputs
from server.savings.schema import RISK_SCALE, savings_contracts
from server.savings.terms import Terms, load_terms

PROGRAMS = ("mssp", "reach")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Contract:
    aco: str
    performance_year: int
    program: str
    track: str | None
    corridor_percent: Decimal | None  # None: the variable MSR/MLR (the table)
    base_rate_cents: int
    reference_risk: Decimal
    pmpm_cents: int | None


@dataclass(frozen=True)
class Result:
    """A performance year settled (or, for payment assurance, estimated to a month)."""

    contract: Contract
    beneficiaries: int
    member_months: int
    lines: list[BenchmarkLine]
    settlement: Settlement | None  # MSSP
    margin: Margin | None  # REACH


@dataclass
class Assurance:
    contract: Contract
    month: str  # YYYY-MM
    cohort: str  # Group/id
    match: figures.CohortMatch
    locked: bool
    months_elapsed: int
    claims_expected: Decimal
    claims_received: int
    completion: Decimal | None  # share of expected claims received
    estimate: Result | None  # None: withheld (see `refusals`)
    refusals: list[Issue] = field(default_factory=list)
    triggers: list[tuple[str, str, str]] = field(default_factory=list)  # (code, met | not-met | not-evaluated, why)
    questions: list[str] = field(default_factory=list)


def _decimal(inp: OperationInput, name: str, required: bool = True) -> Decimal | None:
    value = inp.one(name)
    if isinstance(value, dict):  # valueMoney / valueQuantity
        value = value.get("value")
    if value is None:
        if required:
            raise FhirError.of(400, "required", f"{name} is required", name)
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        raise FhirError.of(400, "invalid", f"{name} must be a non-negative number", name)
    return number


def _cents(inp: OperationInput, name: str, required: bool = True) -> int | None:
    amount = _decimal(inp, name, required)
    return None if amount is None else cents(amount * 100)


class Savings:
    def __init__(self, service: FhirService, terms: Terms | None = None):
        self.service = service
        self.terms = terms or load_terms()

    # -- load -----------------------------------------------------------------------------------------

    def _contract_row(self, inp: OperationInput, aco: str, now_us: int) -> dict:
        year = inp.text("performanceYear")
        if year is None or not str(year).isdigit() or not 2000 <= int(year) <= 2100:
            raise FhirError.of(400, "required", "performanceYear (e.g. 2026) is required", "performanceYear")
        program = inp.text("program")
        if program not in PROGRAMS:
            raise FhirError.of(400, "invalid", "program must be mssp or reach", "program")
        track = inp.text("track")
        corridor = inp.text("corridor")
        corridor_bp = None
        if program == "mssp":
            if track not in self.terms.mssp.tracks:
                raise FhirError.of(400, "invalid", f"track must be one of {', '.join(self.terms.mssp.tracks)}", "track")
            if corridor not in (None, "variable"):
                chosen = _decimal(inp, "corridor")
                if self.terms.mssp.tracks[track].sided != "two" or chosen not in self.terms.mssp.corridorChoices:
                    raise FhirError.of(400, "invalid", "corridor: a two-sided track's MSR/MLR, one of "
                                       f"{', '.join(str(c) for c in self.terms.mssp.corridorChoices)} or variable", "corridor")
                corridor_bp = int(chosen * 100)
        elif track is not None or corridor is not None:
            raise FhirError.of(400, "invalid", "track and corridor are MSSP terms", "track")
        pmpm = _cents(inp, "capitationPmpm", required=program == "reach")
        reference = _decimal(inp, "referenceRiskScore")
        if not 0 < reference < 100:
            raise FhirError.of(400, "invalid", "referenceRiskScore must be above 0", "referenceRiskScore")
        return {"aco": aco, "performance_year": int(year), "program": program, "track": track,
                "corridor_bp": corridor_bp, "base_rate_cents": _cents(inp, "baseRate"),
                "reference_risk": int((reference * RISK_SCALE).to_integral_value()), "pmpm_cents": pmpm,
                "loaded_us": now_us}

    def load(self, ctx: RequestContext, inp: OperationInput) -> dict[str, int]:
        ctx.access.require("MeasureReport", "c")
        aco = aco_of(inp)
        files = parsed_files(inp, aco, {"beneficiaries": parse_beneficiaries, "claims": parse_claims})
        self.service.store.write(lambda tx: replace_inputs(tx.conn, aco, self._contract_row(inp, aco, tx.now_us),
                                                          files["beneficiaries"], files["claims"]))
        return {name: len(rows) for name, rows in files.items()}

    # -- settle ---------------------------------------------------------------------------------------

    def _contract(self, conn: Connection, aco: str) -> Contract:
        row = conn.execute(select(savings_contracts).where(savings_contracts.c.aco == aco)).first()
        if row is None:
            raise FhirError.of(404, "not-found", f"No savings inputs for ACO {aco} ($savings-load first)")
        return Contract(row.aco, row.performance_year, row.program, row.track,
                        None if row.corridor_bp is None else Decimal(row.corridor_bp) / 100,
                        row.base_rate_cents, Decimal(row.reference_risk) / RISK_SCALE, row.pmpm_cents)

    def _result(self, contract: Contract, cohorts: list[arithmetic.Cohort], spend: int, months: int = 12) -> Result:
        """The settlement with the benchmark (and capitation received) for `months` of the year."""
        caps = self.terms.riskScoreCaps
        cap = caps.mssp if contract.program == "mssp" else caps.reach
        lines = arithmetic.benchmark(cohorts, contract.base_rate_cents, contract.reference_risk, cap,
                                     caps.voluntaryExempt)
        total = cents(Decimal(sum(line.amount_cents for line in lines)) * months / 12)
        beneficiaries = sum(co.beneficiaries for co in cohorts)
        member_months = sum(co.member_months for co in cohorts)
        settlement = margin = None
        if contract.program == "mssp":
            settlement = arithmetic.mssp_settlement(self.terms.mssp, self.terms.mssp.tracks[contract.track], total,
                                                    spend, beneficiaries, contract.corridor_percent)
        else:
            margin = arithmetic.reach_margin(contract.pmpm_cents, cents(Decimal(member_months) * months / 12), spend)
        return Result(contract, beneficiaries, member_months, lines, settlement, margin)

    def settle(self, ctx: RequestContext, inp: OperationInput) -> Result:
        ctx.access.require("MeasureReport", "r")
        aco = aco_of(inp)
        with self.service.store.engine.connect() as conn:
            contract = self._contract(conn, aco)
            first = contract.performance_year * 12
            spend = figures.spend_cents(conn, aco, first, first + 11)
            return self._result(contract, figures.cohorts(conn, aco), spend)

    # -- payment assurance ----------------------------------------------------------------------------

    def _cohort(self, ctx: RequestContext, inp: OperationInput, base: str) -> tuple[str, bool]:
        ref = inp.reference("cohort") if not isinstance(inp.one("cohort"), str) else inp.text("cohort")
        rtype, _, rid = (ref or "").partition("/")
        if rtype != "Group" or not rid:
            raise FhirError.of(400, "required", "cohort (the locked roster: Group/id) is required", "cohort")
        group = orjson.loads(self.service.read("Group", rid, base, ctx).body or b"{}")
        if not is_attribution_list(group):
            raise FhirError.of(422, "business-rule", f"Group/{rid} is not an attribution list (SPEC §11)", "cohort")
        return rid, list_status(group) == "final"

    def assurance(self, ctx: RequestContext, inp: OperationInput, base: str) -> Assurance:
        ctx.access.require("MeasureReport", "r")
        aco = aco_of(inp)
        month = inp.text("month") or ""
        parsed = _MONTH.fullmatch(month)
        if parsed is None:
            raise FhirError.of(400, "required", "month (YYYY-MM) is required", "month")
        group_id, locked = self._cohort(ctx, inp, base)
        settings = self.terms.assurance
        with self.service.store.engine.connect() as conn:
            contract = self._contract(conn, aco)
            if int(parsed[1]) != contract.performance_year:
                raise FhirError.of(422, "business-rule", f"month must lie in performance year {contract.performance_year}",
                                   "month")
            first, report = contract.performance_year * 12, int(parsed[1]) * 12 + int(parsed[2]) - 1
            match = figures.match_locked(conn, aco, group_id)
            profile = figures.lag_profile(conn, aco, report - settings.runOutMonths, report)
            by_month = figures.received_by_service_month(conn, aco, first, report, report)
            cohorts = figures.cohorts(conn, aco)
        done = Assurance(contract, month, f"Group/{group_id}", match, locked, report - first + 1, Decimal(0), 0, None,
                         None, questions=list(settings.openQuestions))
        completed_spend = Decimal(0)
        measurable = True
        for service_month, (received, paid) in by_month.items():
            share = profile.completion(report - service_month)
            if not share:
                measurable = False
                continue
            done.claims_received += received
            done.claims_expected += Decimal(received) / share
            completed_spend += Decimal(paid) / share
        if done.claims_expected:
            done.completion = Decimal(done.claims_received) / done.claims_expected
        if not locked:
            done.refusals.append(Issue("error", "business-rule", f"{done.cohort} is not final: savings are only "
                                       "reported against a locked cohort"))
        if match.attributed != match.locked or match.only_attributed or match.only_locked:
            done.refusals.append(Issue("error", "business-rule", (
                f"The attributed count ({match.attributed}) does not match the locked cohort ({match.locked}): "
                f"{match.only_attributed} attributed beneficiaries are not in it and {match.only_locked} of its "
                "members are not attributed; no savings figure is shown until they match")))
        if not measurable or done.completion is None:
            done.refusals.append(Issue("error", "incomplete", "The claims lag cannot be measured: no run-out-complete "
                                       f"claims of some lag ({settings.runOutMonths} months of run-out)"))
        if not done.refusals:
            done.estimate = self._result(contract, cohorts, cents(completed_spend), done.months_elapsed)
        self._triggers(done)
        return done

    def _triggers(self, done: Assurance) -> None:
        match_ok = done.locked and not (done.match.only_attributed or done.match.only_locked)
        done.triggers.append(("cohort-match", "met" if match_ok else "not-met",
                              f"{done.match.attributed} attributed, {done.match.locked} in the locked cohort"))
        minimum = self.terms.assurance.minimumCompletionPercent / 100
        if done.completion is None:
            done.triggers.append(("claims-completion", "not-evaluated", "no lag distribution"))
        else:
            done.triggers.append(("claims-completion", "met" if done.completion >= minimum else "not-met",
                                  f"{done.completion * 100:.1f}% of expected claims received (minimum {minimum * 100:.0f}%)"))
        settled = done.estimate.settlement if done.estimate else None
        if done.estimate is None:
            done.triggers.append(("savings-threshold", "not-evaluated", "savings withheld"))
        elif settled is not None:
            done.triggers.append(("savings-threshold", "met" if settled.outcome == "shared-savings" else "not-met",
                                  f"provisional savings rate {settled.savings_percent:.2f}% against MSR "
                                  f"{'n/a' if settled.msr_percent is None else f'{settled.msr_percent:.2f}%'}"))
        else:
            margin = done.estimate.margin
            done.triggers.append(("savings-threshold", "met" if margin.margin_cents > 0 else "not-met",
                                  "provisional capitation margin above zero"))
        if done.estimate and any(line.capped for line in done.estimate.lines):
            done.questions.append("The claims-aligned risk score is held at the growth cap: check the reference-year score.")

    def keep(self, ctx: RequestContext, report: dict, done: Assurance, base: str) -> Reply:
        """Store the month's report as `MeasureReport/<report_id>` (a new version when the month is checked
        again) so it can be read back as it was sent; answers the stored version."""
        rid = report_id(done.contract.aco, done.month)

        def work(writer: Writer) -> None:
            current = writer.tx.current([("MeasureReport", rid)]).get(("MeasureReport", rid))
            writer.put("MeasureReport", rid, {**report, "id": rid}, None, current)

        self.service.write(ctx, work)
        return self.service.read("MeasureReport", rid, base, ctx)


def report_id(aco: str, month: str) -> str:
    """`payment-assurance-<month>-<aco>`; an ACO id too long for a FHIR id (64) is replaced by its digest."""
    rid = f"payment-assurance-{month}-{aco}"
    return rid if len(rid) <= 64 else f"payment-assurance-{month}-{hashlib.sha256(aco.encode()).hexdigest()[:32]}"
