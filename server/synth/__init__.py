"""`planfit synth`: a deterministic synthetic member population with its ground truth.

``generate(members, seed, out)`` writes FHIR R4 ``transaction`` bundles, split by the kind of client that
would send them, and the expected alignment findings for every member:

* ``out/clinical/bundle-NNNNN.json`` - what an EMR/HIE sends: Patient, Encounter, Condition (problem-list
  items and encounter diagnoses; coded in SNOMED CT only, ICD-10-CM only, or both; some refuted, entered in
  error, resolved long ago, or older than the lookback).
* ``out/claims/bundle-NNNNN.json`` - what a plan/claims feed sends: the same Patients, Coverage, Claim (with
  ``diagnosisCodeableConcept`` diagnoses, ICD-10-CM with or without the dot, and ``diagnosisReference``
  diagnoses pointing at a Condition in the same bundle) and claims-sourced Conditions.
* ``out/ground_truth.json`` - the expected finding per member, keyed by the Patient identifier value.
* ``out/summary.json`` - counts per scenario and per resource type, and totals.

Post every clinical bundle with a ``clinical`` client and every claims bundle with a ``claims`` client (SPEC
§4.2: the writer decides the source kind). Order does not matter. Every entry is a ``POST`` with
``ifNoneExist`` on the resource's identifier (Patient: ``https://planfit.dev/synth/member-id``), so a Patient
present in both bundles is created once and re-posting any bundle creates nothing new. References inside a
bundle are ``urn:uuid`` fullUrls of entries of the same bundle; payers and providers are logical references
(identifier + display) and need no resource.

Determinism: the same ``members``, ``seed``, ``as_of`` and ``bundle_size`` give the same bytes. Scenario
counts are fixed shares of ``members`` (largest remainder; every scenario at least once when ``members`` is at
least the number of scenarios), the order is shuffled with ``random.Random(seed)``, and each member's data
comes from its own ``random.Random`` seeded with (seed, member number).

Ground truth is NOT computed by a rules engine. Each member is built from a scenario the generator picks
(e.g. "HARP-eligible adult in mainstream MMC with a clinical-only SMI diagnosis"); the scenario states the
expected status, enrolled, recommended and eligible products, and the generator places exactly the data the
scenario needs. Category membership of the diagnosis codes used comes from the hand-written catalogue in this
module (``DX``), which tests compare with the mapping files, not from the mapping loader.

Rule semantics assumed (SPEC §4.2 and the v2 rules of §4.3; the engine must agree, or one of the two is wrong)
-------------------------------------------------------------------------------------------------------------
* Evaluation date = ``as_of`` (default 2026-01-01); lookback window = the 24 months before it. Age = whole
  years on ``as_of`` (a 21st birthday on ``as_of`` is age 21).
* Current coverage: ``Coverage.status = active`` and ``Coverage.period`` contains ``as_of``. A cancelled
  coverage, or one whose period ended before ``as_of``, is not current; an active one that ended in the last
  12 months only dates the end of Medicaid evidence (D-SNP deeming).
* A coverage's product: its ``class`` of type ``plan`` (value = product code or plan alias, any case);
  failing that, its SOPT ``Coverage.type`` code if ``products.json`` lists it as a product alias. Its line of
  business is the product's; failing that, the SOPT table's. ``dual`` = Medicare + Medicaid.
* Member programs = union over current coverages. Medicaid is evidenced by a Medicaid coverage, or for a
  Medicare member by a dual status code with a level on any current coverage (no Medicaid feed needed); a
  D-SNP's own coverage is no evidence: such a member is held in ``review`` (``medicaid-not-evidenced``)
  unless Medicaid evidence ended over 6 months ago (``deeming-period-ended``: the D-SNP rule then fails).
  Dual level from the codes of the latest coded month (02/04/08 full, 01/03/05/06 partial); dual with no
  code = level ``unknown``.
* Enrolled product = the highest-priority product among the current coverages' products (a member in HARP
  who gained Medicare FFS is "enrolled in ny-harp"). Two current coverages naming different products whose
  programs overlap (ny-mmc + ny-harp; ma + medicare-ffs) = conflicting coverage.
* Status: ``not-evaluable`` when there is no current coverage; else ``review`` when coverages conflict
  (reason ``conflicting-coverage``), the member is dual with an unknown level (``dual-level-unknown``) or a
  D-SNP member's Medicaid is not evidenced inside the deeming period; else ``aligned`` when enrolled =
  recommended, else ``misaligned``. For ``review`` members the eligible and recommended products are given.
* Eligibility (``mappings/products.json``): ny-mmc = Medicaid and no Medicare; ny-harp = that + age >= 21 +
  no OPWDD flag + no H7 code + (an SMI or SUD diagnosis, or a State code H1-H6/H8/H9 on a coverage or the
  Patient); dsnp = Medicare + Medicaid (any level, incl. unknown); csnp = Medicare + a diagnosis in the
  condition grouping of one of its plans whose area holds the member; ma and medicare-ffs = Medicare; commercial = commercial.
* Medicaid aid categories (rate cells, ``server/synth/aid_categories.py``): a member with Medicaid coverage
  has TANF (40%), Safety Net (20%), SSI (20%) or none on every Medicaid coverage (``Coverage.class`` of type
  ``class``, feed spellings); the ground truth of a member enrolled in ny-mmc (aligned or misaligned) names
  the enrolled rate cell: region x aid category x age band on the evaluation date (``enrolled_rate_cell``).
* The enrolled plan (``enrolled_plan``): the product's own code, or for a C-SNP coverage the plan it names,
  else none (every NY place has several C-SNP plans, so the product alone never resolves one).
* Coverage areas (``products.json``): dsnp, the csnp plans, ny-harp and ny-mmc are offered in New York
  only (the chronic-lung C-SNP in ZIPs 10451, 11201, 11432 only); a member is inside when a
  ``Patient.address`` has state NY (and, for a ZIP part, that ZIP). Members live in New York (a ZIP of ``PLACES``)
  unless their scenario moves them to New Jersey.
* Recommended: for a member whose enrolled product's rule holds, the highest-priority *specialized* product
  (dsnp 90, csnp 80, ny-harp 70) above the enrolled one, else the enrolled product; otherwise the highest
  priority eligible product. So an Original Medicare member is never steered to ``ma``. ``kind`` =
  ``compliance`` when the enrolled product's rule fails (or a D-SNP's Medicaid is not evidenced),
  ``opportunity`` when a specialized product is recommended over an eligible enrolled one.
* A diagnosis qualifies when it is dated inside the window: a Condition by ``onsetDateTime``/
  ``recordedDate`` (always equal for counting Conditions here), a Claim by ``billablePeriod.start``/
  ``created``/``item.servicedDate`` (always equal). Not counted: ``verificationStatus`` refuted or
  entered-in-error; ``clinicalStatus`` resolved/inactive with ``abatementDateTime`` before the window;
  encounter diagnoses dated 27-60 months back (their ``clinicalStatus`` is still ``active``). Suspect (shown,
  never qualifying): provisional / differential / unconfirmed, and inactive / resolved / remission without an
  abatement date for codes that are not lifelong. A lifelong code (F20, F25, F31, B20, Z21, N18.6, Z99.2;
  SNOMED 58214004, 13746004) on an active, confirmed problem-list entry recorded before the window counts.
* Claim diagnoses (coded or by ``diagnosisReference``) and Conditions in claims bundles are claims evidence;
  Conditions in clinical bundles are clinical evidence. Non-claims categories (SMI and SUD only) = clinical
  evidence in the window with no claims evidence of the same category. They are given for every member,
  whatever the status.
* ``csnp_categories`` = the C-SNP categories the member meets of the grouping of the plan that takes them,
  given only when csnp is eligible; ``recommended_plan`` = the InsurancePlan id of the recommended product:
  its own code, or for csnp the first of its plans (``products.json`` order) whose grouping and area take
  the member (cardiometabolic, ESRD, behavioral health statewide; chronic lung in three NYC ZIPs).
  ``reasons`` lists the reason codes the scenario requires (``dual-level-unknown``, ``conflicting-coverage``,
  ``no-active-coverage``, ``medicaid-not-evidenced``, ``deeming-period-ended``, ``state-identified``,
  ``state-excluded``, ``flag-excluded``); the engine may add others. Rates (annual impact) are configurable
  and are not in the ground truth. ``risk_factors`` = the HARP risk factors the claims show (days of
  psychiatric inpatient stays, months of ACT/TCM, ``mappings/harp_risk_factors.json``), for every member.

Scenarios (share of members)
----------------------------
Medicaid only, NY:
  mmc-aligned 9.5% - ny-mmc, age 0-64, routine and non-qualifying BH noise (F32.9, F32.A, F41.1, F10.90 ...):
      aligned; eligible [ny-mmc].
  mmc-out-of-state 0.5% - ny-mmc, 21-64, lives in New Jersey (outside the NY plans' coverage areas):
      review (the engine's reason: no-eligible-product), kind compliance; eligible [].
  mmc-suspect-dx 1.5% - ny-mmc, 21-64, SMI/SUD only as suspect evidence: aligned.
  harp-candidate-lifelong-old 1.5% - ny-mmc, 21-64, schizophrenia/bipolar on the problem list recorded
      before the window, active and confirmed: misaligned -> ny-harp; non-claims [smi].
  harp-state-identified 1.5% - ny-mmc, 21-64, State code H8/H9 on the Coverage or the Patient, no SMI/SUD:
      misaligned -> ny-harp (state-identified).
  harp-excluded 1.5% - ny-mmc, 21-64, SMI/SUD but H7 (opted out) or OPWDD: aligned (state-excluded /
      flag-excluded).
  mmc-under21-bh 2% - ny-mmc, age 18-20, SMI or SUD (clinical-only or with claims): aligned, [ny-mmc];
      non-claims = the category when clinical-only.
  harp-candidate-clinical-smi 3.5% - ny-mmc, 21-64, SMI only in clinical data: misaligned -> ny-harp;
      non-claims [smi].
  harp-candidate-risk-factors 1.5% - as above, plus claims for psychiatric stays (NUBC psychiatric room and
      board; 20-45 days inside 3 years, one older stay) and/or ACT/TCM (H0040/T1017) in 1-5 calendar months:
      ``risk_factors`` gives the days and months; reasons risk-factor-* when > 30 days / >= 3 months.
  harp-candidate-clinical-sud 3% - same with SUD (incl. in-remission codes): misaligned -> ny-harp;
      non-claims [sud].
  harp-candidate-claims 4% - ny-mmc, 21-64, SMI or SUD on a Claim (coded), maybe also clinical:
      misaligned -> ny-harp; no non-claims.
  harp-candidate-claim-reference 2% - as above, but the Claim carries the diagnosis only as a
      diagnosisReference to a claims Condition: misaligned -> ny-harp.
  harp-candidate-age21-today 1% - 21st birthday on as_of, ny-mmc, clinical-only SMI: misaligned -> ny-harp.
  harp-aligned 5% - ny-harp, 21-64, SMI/SUD with claims evidence: aligned; eligible [ny-harp, ny-mmc].
  harp-aligned-nonclaims 2% - ny-harp, one category in claims, the other clinical-only: aligned;
      non-claims = the clinical-only one.
  harp-no-qualifying-dx 2% - ny-harp, 21-64, SMI/SUD only refuted / entered-in-error / resolved long ago /
      older than the lookback: misaligned -> ny-mmc.
  mmc-ignored-dx 3% - ny-mmc, 21-64, the same non-counting SMI/SUD evidence: aligned.
  harp-under21 1% - ny-harp, age 18-20, SMI/SUD in claims: misaligned -> ny-mmc.
Medicare only:
  ma-aligned 7% - ma, ages straddling 65, routine noise: aligned; eligible [ma, medicare-ffs].
  ffs-aligned 4% - medicare-ffs, routine noise: aligned (Original Medicare is the member's choice).
  csnp-candidate 5% - ma or medicare-ffs with 1-2 C-SNP conditions a shipped plan is approved for (diabetes,
      CHF, cardiovascular, ESRD, chronic lung), placed where a plan takes them (COPD only: in a lung-plan ZIP):
      misaligned -> csnp, ``recommended_plan`` the first plan that takes them; csnp_categories of its grouping.
  csnp-no-plan-for-member 1% - ma or medicare-ffs with one C-SNP condition no plan of their area is approved
      for (cancer, dementia, ... or COPD outside the lung plan's NYC ZIPs): aligned; eligible [ma, medicare-ffs].
  csnp-out-of-area 1% - ma or medicare-ffs with a C-SNP condition, living in New Jersey (outside the
      csnp's coverage area): aligned; eligible [ma, medicare-ffs].
  csnp-aligned 3% - csnp with a qualifying condition in claims: aligned. The Coverage names the product
      (enrolled plan unknown: several C-SNP plans in every NY place) or, 2 in 5, the plan (its enrolled plan).
  csnp-no-qualifying-dx 1% - csnp, C-SNP conditions only refuted / old / resolved: misaligned -> ma.
  medicare-clinical-smi 1.5% - ma, clinical-only schizophrenia/bipolar/MDD: misaligned -> csnp
      (csnp-mental-health); non-claims [smi].
  medicare-psychosis-nos 0.5% - ma, clinical-only F29 / SNOMED 69322001 (SMI, but not a C-SNP mental-health
      condition): aligned; non-claims [smi].
Dual:
  dsnp-full-aligned 3% - one D-SNP coverage, dual code 02/04/08: aligned; dual full.
  dsnp-partial-aligned 1.5% - one D-SNP coverage, code 01/03/05/06: aligned; dual partial.
  dual-full-in-ma 2.5% - MA + Medicaid fee-for-service coverage, full code on either: misaligned -> dsnp.
  dual-partial-in-ffs 1.5% - Original Medicare + Medicaid FFS, partial code: misaligned -> dsnp.
  dual-level-unknown 1.5% - MA, FFS or D-SNP + Medicaid FFS with no dual code: review (dual-level-unknown);
      recommended dsnp.
  dsnp-medicaid-not-evidenced 1% - D-SNP coverage alone, Medicaid never seen or lost 1-5 months ago: review
      (medicaid-not-evidenced), kind compliance.
  dsnp-medicaid-lapsed 0.5% - D-SNP + a Medicaid coverage that ended 7-11 months ago: misaligned -> ma
      (deeming-period-ended), kind compliance.
  dual-code-without-medicaid 1.5% - MA or FFS whose coverage carries a full or partial code, no Medicaid
      coverage: misaligned -> dsnp with that level.
  dual-month-by-month 1% - MA with one level's code + this month's Medicaid record with the other level:
      misaligned -> dsnp with the latest month's level.
  harp-gained-medicare 1% - ny-harp + new Original Medicare, full code, SMI/SUD in claims: enrolled ny-harp,
      misaligned -> dsnp; eligible [dsnp, csnp, ma, medicare-ffs].
Commercial:
  commercial-aligned 6% - commercial, age 0-64: aligned; eligible [commercial].
  commercial-nonclaims-bh 2% - commercial, clinical-only SMI or SUD: aligned; non-claims named.
Coverage problems:
  no-coverage 4% - no Coverage at all (some with clinical-only SMI/SUD): not-evaluable.
  coverage-ended 1.5% - the only coverage ended before as_of or is cancelled: not-evaluable.
  conflicting-coverage 1.5% - ny-mmc + ny-harp, or ma + medicare-ffs, both active: review
      (conflicting-coverage); enrolled = the higher-priority product.

Run: ``python -m server.synth --members 2000 --seed 7 --out /tmp/pop``.
"""

from __future__ import annotations

from server.synth.catalogue import COVERAGE_FORMS, DX, MEMBER_SYSTEM, ROUTINE_CLAIM_DX, SOURCE_CLAIMS, SOURCE_CLINICAL
from server.synth.generate import SynthSummary, add_arguments, generate, main, register, run
from server.synth.scenarios import SCENARIOS, Scenario

__all__ = ["COVERAGE_FORMS", "DX", "MEMBER_SYSTEM", "ROUTINE_CLAIM_DX", "SOURCE_CLAIMS", "SOURCE_CLINICAL", "SCENARIOS",
           "Scenario", "SynthSummary", "add_arguments", "generate", "main", "register", "run"]
