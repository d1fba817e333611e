"""Synthetic savings inputs with exact ground truth (`planfit synth` writes them under `<out>/savings/`).

For a list of Patient ids: beneficiaries (a fifth voluntarily aligned, most aligned all year, risk scores
0.6–2.0) and a year of claims whose lags follow one fixed profile in exact proportions (of every 20 claims
of a service month, 8 arrive the same month, 7 one month later, 3, 1 and 1 after two, three and four), so
the share not yet received at any month is known exactly. The reference-year risk score is set so the
claims-aligned score lies above the growth cap: the cap must bite, and only for claims-aligned
beneficiaries. The answers are computed here with plain fractions from the generated values, not by the
server's arithmetic.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from server.savings.inputs import BENEFICIARY_COLUMNS, CLAIM_COLUMNS
from server.savings.terms import load_terms
from server.synth.parts import add_part, part_size

LAG_SHARES = (8, 7, 3, 1, 1)  # of every 20 claims of a service month: received 0, 1, 2, 3, 4 months later
CLAIMS_PER_BLOCK = sum(LAG_SHARES)


def _cents(value: Fraction) -> int:
    """Rounded half up, like the server (exact: a Fraction is never a binary approximation)."""
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def _month(year: int, month_index_in_year: int, lag: int, day: int) -> str:
    index = year * 12 + month_index_in_year + lag
    return f"{index // 12}-{index % 12 + 1:02d}-{day:02d}"


def generate(patients: list[str], seed: int, year: int, report_month: int, program: str = "mssp",
             track: str = "basic-e", base_rate_cents: int = 1_200_000, savings_percent: int = 6,
             pmpm_cents: int = 100_000) -> dict:
    rng = random.Random(seed)
    terms = load_terms()
    rows = []
    for patient in patients:
        basis = "voluntary" if rng.random() < 0.2 else "claims"
        months = 12 if rng.random() < 0.85 else rng.randint(1, 11)
        rows.append((patient, basis, months, rng.randint(6000, 19999)))
    by_basis: dict[str, list[Fraction]] = {}
    for _patient, basis, months, risk in rows:
        got = by_basis.setdefault(basis, [Fraction(0), Fraction(0)])
        got[0] += months
        got[1] += months * Fraction(risk, 10_000)
    claims_score = by_basis["claims"][1] / by_basis["claims"][0]
    reference = Fraction(int(claims_score * 10_000 / Fraction(105, 100)), 10_000)  # the score grew > 3 %
    cap = (terms.riskScoreCaps.mssp if program == "mssp" else terms.riskScoreCaps.reach).percent
    lines = {}
    for basis, (months, risk_months) in by_basis.items():
        score = risk_months / months
        applied = min(score, reference * (1 + Fraction(cap) / 100)) if basis == "claims" else score
        lines[basis] = _cents(months / Fraction(12) * base_rate_cents * applied)
    benchmark = sum(lines.values())
    # Claims: per service month, blocks of 20 at one paid amount, so the spend spreads evenly over lags.
    blocks = max(1, len(patients) // 40)
    per_claim = int(benchmark * (100 - savings_percent) / 100 / 12 / (blocks * CLAIMS_PER_BLOCK))
    claims = []
    for month in range(12):
        for _block in range(blocks):
            for lag, count in enumerate(LAG_SHARES):
                for _ in range(count):
                    day = rng.randint(1, 28)
                    claims.append((rng.choice(patients), _month(year, month, 0, day), _month(year, month, lag, day),
                                   per_claim))
    spend = per_claim * len(claims)
    expected = {"amounts": "cents", "benchmarkByBasis": lines, "benchmark": benchmark, "spend": spend, "referenceRiskScore": str(
        Decimal(reference.numerator) / reference.denominator), "claimsRiskScoreCapped": True}
    # The payment-assurance month: claims of service month s are received by month r with the profile's share.
    # Claims of service month s (1-based) are received by the report month with the profile's share.
    received = sum(blocks * sum(LAG_SHARES[:report_month - s + 1]) for s in range(1, report_month + 1))
    expected_claims = report_month * blocks * CLAIMS_PER_BLOCK
    provisional_benchmark = _cents(Fraction(benchmark) * report_month / 12)
    provisional_spend = per_claim * expected_claims
    expected["assurance"] = {
        "month": f"{year}-{report_month:02d}", "claimsReceived": received, "claimsExpected": expected_claims,
        "claimsNotReceivedPercent": str((Decimal(expected_claims - received) * 100 / expected_claims).quantize(Decimal("0.01"))),
        "provisionalBenchmark": provisional_benchmark, "provisionalSpend": provisional_spend,
        "provisionalSavings": provisional_benchmark - provisional_spend}
    if program == "mssp":
        rate = terms.mssp.tracks[track].sharingPercent
        expected["sharedSavings"] = _cents(Fraction(benchmark - spend) * Fraction(rate) / 100)
        expected["assurance"]["provisionalSharedSavings"] = _cents(Fraction(provisional_benchmark - provisional_spend)
                                                                   * Fraction(rate) / 100)
    else:
        member_months = sum(months for _p, _b, months, _r in rows)
        expected["capitationMargin"] = pmpm_cents * member_months - spend
    contract = {"program": program, "performanceYear": year, "baseRate": base_rate_cents / 100,
                "referenceRiskScore": expected["referenceRiskScore"]}
    if program == "mssp":
        contract["track"] = track
        contract["corridor"] = "2.0"  # a fixed MSR/MLR: the table starts at 5,000 beneficiaries
    else:
        contract["capitationPmpm"] = pmpm_cents / 100
    return {"beneficiaries": _csv(BENEFICIARY_COLUMNS, [(p, b, m, f"{r / 10_000:.4f}") for p, b, m, r in rows]),
            "claims": _csv(CLAIM_COLUMNS, [(p, s, r, f"{c // 100}.{c % 100:02d}") for p, s, r, c in claims]),
            "contract": contract, "expected": expected}


def _csv(header: tuple[str, ...], rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the savings inputs to `planfit synth` (`--savings-beneficiaries`, default a tenth of
    `--members`): written under `<out>/savings/` with `contract.json` and `ground_truth.json`, the
    payment-assurance month being the month before `--as-of` in its year (at least July)."""

    def write(args: argparse.Namespace) -> None:
        count = part_size(args, "savings-beneficiaries", max(40, args.members // 10))
        year, month = args.as_of.year, max(7, args.as_of.month - 1)
        out = Path(args.out) / "savings"
        out.mkdir(parents=True, exist_ok=True)
        files = generate([f"sv-{i:07d}" for i in range(count)], args.seed, year, month)
        (out / "beneficiaries.csv").write_text(files["beneficiaries"])
        (out / "claims.csv").write_text(files["claims"])
        (out / "contract.json").write_text(json.dumps(files["contract"], indent=1))
        (out / "ground_truth.json").write_text(json.dumps(files["expected"], indent=1))
        print(f"{count} savings beneficiaries (PY{year}, assurance month {year}-{month:02d}) -> {out}", flush=True)

    add_part(subparsers, write, "savings-beneficiaries", "beneficiaries of the savings inputs (default: members / 10)")
