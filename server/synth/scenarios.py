"""The scenario table: each scenario's share of the population, and how members are allocated to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from server.synth.harp_risk import harp_candidate_risk_factors
from server.synth.members import Expect, Member
from server.synth.medicaid import (
    commercial_aligned,
    commercial_nonclaims_bh,
    conflicting_coverage,
    coverage_ended,
    harp_aligned,
    harp_aligned_nonclaims,
    harp_candidate_age21_today,
    harp_candidate_claim_reference,
    harp_candidate_claims,
    harp_candidate_clinical_smi,
    harp_candidate_clinical_sud,
    harp_candidate_lifelong_old,
    harp_excluded,
    harp_no_qualifying_dx,
    harp_state_identified,
    harp_under21,
    mmc_aligned,
    mmc_ignored_dx,
    mmc_out_of_state,
    mmc_suspect_dx,
    mmc_under21_bh,
    no_coverage,
)
from server.synth.medicare import (
    csnp_aligned,
    csnp_candidate,
    csnp_no_plan_for_member,
    csnp_no_qualifying_dx,
    csnp_out_of_area,
    dsnp_full_aligned,
    dsnp_medicaid_lapsed,
    dsnp_medicaid_not_evidenced,
    dsnp_partial_aligned,
    dual_code_without_medicaid,
    dual_full_in_ma,
    dual_level_unknown,
    dual_month_by_month,
    dual_partial_in_ffs,
    ffs_aligned,
    harp_gained_medicare,
    ma_aligned,
    medicare_clinical_smi,
    medicare_psychosis_nos,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    share: float  # percent of members
    description: str
    build: Callable[[Member], Expect]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mmc-aligned", 9.5, "Medicaid-only member in mainstream MMC, no SMI/SUD", mmc_aligned),
    Scenario("mmc-out-of-state", 0.5, "Mainstream MMC member living outside New York", mmc_out_of_state),
    Scenario("mmc-suspect-dx", 1.5, "Mainstream adult whose SMI/SUD evidence is only suspect", mmc_suspect_dx),
    Scenario("harp-candidate-lifelong-old", 1.5, "Mainstream adult with an old lifelong problem-list SMI",
             harp_candidate_lifelong_old),
    Scenario("harp-state-identified", 1.5, "Mainstream adult the State identified for HARP (H8/H9)",
             harp_state_identified),
    Scenario("harp-excluded", 1.5, "Mainstream adult with SMI/SUD, opted out (H7) or in OPWDD", harp_excluded),
    Scenario("mmc-under21-bh", 2, "Mainstream MMC, age 18-20, SMI or SUD: too young for HARP", mmc_under21_bh),
    Scenario("harp-candidate-clinical-smi", 3.5, "HARP-eligible adult in mainstream with clinical-only SMI",
             harp_candidate_clinical_smi),
    Scenario("harp-candidate-clinical-sud", 3, "HARP-eligible adult in mainstream with clinical-only SUD",
             harp_candidate_clinical_sud),
    Scenario("harp-candidate-risk-factors", 1.5, "HARP referral candidate whose claims show psychiatric inpatient "
             "days and/or months of ACT/TCM", harp_candidate_risk_factors),
    Scenario("harp-candidate-claims", 4, "HARP-eligible adult in mainstream, SMI/SUD on a claim",
             harp_candidate_claims),
    Scenario("harp-candidate-claim-reference", 2,
             "HARP-eligible adult in mainstream, SMI/SUD via Claim.diagnosisReference",
             harp_candidate_claim_reference),
    Scenario("harp-candidate-age21-today", 1, "Turns 21 on the evaluation date, clinical-only SMI",
             harp_candidate_age21_today),
    Scenario("harp-aligned", 5, "HARP member with SMI/SUD in claims", harp_aligned),
    Scenario("harp-aligned-nonclaims", 2, "HARP member, one BH category clinical-only", harp_aligned_nonclaims),
    Scenario("harp-no-qualifying-dx", 2, "HARP member whose SMI/SUD evidence does not count",
             harp_no_qualifying_dx),
    Scenario("mmc-ignored-dx", 3, "Mainstream member whose SMI/SUD evidence does not count", mmc_ignored_dx),
    Scenario("harp-under21", 1, "HARP member under 21", harp_under21),
    Scenario("ma-aligned", 7, "Medicare Advantage member, no C-SNP condition", ma_aligned),
    Scenario("ffs-aligned", 4, "Original Medicare member, no C-SNP condition: never steered to MA",
             ffs_aligned),
    Scenario("csnp-candidate", 5, "MA/FFS member with a C-SNP chronic condition a plan in their area takes",
             csnp_candidate),
    Scenario("csnp-no-plan-for-member", 1, "MA/FFS member with a C-SNP condition no plan of their area is "
             "approved for (e.g. COPD outside the lung plan's ZIPs)", csnp_no_plan_for_member),
    Scenario("csnp-out-of-area", 1, "MA/FFS member with a C-SNP condition, outside the C-SNP's area",
             csnp_out_of_area),
    Scenario("csnp-aligned", 3, "C-SNP member with a qualifying condition in claims; the Coverage names the "
             "product or (2 in 5) the plan", csnp_aligned),
    Scenario("csnp-no-qualifying-dx", 1, "C-SNP member whose qualifying evidence does not count",
             csnp_no_qualifying_dx),
    Scenario("medicare-clinical-smi", 1.5, "MA member with clinical-only schizophrenia/bipolar/MDD",
             medicare_clinical_smi),
    Scenario("medicare-psychosis-nos", 0.5, "MA member with clinical-only unspecified psychosis",
             medicare_psychosis_nos),
    Scenario("dsnp-full-aligned", 3, "Full dual in a D-SNP", dsnp_full_aligned),
    Scenario("dsnp-partial-aligned", 1.5, "Partial dual in a D-SNP", dsnp_partial_aligned),
    Scenario("dual-full-in-ma", 2.5, "Full dual in MA + Medicaid FFS", dual_full_in_ma),
    Scenario("dual-partial-in-ffs", 1.5, "Partial dual in Original Medicare + Medicaid FFS", dual_partial_in_ffs),
    Scenario("dual-level-unknown", 1.5, "Medicare + Medicaid with no dual status code", dual_level_unknown),
    Scenario("dsnp-medicaid-not-evidenced", 1, "D-SNP member, no Medicaid evidence or lost in the deeming period",
             dsnp_medicaid_not_evidenced),
    Scenario("dsnp-medicaid-lapsed", 0.5, "D-SNP member whose Medicaid ended before the deeming period",
             dsnp_medicaid_lapsed),
    Scenario("dual-code-without-medicaid", 1.5, "MA/FFS member with a dual status code, no Medicaid coverage",
             dual_code_without_medicaid),
    Scenario("dual-month-by-month", 1, "MA member whose latest coded month changes the dual level",
             dual_month_by_month),
    Scenario("harp-gained-medicare", 1, "HARP member who gained Original Medicare (full dual)",
             harp_gained_medicare),
    Scenario("commercial-aligned", 6, "Commercial member", commercial_aligned),
    Scenario("commercial-nonclaims-bh", 2, "Commercial member with clinical-only SMI/SUD", commercial_nonclaims_bh),
    Scenario("no-coverage", 4, "No Coverage resource", no_coverage),
    Scenario("coverage-ended", 1.5, "Only coverage ended before the evaluation date or cancelled",
             coverage_ended),
    Scenario("conflicting-coverage", 1.5, "Two active coverages naming different products of one program",
             conflicting_coverage),
)
assert abs(sum(s.share for s in SCENARIOS) - 100) < 1e-9
assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


def allocate(members: int) -> list[int]:
    """Members per scenario: largest remainder of the shares, at least one each when members allow."""
    n = len(SCENARIOS)
    if members >= n:
        base = [1] * n
        rest = members - n
    else:
        base = [0] * n
        rest = members
    raw = [s.share / 100 * rest for s in SCENARIOS]
    counts = [int(x) for x in raw]
    left = rest - sum(counts)
    order = sorted(range(n), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return [b + c for b, c in zip(base, counts)]
