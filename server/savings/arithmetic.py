"""The benchmark and settlement arithmetic, pure and exact (Decimal, cents rounded half up once, at the end).

* Benchmark = Σ over the alignment bases (claims, voluntary) of person-years × base rate × risk score
  ("CMS calculates [REACH] benchmarks by multiplying the number of beneficiaries by its base rate and risk
  score", reference/domain.md 5.1, read 2026-12-03). The claims-aligned score is held within the growth
  cap around the reference-year score; the voluntary-aligned score is exempt (`terms.json` names the
  sources and what is UNCONFIRMED).
* MSSP: savings = benchmark − spend; shared from the first dollar once the savings rate reaches the MSR,
  at the track's sharing rate, up to its performance payment limit; two-sided tracks share losses beyond
  the MLR at the loss sharing rate, up to the loss limit (42 CFR 425.604/.605/.610; `terms.json`).
* REACH capitation margin = PMPM received × member months − spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from server.savings.terms import Cap, Mssp, Track

HUNDRED = Decimal(100)
TWELVE = Decimal(12)


def cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Cohort:
    """Beneficiaries of one alignment basis: their member months and Σ months × risk score."""

    basis: str  # claims | voluntary
    beneficiaries: int
    member_months: int
    risk_months: Decimal  # Σ months × the beneficiary's (normalized) risk score

    @property
    def risk_score(self) -> Decimal:
        return self.risk_months / self.member_months if self.member_months else Decimal(0)


@dataclass(frozen=True)
class BenchmarkLine:
    basis: str
    beneficiaries: int
    person_years: Decimal
    raw_score: Decimal
    applied_score: Decimal  # after the cap (claims-aligned) or as is (voluntary, exempt)
    capped: bool
    amount_cents: int


def capped_score(score: Decimal, reference: Decimal, cap: Cap) -> Decimal:
    """The score held within `cap` percent of the reference year's: above only, or both ways."""
    ceiling = reference * (1 + cap.percent / HUNDRED)
    floor = reference * (1 - cap.percent / HUNDRED)
    if score > ceiling:
        return ceiling
    if cap.symmetric and score < floor:
        return floor
    return score


def benchmark(cohorts: list[Cohort], base_rate_cents: int, reference_score: Decimal, cap: Cap,
              voluntary_exempt: bool) -> list[BenchmarkLine]:
    lines = []
    for cohort in cohorts:
        raw = cohort.risk_score
        exempt = cohort.basis == "voluntary" and voluntary_exempt
        applied = raw if exempt else capped_score(raw, reference_score, cap)
        # Σ months × score: exact from the stored sums unless the cap replaced the score.
        weighted = cohort.risk_months if applied is raw else cohort.member_months * applied
        lines.append(BenchmarkLine(cohort.basis, cohort.beneficiaries, Decimal(cohort.member_months) / TWELVE, raw,
                                   applied, applied is not raw, cents(weighted * base_rate_cents / TWELVE)))
    return lines


@dataclass(frozen=True)
class Settlement:
    benchmark_cents: int
    spend_cents: int
    savings_cents: int  # negative: losses
    savings_percent: Decimal
    msr_percent: Decimal | None  # None: too few beneficiaries for the table
    mlr_percent: Decimal | None  # one-sided: None
    shared_savings_cents: int
    shared_losses_cents: int
    outcome: str  # shared-savings | shared-losses | within-corridor | not-eligible


def corridor(mssp: Mssp, track: Track, beneficiaries: int, chosen: Decimal | None) -> Decimal | None:
    """The MSR (= MLR for two-sided tracks) in percent: the table's for one-sided tracks and for a
    two-sided ACO that chose the variable rate (`chosen` None), else the chosen fixed rate."""
    if track.sided == "two" and chosen is not None:
        return chosen
    return mssp.minimum_savings_rate(beneficiaries)


def mssp_settlement(mssp: Mssp, track: Track, benchmark_cents: int, spend_cents: int, beneficiaries: int,
                    chosen_corridor: Decimal | None) -> Settlement:
    savings = benchmark_cents - spend_cents
    rate = Decimal(savings) * HUNDRED / benchmark_cents if benchmark_cents else Decimal(0)
    msr = corridor(mssp, track, beneficiaries, chosen_corridor)
    mlr = msr if track.sided == "two" else None
    shared = losses = 0
    if msr is None:
        outcome = "not-eligible"
    elif savings > 0 and rate >= msr:
        limit = Decimal(benchmark_cents) * track.paymentLimitPercentOfBenchmark / HUNDRED
        shared = cents(min(Decimal(savings) * track.sharingPercent / HUNDRED, limit))
        outcome = "shared-savings"
    elif mlr is not None and savings < 0 and -rate >= mlr:
        limit = Decimal(benchmark_cents) * track.lossLimitPercentOfBenchmark / HUNDRED
        losses = cents(min(Decimal(-savings) * track.lossSharingPercent / HUNDRED, limit))
        outcome = "shared-losses"
    else:
        outcome = "within-corridor"
    return Settlement(benchmark_cents, spend_cents, savings, rate, msr, mlr, shared, losses, outcome)


@dataclass(frozen=True)
class Margin:
    member_months: int
    pmpm_cents: int
    received_cents: int
    spend_cents: int
    margin_cents: int


def reach_margin(pmpm_cents: int, member_months: int, spend_cents: int) -> Margin:
    received = pmpm_cents * member_months
    return Margin(member_months, pmpm_cents, received, spend_cents, received - spend_cents)
