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
  Patient); dsnp = Medicare + Medicaid (any level, incl. unknown); csnp = Medicare + a diagnosis in any of
  the 15 C-SNP category value sets; ma and medicare-ffs = Medicare; commercial = commercial.
* Coverage areas (``products.json``): dsnp, csnp, ny-harp and ny-mmc are offered in New York only; a
  member is inside when a ``Patient.address`` has state NY. Members live in New York (a ZIP of ``PLACES``)
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
* ``csnp_categories`` = the C-SNP categories the member meets, given only when csnp is eligible.
  ``reasons`` lists the reason codes the scenario requires (``dual-level-unknown``, ``conflicting-coverage``,
  ``no-active-coverage``, ``medicaid-not-evidenced``, ``deeming-period-ended``, ``state-identified``,
  ``state-excluded``, ``flag-excluded``); the engine may add others. Rates (annual impact) are configurable
  and are not in the ground truth.

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
  harp-candidate-clinical-smi 5% - ny-mmc, 21-64, SMI only in clinical data: misaligned -> ny-harp;
      non-claims [smi].
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
  csnp-candidate 6% - ma or medicare-ffs with 1-2 non-BH C-SNP conditions (diabetes, CHF, COPD, cancer,
      ...): misaligned -> csnp; csnp_categories named.
  csnp-out-of-area 1% - ma or medicare-ffs with a C-SNP condition, living in New Jersey (outside the
      csnp's coverage area): aligned; eligible [ma, medicare-ffs].
  csnp-aligned 3% - csnp with a qualifying condition in claims: aligned.
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

Run: ``python -m server.alignment.synth --members 2000 --seed 7 --out /tmp/pop``.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson

__all__ = ["Scenario", "SCENARIOS", "DX", "SynthSummary", "generate", "add_arguments", "run", "main"]

# --------------------------------------------------------------------------------------------------
# Systems and constants

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
SOPT = "https://nahdo.org/sopt"
DUAL_EXT = "https://planfit.dev/fhir/StructureDefinition/dual-status-code"
HARP_EXT = "https://planfit.dev/fhir/StructureDefinition/ny-harp-status"
OPWDD_EXT = "https://planfit.dev/fhir/StructureDefinition/opwdd-participation"
MEMBER_SYSTEM = "https://planfit.dev/synth/member-id"
ID_SYSTEM = "https://planfit.dev/synth/"  # + resource kind
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
COV_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
REL = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NPI = "http://hl7.org/fhir/sid/us-npi"
CPT = "http://www.ama-assn.org/go/cpt"
SOURCE_CLINICAL = "urn:planfit:synth:ehr"
SOURCE_CLAIMS = "urn:planfit:synth:claims-feed"

PRIORITY = {"dsnp": 90, "csnp": 80, "ny-harp": 70, "ma": 50, "medicare-ffs": 40, "ny-mmc": 30, "commercial": 10}
MEDICARE_ELIGIBLE = ("ma", "medicare-ffs")
DUAL_ELIGIBLE = ("dsnp", "ma", "medicare-ffs")

# --------------------------------------------------------------------------------------------------
# Diagnosis catalogue: (ICD-10-CM code, SNOMED CT code or None, display, value-set categories, sex)


@dataclass(frozen=True)
class Dx:
    icd: str | None
    sct: str | None
    display: str
    sct_display: str | None
    cats: frozenset[str]
    sex: str | None = None  # "female" / "male" when the code is sex-specific

    @property
    def lifelong(self) -> bool:
        """In mappings/lifelong.json: schizophrenia, schizoaffective, bipolar, HIV, ESRD (SPEC §4.3)."""
        return (self.icd is not None and self.icd.startswith(LIFELONG_ICD)) or self.sct in LIFELONG_SCT


def _dx(icd: str | None, display: str, cats: Iterable[str] = (), sct: str | None = None,
        sct_display: str | None = None, sex: str | None = None) -> Dx:
    return Dx(icd, sct, display, sct_display or (display if sct else None), frozenset(cats), sex)


LIFELONG_ICD = ("F20", "F25", "F31", "B20", "Z21", "N18.6", "Z99.2")
LIFELONG_SCT = ("58214004", "13746004")
SMI_MH = ("smi", "csnp-mental-health")
SUD_CATS = ("sud", "csnp-substance-dependence")
DX: dict[str, tuple[Dx, ...]] = {
    # SMI that is also a C-SNP chronic and disabling mental-health condition
    "smi-mh": (
        _dx("F20.9", "Schizophrenia, unspecified", SMI_MH, "58214004", "Schizophrenia"),
        _dx("F25.0", "Schizoaffective disorder, bipolar type", SMI_MH),
        _dx("F31.9", "Bipolar disorder, unspecified", SMI_MH, "13746004", "Bipolar disorder"),
        _dx("F31.72", "Bipolar disorder, in full remission, most recent episode hypomanic", SMI_MH),
        _dx("F31.32", "Bipolar disorder, current episode depressed, moderate", SMI_MH),
        _dx("F33.2", "Major depressive disorder, recurrent severe without psychotic features", SMI_MH),
        _dx("F32.1", "Major depressive disorder, single episode, moderate", SMI_MH),
        _dx("F22", "Delusional disorders", SMI_MH),
        _dx(None, "Schizophrenia", SMI_MH, "58214004", "Schizophrenia"),
        _dx(None, "Bipolar disorder", SMI_MH, "13746004", "Bipolar disorder"),
    ),
    # SMI, but not one of the C-SNP mental-health conditions
    "smi-only": (
        _dx("F29", "Unspecified psychosis not due to a substance or known physiological condition", ("smi",),
            "69322001", "Psychotic disorder"),
    ),
    "sud": (
        _dx("F10.20", "Alcohol dependence, uncomplicated", SUD_CATS, "66590003", "Alcohol dependence"),
        _dx("F10.20", "Alcohol dependence, uncomplicated", SUD_CATS, "7200002", "Alcoholism"),
        _dx("F11.20", "Opioid dependence, uncomplicated", SUD_CATS),
        _dx("F11.21", "Opioid dependence, in remission", SUD_CATS),
        _dx("F10.11", "Alcohol abuse, in remission", SUD_CATS),
        _dx("F12.20", "Cannabis dependence, uncomplicated", SUD_CATS),
        _dx("F14.10", "Cocaine abuse, uncomplicated", SUD_CATS),
        _dx("F11.10", "Opioid abuse, uncomplicated", SUD_CATS, "5602001", "Opioid abuse"),
        _dx(None, "Alcoholism", SUD_CATS, "7200002", "Alcoholism"),
    ),
    # Depression that is a C-SNP mental-health condition but not SMI (mild / unspecified / remission MDD)
    "mdd-not-smi": (
        _dx("F32.9", "Major depressive disorder, single episode, unspecified", ("csnp-mental-health",),
            "370143000", "Major depressive disorder"),
        _dx("F33.9", "Major depressive disorder, recurrent, unspecified", ("csnp-mental-health",)),
        _dx("F32.0", "Major depressive disorder, single episode, mild", ("csnp-mental-health",)),
        _dx("F32.4", "Major depressive disorder, single episode, in partial remission", ("csnp-mental-health",)),
        _dx("F33.41", "Major depressive disorder, recurrent, in partial remission", ("csnp-mental-health",)),
    ),
    # Behavioral-health codes in no value set at all
    "bh-neutral": (
        _dx("F32.A", "Depression, unspecified", (), "35489007", "Depressive disorder"),
        _dx("F41.1", "Generalized anxiety disorder"),
        _dx("F43.10", "Post-traumatic stress disorder, unspecified", (), "47505003", "Posttraumatic stress disorder"),
        _dx("F17.210", "Nicotine dependence, cigarettes, uncomplicated"),
        _dx("F10.90", "Alcohol use, unspecified, uncomplicated"),
        _dx("F34.1", "Dysthymic disorder"),
        _dx(None, "Drug overdose", (), "55680006", "Drug overdose"),
    ),
    "neutral": (
        _dx("I10", "Essential (primary) hypertension", (), "38341003", "Hypertensive disorder"),
        _dx("E78.5", "Hyperlipidemia, unspecified", (), "55822004", "Hyperlipidemia"),
        _dx("J01.90", "Acute sinusitis, unspecified", (), "444814009", "Viral sinusitis"),
        _dx("J02.9", "Acute pharyngitis, unspecified", (), "195662009", "Acute viral pharyngitis"),
        _dx("R73.03", "Prediabetes", (), "15777000", "Prediabetes"),
        _dx("E66.9", "Obesity, unspecified", (), "162864005", "Body mass index 30+ - obesity"),
        _dx("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
        _dx("M54.50", "Low back pain, unspecified"),
        _dx("G43.909", "Migraine, unspecified, not intractable, without status migrainosus"),
        _dx("D64.9", "Anemia, unspecified", (), "271737000", "Anemia"),
        _dx("M17.9", "Osteoarthritis of knee, unspecified", (), "239873007", "Osteoarthritis of knee"),
        _dx("N18.1", "Chronic kidney disease, stage 1", (), "431855005", "Chronic kidney disease stage 1"),
    ),
    "csnp-diabetes": (
        _dx("E11.9", "Type 2 diabetes mellitus without complications", ("csnp-diabetes",), "44054006",
            "Diabetes mellitus type 2"),
        _dx("E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease", ("csnp-diabetes",),
            "127013003", "Diabetic renal disease"),
        _dx("E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy", ("csnp-diabetes",),
            "368581000119106", "Neuropathy due to type 2 diabetes mellitus"),
        _dx("E10.9", "Type 1 diabetes mellitus without complications", ("csnp-diabetes",)),
    ),
    "csnp-chf": (
        _dx("I50.9", "Heart failure, unspecified", ("csnp-chf",), "88805009", "Chronic congestive heart failure"),
        _dx("I50.22", "Chronic systolic (congestive) heart failure", ("csnp-chf",)),
        _dx("I11.0", "Hypertensive heart disease with heart failure", ("csnp-chf",)),
    ),
    "csnp-cardiovascular": (
        _dx("I48.91", "Unspecified atrial fibrillation", ("csnp-cardiovascular",), "49436004", "Atrial fibrillation"),
        _dx("I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris",
            ("csnp-cardiovascular",), "53741008", "Coronary arteriosclerosis"),
        _dx("I73.9", "Peripheral vascular disease, unspecified", ("csnp-cardiovascular",)),
    ),
    "csnp-stroke": (
        _dx("I63.9", "Cerebral infarction, unspecified", ("csnp-stroke",), "230690007", "Cerebrovascular accident"),
        _dx("I69.351", "Hemiplegia and hemiparesis following cerebral infarction affecting right dominant side",
            ("csnp-stroke", "csnp-neurologic")),
    ),
    "csnp-dementia": (
        _dx("G30.9", "Alzheimer's disease, unspecified", ("csnp-dementia",), "26929004", "Alzheimer's disease"),
        _dx("G30.0", "Alzheimer's disease with early onset", ("csnp-dementia",), "230265002",
            "Familial Alzheimer's disease of early onset"),
        _dx("F03.90", "Unspecified dementia, unspecified severity, without behavioral disturbance, psychotic "
            "disturbance, mood disturbance, and anxiety", ("csnp-dementia",)),
    ),
    "csnp-lung": (
        _dx("J44.9", "Chronic obstructive pulmonary disease, unspecified", ("csnp-lung",), "185086009",
            "Chronic obstructive bronchitis"),
        _dx("J45.909", "Unspecified asthma, uncomplicated", ("csnp-lung",)),
        _dx("J43.9", "Emphysema, unspecified", ("csnp-lung",)),
    ),
    "csnp-neurologic": (
        _dx("G40.909", "Epilepsy, unspecified, not intractable, without status epilepticus", ("csnp-neurologic",),
            "84757009", "Epilepsy"),
        _dx(None, "Seizure disorder", ("csnp-neurologic",), "128613002", "Seizure disorder"),
        _dx("G20.A1", "Parkinson's disease without dyskinesia, without mention of fluctuations", ("csnp-neurologic",)),
        _dx("G82.20", "Paraplegia, unspecified", ("csnp-neurologic",), "698754002",
            "Chronic paralysis due to lesion of spinal cord"),
        _dx("G62.9", "Polyneuropathy, unspecified", ("csnp-neurologic",)),
    ),
    "csnp-autoimmune": (
        _dx("M06.9", "Rheumatoid arthritis, unspecified", ("csnp-autoimmune",), "69896004", "Rheumatoid arthritis"),
        _dx("M32.9", "Systemic lupus erythematosus, unspecified", ("csnp-autoimmune",)),
    ),
    "csnp-cancer": (
        _dx("C50.911", "Malignant neoplasm of unspecified site of right female breast", ("csnp-cancer",),
            sex="female"),
        _dx("C61", "Malignant neoplasm of prostate", ("csnp-cancer",), sex="male"),
        _dx("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung", ("csnp-cancer",)),
        _dx("C18.9", "Malignant neoplasm of colon, unspecified", ("csnp-cancer",)),
    ),
    "csnp-liver": (
        _dx("K74.60", "Unspecified cirrhosis of liver", ("csnp-liver",)),
        _dx("K70.30", "Alcoholic cirrhosis of liver without ascites", ("csnp-liver",)),
        _dx("K72.10", "Chronic hepatic failure without coma", ("csnp-liver",)),
    ),
    "csnp-esrd": (
        _dx("N18.6", "End stage renal disease", ("csnp-esrd",)),
        _dx("Z99.2", "Dependence on renal dialysis", ("csnp-esrd",)),
    ),
    "csnp-hematologic": (
        _dx("D57.1", "Sickle-cell disease without crisis", ("csnp-hematologic",)),
        _dx("D69.3", "Immune thrombocytopenic purpura", ("csnp-hematologic",)),
        _dx("D46.9", "Myelodysplastic syndrome, unspecified", ("csnp-hematologic",)),
    ),
    "csnp-hiv-aids": (
        _dx("B20", "Human immunodeficiency virus [HIV] disease", ("csnp-hiv-aids",)),
        _dx("Z21", "Asymptomatic human immunodeficiency virus [HIV] infection status", ("csnp-hiv-aids",)),
    ),
}
CSNP_BODY_POOLS = tuple(k for k in DX if k.startswith("csnp-"))
ROUTINE_CLAIM_DX = _dx("Z00.00", "Encounter for general adult medical examination without abnormal findings")

# --------------------------------------------------------------------------------------------------
# Synthetic names, places, providers

FEMALE = ("Ana", "Beatriz", "Carmen", "Dana", "Elena", "Fatima", "Grace", "Hana", "Iris", "Jasmine", "Keisha",
          "Lucia", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tamara", "Valeria", "Wen", "Yara", "Zoe")
MALE = ("Aaron", "Bilal", "Carlos", "Darnell", "Eli", "Felix", "Gabriel", "Hector", "Ivan", "Jamal", "Kenji",
        "Luis", "Marcus", "Nikhil", "Omar", "Pedro", "Quentin", "Rafael", "Samuel", "Tomas", "Victor", "Wei", "Yusuf")
FAMILY = ("Abara", "Bergstrom", "Castillo", "Delacroix", "Eklund", "Fontaine", "Gallagher", "Haddad", "Ibarra",
          "Jablonski", "Kowalczyk", "Lindqvist", "Mbeki", "Nakamura", "Okafor", "Petrov", "Quintero", "Rasmussen",
          "Sandoval", "Takahashi", "Umarov", "Vasquez", "Whitfield", "Xiong", "Yilmaz", "Zielinski")
OUT_OF_STATE = ("Hoboken", "07030")  # New Jersey: outside the shipped NY coverage areas (products.json)
PLACES = (("Albany", "12207"), ("Buffalo", "14202"), ("Bronx", "10451"), ("Brooklyn", "11201"),
          ("Rochester", "14604"), ("Syracuse", "13202"), ("Yonkers", "10701"), ("Utica", "13501"),
          ("Queens", "11432"), ("Ithaca", "14850"))


def _npi(base9: str) -> str:
    """A valid NPI: 9 digits + Luhn check digit computed over the prefix 80840 (CMS NPI rule)."""
    total = 0
    for i, ch in enumerate(reversed("80840" + base9)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return base9 + str((10 - total % 10) % 10)


PROVIDERS = tuple((_npi(b), name) for b, name in (
    ("123456701", "Hudson Community Health Center (synthetic)"),
    ("134567802", "Mohawk Valley Behavioral Health (synthetic)"),
    ("145678903", "Finger Lakes Primary Care (synthetic)"),
    ("156789004", "Bronx Riverside Medical Group (synthetic)"),
    ("167890105", "Catskill Family Medicine (synthetic)"),
))
BH_PROVIDERS = (PROVIDERS[1],)
GENERAL_PROVIDERS = tuple(p for p in PROVIDERS if p not in BH_PROVIDERS)

PAYERS = {
    "ny-medicaid": "New York State Medicaid (synthetic)",
    "mco": "Empire Valley Health Plan (synthetic)",
    "cms": "Centers for Medicare & Medicaid Services",
    "ma-org": "Lakeshore Medicare Advantage (synthetic)",
    "commercial": "Northway Commercial Insurance (synthetic)",
}

# How each product appears on a Coverage: (plan class value or None, SOPT code or None, payer key)
COVERAGE_FORMS: dict[str, tuple[tuple[str | None, str | None, str], ...]] = {
    "ny-mmc": (("NY-MMC", "211", "mco"), ("MMC", "21", "mco"), ("ny-mmc", None, "mco"), (None, "211", "mco"),
               ("Mainstream", "213", "mco")),
    "ny-harp": (("NY-HARP", "211", "mco"), ("HARP", "21", "mco"), ("ny-harp", None, "mco"), ("harp", "219", "mco")),
    "dsnp": (("D-SNP", "14", "ma-org"), ("DSNP", "141", "ma-org"), ("dsnp", None, "ma-org"), (None, "141", "ma-org"),
             ("FIDE-SNP", "142", "ma-org")),
    "csnp": (("C-SNP", "1111", "ma-org"), ("csnp", "111", "ma-org"), (None, "1111", "ma-org"),
             ("HMO-CSNP", "112", "ma-org")),
    "ma": (("MA", "111", "ma-org"), ("MAPD", "112", "ma-org"), (None, "111", "ma-org"), (None, "112", "ma-org"),
           ("Medicare-Advantage", "113", "ma-org"), ("ma", None, "ma-org")),
    "medicare-ffs": ((None, "121", "cms"), ("ORIGINAL-MEDICARE", "121", "cms"), ("medicare-ffs", None, "cms"),
                     (None, "12", "cms")),
    "commercial": (("COMMERCIAL", "512", "commercial"), ("EMPLOYER-PPO", "512", "commercial"),
                   (None, "511", "commercial"), (None, "612", "commercial"), ("commercial", None, "commercial"),
                   ("EXCHANGE", "52", "commercial")),
}
MEDICAID_FFS_SOPT = ("22", "2", "29", "26")
FULL_CODES = ("02", "04", "08")
PARTIAL_CODES = ("01", "03", "05", "06")

# --------------------------------------------------------------------------------------------------
# Member plan (what the generator decided) and its expectation


@dataclass
class CoverageSpec:
    key: str
    product: str | None  # the product this coverage is meant to name (None = Medicaid FFS etc.)
    plan: str | None
    sopt: str | None
    payer: str
    start: date
    end: date | None
    status: str = "active"
    dual_code: str | None = None
    harp_status: str | None = None  # NY HARP status code (H1-H9) on the coverage


@dataclass
class Evidence:
    dx: Dx
    where: str  # clinical | claim-coded | claim-ref | claims-condition
    flavor: str  # counts | refuted | entered-in-error | resolved | old | suspect | persists
    when: date
    coding: str = "icd"  # icd | sct | both
    category: str = "problem-list-item"
    abated: date | None = None
    onset: date | None = None
    verification: str = "confirmed"
    clinical_status: str = "active"


@dataclass
class Expect:
    status: str
    enrolled: str | None
    recommended: str | None
    eligible: tuple[str, ...]
    non_claims: tuple[str, ...] = ()
    csnp_categories: tuple[str, ...] = ()
    dual_level: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass
class Member:
    index: int
    ident: str
    rng: random.Random
    as_of: date
    gender: str = "female"
    birth: date = date(1970, 1, 1)
    coverages: list[CoverageSpec] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    expect: Expect | None = None
    harp_status: str | None = None  # NY HARP status code on the Patient
    opwdd: bool = False  # OPWDD participation documented on the Patient
    out_of_state: bool = False  # lives outside New York: outside every NY plan's coverage area

    # -- demographics ------------------------------------------------------------------------------

    def age(self) -> int:
        a = self.as_of.year - self.birth.year
        if (self.as_of.month, self.as_of.day) < (self.birth.month, self.birth.day):
            a -= 1
        return a

    def set_age(self, lo: int, hi: int) -> None:
        self.birth = _birth_for_age(self.rng.randint(lo, hi), self.as_of, self.rng.randint(0, 360))

    def set_exact_birthday(self, age: int) -> None:
        """Birthday falls on as_of: age is exactly `age`."""
        self.birth = _birth_for_age(age, self.as_of, 0)

    def set_age_day_before(self, age: int) -> None:
        """Turns `age` within 1-300 days after as_of: age is age-1."""
        self.birth = _birth_for_age(age, self.as_of, 0) + timedelta(days=self.rng.randint(1, 300))

    def medicare_age(self) -> None:
        r = self.rng.random()
        if r < 0.08:
            self.set_exact_birthday(65)
        elif r < 0.14:
            self.set_age_day_before(65)  # 64
        elif r < 0.30:
            self.set_age(30, 64)  # Medicare through disability / ESRD
        else:
            self.set_age(65, 95)

    # -- coverage ----------------------------------------------------------------------------------

    def cover(self, product: str, *, dual_code: str | None = None, start: date | None = None,
              end: date | None = None, status: str = "active", form: int | None = None) -> CoverageSpec:
        forms = COVERAGE_FORMS[product]
        plan, sopt, payer = forms[form if form is not None else self.rng.randrange(len(forms))]
        spec = CoverageSpec(
            key=f"cov{len(self.coverages) + 1}", product=product, plan=plan, sopt=sopt, payer=payer,
            start=start or self.as_of - timedelta(days=self.rng.randint(1900, 3600)),
            end=end if end is not None else self._open_end(), status=status, dual_code=dual_code,
        )
        self.coverages.append(spec)
        return spec

    def cover_medicaid_ffs(self, *, dual_code: str | None = None) -> CoverageSpec:
        spec = CoverageSpec(
            key=f"cov{len(self.coverages) + 1}", product=None, plan=None,
            sopt=self.rng.choice(MEDICAID_FFS_SOPT), payer="ny-medicaid",
            start=self.as_of - timedelta(days=self.rng.randint(1900, 3600)), end=self._open_end(),
            dual_code=dual_code,
        )
        self.coverages.append(spec)
        return spec

    def _open_end(self) -> date | None:
        return None if self.rng.random() < 0.6 else self.as_of + timedelta(days=self.rng.randint(30, 700))

    # -- evidence ----------------------------------------------------------------------------------

    def pick(self, pool: str) -> Dx:
        choices = [d for d in DX[pool] if d.sex is None or d.sex == self.gender]
        return self.rng.choice(choices)

    def in_window(self) -> date:
        return self.as_of - timedelta(days=self.rng.randint(7, 660))

    def before_window(self) -> date:
        return self.as_of - timedelta(days=self.rng.randint(820, 1800))

    def coding_for(self, dx: Dx) -> str:
        if dx.icd is None:
            return "sct"
        if dx.sct is None:
            return "icd"
        return self.rng.choice(("icd", "sct", "both"))

    def clinical(self, dx: Dx, flavor: str = "counts") -> None:
        rng = self.rng
        category = rng.choice(("problem-list-item", "encounter-diagnosis"))
        ev = Evidence(dx=dx, where="clinical", flavor=flavor, when=self.in_window(), coding=self.coding_for(dx),
                      category=category)
        if flavor == "old":
            ev.when = self.before_window()
            ev.category = "encounter-diagnosis"
        elif flavor == "resolved":
            ev.category = "problem-list-item"
            ev.onset = self.as_of - timedelta(days=rng.randint(1900, 3000))
            ev.abated = self.as_of - timedelta(days=rng.randint(900, 1500))
        self.evidence.append(ev)

    def suspect(self, dx: Dx) -> None:
        """Clinical evidence in the window that is shown but never qualifies (SPEC §4.3): an uncertain
        verification, or (for a code that is not lifelong) an inactive status without an abatement date."""
        ev = Evidence(dx=dx, where="clinical", flavor="suspect", when=self.in_window(), coding=self.coding_for(dx))
        if dx.lifelong or self.rng.random() < 0.5:
            ev.verification = self.rng.choice(("provisional", "differential", "unconfirmed"))
        else:
            ev.clinical_status = self.rng.choice(("inactive", "resolved", "remission"))
        self.evidence.append(ev)

    def persisting(self, dx: Dx) -> None:
        """A lifelong diagnosis on the problem list, active and confirmed, recorded before the window."""
        self.evidence.append(Evidence(dx=dx, where="clinical", flavor="persists", when=self.before_window(),
                                      coding=self.coding_for(dx), category="problem-list-item"))

    def claims(self, dx: Dx, how: str = "claim-coded", flavor: str = "counts") -> None:
        if dx.icd is None:
            raise ValueError("claims carry ICD-10-CM codes")
        when = self.before_window() if flavor == "old" else self.in_window()
        self.evidence.append(Evidence(dx=dx, where=how, flavor=flavor, when=when, coding="icd",
                                      category="encounter-diagnosis"))

    def claims_any(self, dx: Dx) -> None:
        self.claims(dx, self.rng.choice(("claim-coded", "claim-coded", "claim-ref", "claims-condition")))

    def ignored(self, pools: Sequence[str], *, n: int | None = None) -> None:
        """Evidence that must not count: refuted, entered-in-error, resolved long ago, or too old."""
        flavors = ["refuted", "entered-in-error", "resolved", "old", "old-claim"]
        self.rng.shuffle(flavors)
        for flavor in flavors[: n or self.rng.randint(1, 3)]:
            dx = self.pick(self.rng.choice(pools))
            if flavor == "old-claim":
                if dx.icd is not None and self.coverages:
                    self.claims(dx, self.rng.choice(("claim-coded", "claim-ref")), flavor="old")
                else:
                    self.clinical(dx, "old")
            else:
                self.clinical(dx, flavor)

    def noise(self, *, bh: bool = False, mdd: bool = False) -> None:
        """Routine conditions and claims that are in no value set that matters for this member."""
        rng = self.rng
        for _ in range(rng.randint(0, 2)):
            self.clinical(self.pick("neutral"), rng.choice(("counts", "counts", "old", "resolved")))
        if bh and rng.random() < 0.25:
            self.clinical(self.pick("bh-neutral"))
        if mdd and rng.random() < 0.15:
            self.clinical(self.pick("mdd-not-smi"))
        if self.coverages and rng.random() < 0.7:
            self.claims(rng.choice((ROUTINE_CLAIM_DX, self.pick("neutral"))))
            end = self.coverages[0].end
            if end is not None and end < self.as_of:  # bill inside the coverage period
                self.evidence[-1].when = end - timedelta(days=rng.randint(1, 300))

    def bh_dx(self, cat: str) -> Dx:
        if cat == "smi":
            return self.pick("smi-mh" if self.rng.random() < 0.85 else "smi-only")
        return self.pick("sud")

    def claim_dx(self, cat: str) -> Dx:
        """An SMI/SUD diagnosis that has an ICD-10-CM code (claims need one)."""
        while True:
            dx = self.bh_dx(cat)
            if dx.icd is not None:
                return dx


def _birth_for_age(age: int, as_of: date, days_back: int) -> date:
    year = as_of.year - age
    try:
        anchor = as_of.replace(year=year)
    except ValueError:  # 29 February
        anchor = date(year, 2, 28)
    return anchor - timedelta(days=days_back)


def _eligible(*products: str) -> tuple[str, ...]:
    return tuple(sorted(products, key=lambda p: -PRIORITY[p]))


# --------------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    share: float  # percent of members
    description: str
    build: Callable[[Member], Expect]


def _s_mmc_aligned(m: Member) -> Expect:
    m.set_age(0, 64)
    m.cover("ny-mmc")
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def _s_mmc_under21_bh(m: Member) -> Expect:
    if m.rng.random() < 0.3:
        m.set_age_day_before(21)
    else:
        m.set_age(18, 20)
    m.cover("ny-mmc")
    cat = m.rng.choice(("smi", "sud"))
    clinical_only = m.rng.random() < 0.5
    if clinical_only:
        m.clinical(m.bh_dx(cat))
    else:
        m.claims_any(m.claim_dx(cat))
        if m.rng.random() < 0.5:
            m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",), non_claims=(cat,) if clinical_only else ())


def _harp_candidate_clinical(m: Member, cat: str) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    for _ in range(m.rng.randint(1, 2)):
        m.clinical(m.bh_dx(cat))
    m.noise(bh=True)
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"), non_claims=(cat,))


def _s_harp_candidate_clinical_smi(m: Member) -> Expect:
    return _harp_candidate_clinical(m, "smi")


def _s_harp_candidate_clinical_sud(m: Member) -> Expect:
    return _harp_candidate_clinical(m, "sud")


def _s_harp_candidate_claims(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    cat = m.rng.choice(("smi", "sud"))
    m.claims(m.claim_dx(cat), "claim-coded")
    if m.rng.random() < 0.6:
        m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"))


def _s_harp_candidate_claim_reference(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    cat = m.rng.choice(("smi", "sud"))
    m.claims(m.claim_dx(cat), "claim-ref")
    if m.rng.random() < 0.5:
        m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"))


def _s_harp_candidate_age21_today(m: Member) -> Expect:
    m.set_exact_birthday(21)
    m.cover("ny-mmc")
    m.clinical(m.bh_dx("smi"))
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"), non_claims=("smi",))


def _s_harp_aligned(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    cats = m.rng.choice((("smi",), ("sud",), ("smi", "sud")))
    for cat in cats:
        m.claims_any(m.claim_dx(cat))
        if m.rng.random() < 0.5:
            m.clinical(m.bh_dx(cat))
    m.noise(bh=True)
    return Expect("aligned", "ny-harp", "ny-harp", _eligible("ny-harp", "ny-mmc"))


def _s_harp_aligned_nonclaims(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    claimed, clinical_only = m.rng.choice((("smi", "sud"), ("sud", "smi")))
    m.claims_any(m.claim_dx(claimed))
    m.clinical(m.bh_dx(clinical_only))
    m.noise()
    return Expect("aligned", "ny-harp", "ny-harp", _eligible("ny-harp", "ny-mmc"), non_claims=(clinical_only,))


def _s_harp_no_qualifying_dx(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    m.ignored(("smi-mh", "smi-only", "sud"), n=m.rng.randint(2, 4))
    m.noise(bh=True, mdd=True)
    return Expect("misaligned", "ny-harp", "ny-mmc", ("ny-mmc",))


def _s_mmc_ignored_dx(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    m.ignored(("smi-mh", "smi-only", "sud"))
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def _s_harp_under21(m: Member) -> Expect:
    if m.rng.random() < 0.4:
        m.set_age_day_before(21)
    else:
        m.set_age(18, 20)
    m.cover("ny-harp")
    m.claims_any(m.claim_dx(m.rng.choice(("smi", "sud"))))
    m.noise()
    return Expect("misaligned", "ny-harp", "ny-mmc", ("ny-mmc",))


def _s_ma_aligned(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.noise(bh=True)
    return Expect("aligned", "ma", "ma", _eligible(*MEDICARE_ELIGIBLE))


def _s_ffs_aligned(m: Member) -> Expect:
    m.medicare_age()
    m.cover("medicare-ffs")
    m.noise(bh=True)
    return Expect("aligned", "medicare-ffs", "medicare-ffs", _eligible(*MEDICARE_ELIGIBLE))


def _csnp_conditions(m: Member, *, claims: bool | None = None) -> tuple[str, ...]:
    cats: set[str] = set()
    pools = list(CSNP_BODY_POOLS)
    m.rng.shuffle(pools)
    for pool in pools[: m.rng.randint(1, 2)]:
        dx = m.pick(pool)
        cats |= dx.cats
        use_claims = claims if claims is not None else m.rng.random() < 0.5
        if use_claims and dx.icd is not None:
            m.claims_any(dx)
            if m.rng.random() < 0.4:
                m.clinical(dx)
        else:
            m.clinical(dx)
    return tuple(sorted(cats))


def _s_csnp_candidate(m: Member) -> Expect:
    m.medicare_age()
    enrolled = "ma" if m.rng.random() < 0.7 else "medicare-ffs"
    m.cover(enrolled)
    cats = _csnp_conditions(m)
    m.noise(bh=True)
    return Expect("misaligned", enrolled, "csnp", _eligible("csnp", *MEDICARE_ELIGIBLE), csnp_categories=cats)


def _s_csnp_out_of_area(m: Member) -> Expect:
    m.medicare_age()
    m.out_of_state = True
    enrolled = "ma" if m.rng.random() < 0.7 else "medicare-ffs"
    m.cover(enrolled)
    _csnp_conditions(m)
    m.noise(bh=True)
    return Expect("aligned", enrolled, enrolled, _eligible(*MEDICARE_ELIGIBLE))


def _s_mmc_out_of_state(m: Member) -> Expect:
    m.set_age(21, 64)
    m.out_of_state = True
    m.cover("ny-mmc")
    m.noise(bh=True, mdd=True)
    return Expect("review", "ny-mmc", None, ())


def _s_csnp_aligned(m: Member) -> Expect:
    m.medicare_age()
    m.cover("csnp")
    cats = _csnp_conditions(m, claims=True)
    m.noise()
    return Expect("aligned", "csnp", "csnp", _eligible("csnp", *MEDICARE_ELIGIBLE), csnp_categories=cats)


def _s_csnp_no_qualifying_dx(m: Member) -> Expect:
    m.medicare_age()
    m.cover("csnp")
    m.ignored(CSNP_BODY_POOLS, n=m.rng.randint(1, 3))
    m.noise(bh=True)
    return Expect("misaligned", "csnp", "ma", _eligible(*MEDICARE_ELIGIBLE))


def _s_medicare_clinical_smi(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.clinical(m.pick("smi-mh"))
    m.noise()
    return Expect("misaligned", "ma", "csnp", _eligible("csnp", *MEDICARE_ELIGIBLE), non_claims=("smi",),
                  csnp_categories=("csnp-mental-health",))


def _s_medicare_psychosis_nos(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.clinical(m.pick("smi-only"))
    m.noise()
    return Expect("aligned", "ma", "ma", _eligible(*MEDICARE_ELIGIBLE), non_claims=("smi",))


def _s_dsnp_full_aligned(m: Member) -> Expect:
    m.set_age(30, 90)
    m.cover("dsnp", dual_code=m.rng.choice(FULL_CODES))
    m.noise(bh=True)
    return Expect("aligned", "dsnp", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="full")


def _s_dsnp_partial_aligned(m: Member) -> Expect:
    m.set_age(30, 90)
    m.cover("dsnp", dual_code=m.rng.choice(PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("aligned", "dsnp", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="partial")


def _dual_two_coverages(m: Member, medicare_product: str, code: str | None) -> None:
    on_medicaid = m.rng.random() < 0.5
    m.cover(medicare_product, dual_code=None if on_medicaid else code)
    m.cover_medicaid_ffs(dual_code=code if on_medicaid else None)


def _s_dual_full_in_ma(m: Member) -> Expect:
    m.set_age(30, 90)
    _dual_two_coverages(m, "ma", m.rng.choice(FULL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", "ma", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="full")


def _s_dual_partial_in_ffs(m: Member) -> Expect:
    m.set_age(30, 90)
    _dual_two_coverages(m, "medicare-ffs", m.rng.choice(PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", "medicare-ffs", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="partial")


def _s_dual_level_unknown(m: Member) -> Expect:
    m.set_age(30, 90)
    enrolled = m.rng.choice(("ma", "medicare-ffs", "dsnp"))
    _dual_two_coverages(m, enrolled, None)
    m.noise(bh=True)
    return Expect("review", enrolled, "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="unknown",
                  reasons=("dual-level-unknown",))


def _s_dsnp_medicaid_not_evidenced(m: Member) -> Expect:
    """A D-SNP member with no Medicaid coverage and no dual code, none ever or lost inside the deeming
    period (1-5 months ago): a compliance finding held in review (SPEC §4.3)."""
    m.set_age(30, 90)
    m.cover("dsnp")
    if m.rng.random() < 0.5:
        lost = m.cover_medicaid_ffs(dual_code=m.rng.choice((None, *FULL_CODES)))
        lost.end = m.as_of - timedelta(days=m.rng.randint(30, 150))
    m.noise(bh=True)
    return Expect("review", "dsnp", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level="unknown",
                  reasons=("medicaid-not-evidenced",))


def _s_dsnp_medicaid_lapsed(m: Member) -> Expect:
    """A D-SNP member whose Medicaid ended 7-11 months ago, past the deeming period: misaligned."""
    m.set_age(30, 90)
    m.cover("dsnp")
    lost = m.cover_medicaid_ffs()
    lost.end = m.as_of - timedelta(days=m.rng.randint(215, 330))
    m.noise(bh=True)
    return Expect("misaligned", "dsnp", "ma", _eligible(*MEDICARE_ELIGIBLE),
                  reasons=("medicaid-not-evidenced", "deeming-period-ended"))


def _s_dual_code_without_medicaid(m: Member) -> Expect:
    """An MA or Original Medicare member whose Medicare coverage carries the dual status code (the plan
    learns it from CMS) and no Medicaid coverage was sent: a D-SNP opportunity (SPEC §4.3)."""
    m.set_age(30, 90)
    enrolled = m.rng.choice(("ma", "medicare-ffs"))
    level = m.rng.choice(("full", "partial"))
    m.cover(enrolled, dual_code=m.rng.choice(FULL_CODES if level == "full" else PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", enrolled, "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level=level)


def _s_dual_month_by_month(m: Member) -> Expect:
    """An MA member with an older coded coverage and this month's record with another level: the latest
    month wins (SPEC §4.3)."""
    m.set_age(30, 90)
    older, latest = m.rng.choice(((FULL_CODES, PARTIAL_CODES), (PARTIAL_CODES, FULL_CODES)))
    m.cover("ma", dual_code=m.rng.choice(older))
    record = m.cover_medicaid_ffs(dual_code=m.rng.choice(latest))
    record.start = m.as_of - timedelta(days=m.rng.randint(0, 25))
    m.noise(bh=True)
    level = "full" if latest is FULL_CODES else "partial"
    return Expect("misaligned", "ma", "dsnp", _eligible(*DUAL_ELIGIBLE), dual_level=level)


def _s_harp_gained_medicare(m: Member) -> Expect:
    m.set_age(21, 64)
    code = m.rng.choice(FULL_CODES)
    on_harp = m.rng.random() < 0.5
    m.cover("ny-harp", dual_code=code if on_harp else None)
    m.cover("medicare-ffs", dual_code=None if on_harp else code,
            start=m.as_of - timedelta(days=m.rng.randint(30, 300)))
    cat = m.rng.choice(("smi", "sud"))
    dx = m.pick("smi-mh") if cat == "smi" else m.pick("sud")
    while dx.icd is None:
        dx = m.pick("smi-mh") if cat == "smi" else m.pick("sud")
    m.claims_any(dx)
    m.noise()
    csnp_cat = "csnp-mental-health" if cat == "smi" else "csnp-substance-dependence"
    return Expect("misaligned", "ny-harp", "dsnp", _eligible("dsnp", "csnp", *MEDICARE_ELIGIBLE),
                  csnp_categories=(csnp_cat,), dual_level="full")


def _non_lifelong_bh(m: Member, cat: str) -> Dx:
    while True:
        dx = m.bh_dx(cat)
        if not dx.lifelong:
            return dx


def _s_mmc_suspect_dx(m: Member) -> Expect:
    """Mainstream adult whose SMI/SUD evidence is only suspect: provisional, differential or unconfirmed,
    or inactive/resolved/remission without an abatement date (SPEC §4.3): aligned, shown, not counted."""
    m.set_age(21, 64)
    m.cover("ny-mmc")
    for _ in range(m.rng.randint(1, 2)):
        m.suspect(_non_lifelong_bh(m, m.rng.choice(("smi", "sud"))) if m.rng.random() < 0.5
                  else m.bh_dx(m.rng.choice(("smi", "sud"))))
    m.noise(bh=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def _s_harp_candidate_lifelong_old(m: Member) -> Expect:
    """Schizophrenia or bipolar disorder on the problem list, recorded before the window, still active
    and confirmed: a lifelong diagnosis that counts (SPEC §4.3)."""
    m.set_age(21, 64)
    m.cover("ny-mmc")
    while True:
        dx = m.pick("smi-mh")
        if dx.lifelong:
            break
    m.persisting(dx)
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"), non_claims=("smi",))


def _s_harp_state_identified(m: Member) -> Expect:
    """Mainstream adult the State identified for HARP (H9 eligible not enrolled, H8 for assessment), on
    the Coverage or the Patient, without a diagnosis PlanFit can see: a confirmed opportunity."""
    m.set_age(21, 64)
    coverage = m.cover("ny-mmc")
    code = m.rng.choice(("H8", "H9"))
    if m.rng.random() < 0.5:
        coverage.harp_status = code
    else:
        m.harp_status = code
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", _eligible("ny-harp", "ny-mmc"), reasons=("state-identified",))


def _s_harp_excluded(m: Member) -> Expect:
    """Mainstream adult with SMI/SUD who opted out of HARP (H7) or participates in an OPWDD program: never
    a HARP candidate (SPEC §4.3)."""
    m.set_age(21, 64)
    coverage = m.cover("ny-mmc")
    opted_out = m.rng.random() < 0.6
    if opted_out:
        coverage.harp_status = "H7"
    else:
        m.opwdd = True
    cat = m.rng.choice(("smi", "sud"))
    clinical_only = m.rng.random() < 0.5
    if clinical_only:
        m.clinical(m.bh_dx(cat))
    else:
        m.claims_any(m.claim_dx(cat))
    m.noise()
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",), non_claims=(cat,) if clinical_only else (),
                  reasons=("state-excluded" if opted_out else "flag-excluded",))


def _s_commercial_aligned(m: Member) -> Expect:
    m.set_age(0, 64)
    m.cover("commercial")
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "commercial", "commercial", ("commercial",))


def _s_commercial_nonclaims_bh(m: Member) -> Expect:
    m.set_age(18, 64)
    m.cover("commercial")
    cat = m.rng.choice(("smi", "sud"))
    m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("aligned", "commercial", "commercial", ("commercial",), non_claims=(cat,))


def _s_no_coverage(m: Member) -> Expect:
    m.set_age(0, 90)
    non_claims: tuple[str, ...] = ()
    if m.rng.random() < 0.3:
        cat = m.rng.choice(("smi", "sud"))
        m.clinical(m.bh_dx(cat))
        non_claims = (cat,)
    m.noise(bh=True)
    return Expect("not-evaluable", None, None, (), non_claims=non_claims, reasons=("no-active-coverage",))


def _s_coverage_ended(m: Member) -> Expect:
    product = m.rng.choice(("ny-mmc", "ma", "commercial"))
    if product == "ma":
        m.medicare_age()
    else:
        m.set_age(21, 64)
    if m.rng.random() < 0.7:
        end = m.as_of - timedelta(days=m.rng.randint(30, 400))
        m.cover(product, end=end)
    else:
        m.cover(product, status="cancelled")
    m.noise()
    return Expect("not-evaluable", None, None, (), reasons=("no-active-coverage",))


def _s_conflicting_coverage(m: Member) -> Expect:
    if m.rng.random() < 0.5:
        m.set_age(21, 64)
        m.cover("ny-mmc")
        m.cover("ny-harp")
        m.noise()
        return Expect("review", "ny-harp", "ny-mmc", ("ny-mmc",), reasons=("conflicting-coverage",))
    m.medicare_age()
    m.cover("ma")
    m.cover("medicare-ffs")
    m.noise()
    return Expect("review", "ma", "ma", _eligible(*MEDICARE_ELIGIBLE), reasons=("conflicting-coverage",))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mmc-aligned", 9.5, "Medicaid-only member in mainstream MMC, no SMI/SUD", _s_mmc_aligned),
    Scenario("mmc-out-of-state", 0.5, "Mainstream MMC member living outside New York", _s_mmc_out_of_state),
    Scenario("mmc-suspect-dx", 1.5, "Mainstream adult whose SMI/SUD evidence is only suspect", _s_mmc_suspect_dx),
    Scenario("harp-candidate-lifelong-old", 1.5, "Mainstream adult with an old lifelong problem-list SMI",
             _s_harp_candidate_lifelong_old),
    Scenario("harp-state-identified", 1.5, "Mainstream adult the State identified for HARP (H8/H9)",
             _s_harp_state_identified),
    Scenario("harp-excluded", 1.5, "Mainstream adult with SMI/SUD, opted out (H7) or in OPWDD", _s_harp_excluded),
    Scenario("mmc-under21-bh", 2, "Mainstream MMC, age 18-20, SMI or SUD: too young for HARP", _s_mmc_under21_bh),
    Scenario("harp-candidate-clinical-smi", 5, "HARP-eligible adult in mainstream with clinical-only SMI",
             _s_harp_candidate_clinical_smi),
    Scenario("harp-candidate-clinical-sud", 3, "HARP-eligible adult in mainstream with clinical-only SUD",
             _s_harp_candidate_clinical_sud),
    Scenario("harp-candidate-claims", 4, "HARP-eligible adult in mainstream, SMI/SUD on a claim",
             _s_harp_candidate_claims),
    Scenario("harp-candidate-claim-reference", 2,
             "HARP-eligible adult in mainstream, SMI/SUD via Claim.diagnosisReference",
             _s_harp_candidate_claim_reference),
    Scenario("harp-candidate-age21-today", 1, "Turns 21 on the evaluation date, clinical-only SMI",
             _s_harp_candidate_age21_today),
    Scenario("harp-aligned", 5, "HARP member with SMI/SUD in claims", _s_harp_aligned),
    Scenario("harp-aligned-nonclaims", 2, "HARP member, one BH category clinical-only", _s_harp_aligned_nonclaims),
    Scenario("harp-no-qualifying-dx", 2, "HARP member whose SMI/SUD evidence does not count",
             _s_harp_no_qualifying_dx),
    Scenario("mmc-ignored-dx", 3, "Mainstream member whose SMI/SUD evidence does not count", _s_mmc_ignored_dx),
    Scenario("harp-under21", 1, "HARP member under 21", _s_harp_under21),
    Scenario("ma-aligned", 7, "Medicare Advantage member, no C-SNP condition", _s_ma_aligned),
    Scenario("ffs-aligned", 4, "Original Medicare member, no C-SNP condition: never steered to MA",
             _s_ffs_aligned),
    Scenario("csnp-candidate", 6, "MA/FFS member with a C-SNP chronic condition", _s_csnp_candidate),
    Scenario("csnp-out-of-area", 1, "MA/FFS member with a C-SNP condition, outside the C-SNP's area",
             _s_csnp_out_of_area),
    Scenario("csnp-aligned", 3, "C-SNP member with a qualifying condition in claims", _s_csnp_aligned),
    Scenario("csnp-no-qualifying-dx", 1, "C-SNP member whose qualifying evidence does not count",
             _s_csnp_no_qualifying_dx),
    Scenario("medicare-clinical-smi", 1.5, "MA member with clinical-only schizophrenia/bipolar/MDD",
             _s_medicare_clinical_smi),
    Scenario("medicare-psychosis-nos", 0.5, "MA member with clinical-only unspecified psychosis",
             _s_medicare_psychosis_nos),
    Scenario("dsnp-full-aligned", 3, "Full dual in a D-SNP", _s_dsnp_full_aligned),
    Scenario("dsnp-partial-aligned", 1.5, "Partial dual in a D-SNP", _s_dsnp_partial_aligned),
    Scenario("dual-full-in-ma", 2.5, "Full dual in MA + Medicaid FFS", _s_dual_full_in_ma),
    Scenario("dual-partial-in-ffs", 1.5, "Partial dual in Original Medicare + Medicaid FFS", _s_dual_partial_in_ffs),
    Scenario("dual-level-unknown", 1.5, "Medicare + Medicaid with no dual status code", _s_dual_level_unknown),
    Scenario("dsnp-medicaid-not-evidenced", 1, "D-SNP member, no Medicaid evidence or lost in the deeming period",
             _s_dsnp_medicaid_not_evidenced),
    Scenario("dsnp-medicaid-lapsed", 0.5, "D-SNP member whose Medicaid ended before the deeming period",
             _s_dsnp_medicaid_lapsed),
    Scenario("dual-code-without-medicaid", 1.5, "MA/FFS member with a dual status code, no Medicaid coverage",
             _s_dual_code_without_medicaid),
    Scenario("dual-month-by-month", 1, "MA member whose latest coded month changes the dual level",
             _s_dual_month_by_month),
    Scenario("harp-gained-medicare", 1, "HARP member who gained Original Medicare (full dual)",
             _s_harp_gained_medicare),
    Scenario("commercial-aligned", 6, "Commercial member", _s_commercial_aligned),
    Scenario("commercial-nonclaims-bh", 2, "Commercial member with clinical-only SMI/SUD", _s_commercial_nonclaims_bh),
    Scenario("no-coverage", 4, "No Coverage resource", _s_no_coverage),
    Scenario("coverage-ended", 1.5, "Only coverage ended before the evaluation date or cancelled",
             _s_coverage_ended),
    Scenario("conflicting-coverage", 1.5, "Two active coverages naming different products of one program",
             _s_conflicting_coverage),
)
assert abs(sum(s.share for s in SCENARIOS) - 100) < 1e-9
assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


def _allocate(members: int) -> list[int]:
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


# --------------------------------------------------------------------------------------------------
# Rendering to FHIR


def _uuid(rng: random.Random) -> str:
    b = rng.getrandbits(128)
    b = (b & ~(0xF << 76)) | (0x4 << 76)
    b = (b & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{b:032x}"
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _entry(full_url: str, resource: dict[str, Any], system: str, ident: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": f"identifier={system}|{ident}"},
    }


def _coding_icd(dx: Dx, dotted: bool = True) -> dict[str, str]:
    assert dx.icd is not None
    return {"system": ICD, "code": dx.icd if dotted else dx.icd.replace(".", ""), "display": dx.display}


def _code(dx: Dx, coding: str) -> dict[str, Any]:
    codings = []
    if coding in ("icd", "both"):
        codings.append(_coding_icd(dx))
    if coding in ("sct", "both"):
        codings.append({"system": SCT, "code": dx.sct, "display": dx.sct_display})
    return {"coding": codings, "text": dx.sct_display if coding == "sct" else dx.display}


class _Renderer:
    """Turns a Member plan into clinical and claims entries."""

    def __init__(self, m: Member) -> None:
        self.m = m
        self.rng = m.rng
        self.given = self.rng.choice(FEMALE if m.gender == "female" else MALE)
        self.family = self.rng.choice(FAMILY)
        self.place, self.state = (OUT_OF_STATE, "NJ") if m.out_of_state else (self.rng.choice(PLACES), "NY")

    def patient(self, source: str) -> dict[str, Any]:
        m = self.m
        extensions = ([{"url": HARP_EXT, "valueCode": m.harp_status}] if m.harp_status else []) + (
            [{"url": OPWDD_EXT, "valueBoolean": True}] if m.opwdd else [])
        return {
            "resourceType": "Patient",
            "meta": {"source": source},
            **({"extension": extensions} if extensions else {}),
            "identifier": [{"system": MEMBER_SYSTEM, "value": m.ident}],
            "active": True,
            "name": [{"use": "official", "family": self.family, "given": [self.given]}],
            "gender": m.gender,
            "birthDate": m.birth.isoformat(),
            "address": [{"city": self.place[0], "state": self.state, "postalCode": self.place[1], "country": "US"}],
        }

    def render(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        m, rng = self.m, self.rng
        ident = m.ident
        clinical: list[dict[str, Any]] = []
        claims: list[dict[str, Any]] = []

        # ---- clinical bundle: Patient, Encounters, Conditions
        p_url = _uuid(rng)
        clinical.append(_entry(p_url, self.patient(SOURCE_CLINICAL), MEMBER_SYSTEM, ident))
        n_enc = n_cond = 0
        for ev in (e for e in m.evidence if e.where == "clinical"):
            n_cond += 1
            enc_url = None
            if ev.category == "encounter-diagnosis":
                n_enc += 1
                enc_url = _uuid(rng)
                enc_id = f"{ident}-E{n_enc}"
                day = ev.when.isoformat()
                clinical.append(_entry(enc_url, {
                    "resourceType": "Encounter",
                    "meta": {"source": SOURCE_CLINICAL},
                    "identifier": [{"system": ID_SYSTEM + "encounter-id", "value": enc_id}],
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                              "display": "ambulatory"},
                    "subject": {"reference": p_url},
                    "period": {"start": day, "end": day},
                }, ID_SYSTEM + "encounter-id", enc_id))
            cond_id = f"{ident}-D{n_cond}"
            clinical.append(_entry(_uuid(rng), self.condition(ev, p_url, enc_url, cond_id, SOURCE_CLINICAL),
                                   ID_SYSTEM + "condition-id", cond_id))

        # ---- claims bundle: Patient, Coverages, Claims, claims Conditions
        if not m.coverages:
            return clinical, claims
        cp_url = _uuid(rng)
        claims.append(_entry(cp_url, self.patient(SOURCE_CLAIMS), MEMBER_SYSTEM, ident))
        cov_urls: dict[str, str] = {}
        for cov in m.coverages:
            url = _uuid(rng)
            cov_urls[cov.key] = url
            cov_id = f"{ident}-{cov.key}"
            claims.append(_entry(url, self.coverage(cov, cp_url, cov_id), ID_SYSTEM + "coverage-id", cov_id))
        # claims reference the first coverage (the Medicare one for duals: it is created first)
        focal = m.coverages[0]
        n_claim = n_ccond = 0
        for ev in (e for e in m.evidence if e.where != "clinical"):
            if ev.where in ("claim-ref", "claims-condition"):
                n_ccond += 1
                cc_id = f"{ident}-CD{n_ccond}"
                cc_url = _uuid(rng)
                claims.append(_entry(cc_url, self.condition(ev, cp_url, None, cc_id, SOURCE_CLAIMS),
                                     ID_SYSTEM + "condition-id", cc_id))
                if ev.where == "claims-condition":
                    continue
                diagnosis = {"sequence": 1, "diagnosisReference": {"reference": cc_url}}
            else:
                diagnosis = {"sequence": 1, "diagnosisCodeableConcept": {
                    "coding": [_coding_icd(ev.dx, dotted=rng.random() < 0.5)]}}
            n_claim += 1
            claim_id = f"{ident}-C{n_claim}"
            claims.append(_entry(_uuid(rng), self.claim(ev, diagnosis, cp_url, cov_urls[focal.key], claim_id),
                                 ID_SYSTEM + "claim-id", claim_id))
        return clinical, claims

    def condition(self, ev: Evidence, p_url: str, enc_url: str | None, cond_id: str, source: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Condition",
            "meta": {"source": source},
            "identifier": [{"system": ID_SYSTEM + "condition-id", "value": cond_id}],
        }
        flavor = ev.flavor
        if flavor == "entered-in-error":
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "entered-in-error"}]}
        elif flavor == "refuted":
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": "inactive"}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "refuted"}]}
        elif flavor == "resolved":
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": "resolved"}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "confirmed"}]}
        else:
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": ev.clinical_status}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": ev.verification}]}
        res["category"] = [{"coding": [{"system": CAT, "code": ev.category}]}]
        res["code"] = _code(ev.dx, ev.coding)
        res["subject"] = {"reference": p_url}
        if enc_url:
            res["encounter"] = {"reference": enc_url}
        day = ev.when.isoformat()
        res["onsetDateTime"] = (ev.onset or ev.when).isoformat()
        if ev.abated:
            res["abatementDateTime"] = ev.abated.isoformat()
        res["recordedDate"] = day
        return res

    def coverage(self, cov: CoverageSpec, p_url: str, cov_id: str) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": "Coverage", "meta": {"source": SOURCE_CLAIMS}}
        extensions = ([{"url": DUAL_EXT, "valueCode": cov.dual_code}] if cov.dual_code else []) + (
            [{"url": HARP_EXT, "valueCode": cov.harp_status}] if cov.harp_status else [])
        if extensions:
            res["extension"] = extensions
        res["identifier"] = [
            {"system": ID_SYSTEM + "coverage-id", "value": cov_id},
            {"type": {"coding": [{"system": V2_0203, "code": "MB", "display": "Member Number"}]},
             "system": ID_SYSTEM + f"{cov.payer}-member-number", "value": f"{self.m.ident}-{cov.payer}"},
        ]
        res["status"] = cov.status
        if cov.sopt:
            res["type"] = {"coding": [{"system": SOPT, "code": cov.sopt}]}
        res["subscriberId"] = f"{self.m.ident}-{cov.payer}"
        res["beneficiary"] = {"reference": p_url}
        res["relationship"] = {"coding": [{"system": REL, "code": "self"}]}
        period = {"start": cov.start.isoformat()}
        if cov.end:
            period["end"] = cov.end.isoformat()
        res["period"] = period
        res["payor"] = [{"identifier": {"system": ID_SYSTEM + "payer-id", "value": cov.payer},
                         "display": PAYERS[cov.payer]}]
        if cov.plan:
            res["class"] = [{"type": {"coding": [{"system": COV_CLASS, "code": "plan"}]}, "value": cov.plan}]
        return res

    def claim(self, ev: Evidence, diagnosis: dict[str, Any], p_url: str, cov_url: str, claim_id: str) -> dict[str, Any]:
        rng = self.rng
        bh = bool(ev.dx.cats & {"smi", "sud"})
        npi, prov = rng.choice(BH_PROVIDERS if bh else GENERAL_PROVIDERS)
        day = ev.when.isoformat()
        cpt = rng.choice(("90837", "90834", "99214")) if bh else rng.choice(("99213", "99214", "99203", "99396"))
        amount = float(rng.randint(80, 320))
        return {
            "resourceType": "Claim",
            "meta": {"source": SOURCE_CLAIMS},
            "identifier": [{"system": ID_SYSTEM + "claim-id", "value": claim_id}],
            "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                 "code": "professional"}]},
            "use": "claim",
            "patient": {"reference": p_url},
            "billablePeriod": {"start": day, "end": day},
            "created": day,
            "provider": {"identifier": {"system": NPI, "value": npi}, "display": prov},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                     "code": "normal"}]},
            "diagnosis": [diagnosis],
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": cov_url}}],
            "item": [{
                "sequence": 1,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [{"system": CPT, "code": cpt}]},
                "servicedDate": day,
                "net": {"value": amount, "currency": "USD"},
            }],
            "total": {"value": amount, "currency": "USD"},
        }


# --------------------------------------------------------------------------------------------------
# Generation


@dataclass
class SynthSummary:
    members: int
    seed: int
    as_of: date
    out: Path
    bundle_size: int
    scenarios: dict[str, int]
    statuses: dict[str, int]
    bundles: dict[str, int]
    entries: dict[str, int]
    resources: dict[str, dict[str, int]]
    bytes_written: int
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Deterministic part (no timing): what summary.json holds."""
        return {
            "members": self.members,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "bundle_size": self.bundle_size,
            "scenarios": self.scenarios,
            "statuses": self.statuses,
            "bundles": self.bundles,
            "entries": self.entries,
            "resources": self.resources,
            "totals": {
                "bundles": sum(self.bundles.values()),
                "entries": sum(self.entries.values()),
                "resources": sum(sum(v.values()) for v in self.resources.values()),
            },
        }


def build_member(index: int, seed: int, scenario: Scenario, as_of: date) -> Member:
    rng = random.Random(f"planfit-synth:{seed}:{index}")
    m = Member(index=index, ident=f"M{seed}-{index + 1:07d}", rng=rng, as_of=as_of)
    m.gender = "female" if rng.random() < 0.52 else "male"
    m.expect = scenario.build(m)
    return m


def _truth(m: Member, scenario: Scenario) -> dict[str, Any]:
    e = m.expect
    assert e is not None
    return {
        "scenario": scenario.name,
        "age": m.age(),
        "enrolled_product": e.enrolled,
        "status": e.status,
        "recommended_product": e.recommended,
        "eligible_products": list(e.eligible),
        "non_claims_categories": sorted(e.non_claims),
        "csnp_categories": list(e.csnp_categories),
        "dual_level": e.dual_level,
        "kind": _kind(e),
        "reasons": list(e.reasons),
    }


def _kind(e: Expect) -> str | None:
    """SPEC §4.3: `compliance` when the enrolled product's rule fails (or a dual product's Medicaid is not
    evidenced), `opportunity` when a higher-acuity product is recommended over one whose rule holds."""
    if e.enrolled is None:
        return None
    if e.enrolled not in e.eligible or "medicaid-not-evidenced" in e.reasons:
        return "compliance"
    return "opportunity" if e.recommended != e.enrolled else None


def generate(
    members: int, seed: int, out: Path, bundle_size: int = 500, as_of: date = date(2026, 1, 1)
) -> SynthSummary:
    """Write the bundles, ground_truth.json and summary.json under `out`; return the summary."""
    if members < 1:
        raise ValueError("members must be >= 1")
    if bundle_size < 1:
        raise ValueError("bundle_size must be >= 1")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts, none cyclic: the collector only costs time here
    try:
        return _generate(members, seed, Path(out), bundle_size, as_of)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(members: int, seed: int, out: Path, bundle_size: int, as_of: date) -> SynthSummary:
    started = time.perf_counter()
    for sub in ("clinical", "claims"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("bundle-*.json"):
            old.unlink()

    counts = _allocate(members)
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    random.Random(f"planfit-synth:{seed}").shuffle(order)

    scen_count = {s.name: c for s, c in zip(SCENARIOS, counts)}
    status_count: dict[str, int] = {}
    resources: dict[str, dict[str, int]] = {"clinical": {}, "claims": {}}
    bundles = {"clinical": 0, "claims": 0}
    entries = {"clinical": 0, "claims": 0}
    written = 0
    truth: dict[str, Any] = {}

    def flush(kind: str, number: int, items: list[dict[str, Any]]) -> int:
        if not items:
            return 0
        data = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": items})
        (out / kind / f"bundle-{number:05d}.json").write_bytes(data)
        bundles[kind] += 1
        entries[kind] += len(items)
        tally = resources[kind]
        for item in items:
            rt = item["resource"]["resourceType"]
            tally[rt] = tally.get(rt, 0) + 1
        return len(data)

    bundle_no = 0
    for start in range(0, members, bundle_size):
        bundle_no += 1
        clinical_items: list[dict[str, Any]] = []
        claims_items: list[dict[str, Any]] = []
        for index in range(start, min(start + bundle_size, members)):
            scenario = SCENARIOS[order[index]]
            m = build_member(index, seed, scenario, as_of)
            c_items, k_items = _Renderer(m).render()
            clinical_items.extend(c_items)
            claims_items.extend(k_items)
            t = _truth(m, scenario)
            truth[m.ident] = t
            status_count[t["status"]] = status_count.get(t["status"], 0) + 1
        written += flush("clinical", bundle_no, clinical_items)
        written += flush("claims", bundle_no, claims_items)

    summary = SynthSummary(
        members=members, seed=seed, as_of=as_of, out=out, bundle_size=bundle_size, scenarios=scen_count,
        statuses=dict(sorted(status_count.items())), bundles=bundles, entries=entries,
        resources={k: dict(sorted(v.items())) for k, v in resources.items()}, bytes_written=0,
    )
    ground = {
        "generator": "planfit synth (server/alignment/synth.py)",
        "seed": seed,
        "member_count": members,
        "as_of": as_of.isoformat(),
        "lookback_months": 24,
        "identifier_system": MEMBER_SYSTEM,
        "semantics": "Rule semantics and scenarios: docstring of server/alignment/synth.py",
        "scenarios": {s.name: {"share_percent": s.share, "count": scen_count[s.name], "description": s.description}
                      for s in SCENARIOS},
        "members": truth,
    }
    data = orjson.dumps(ground, option=orjson.OPT_INDENT_2)
    (out / "ground_truth.json").write_bytes(data)
    written += len(data)
    summary.bytes_written = written
    (out / "summary.json").write_bytes(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2))
    summary.seconds = time.perf_counter() - started
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `planfit synth` (shared by the `planfit` command and `python -m`)."""
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle-size", type=int, default=500, help="members per bundle (default 500)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 1, 1),
                        help="evaluation date the ground truth assumes (default 2026-01-01)")


def run(args: argparse.Namespace) -> int:
    summary = generate(args.members, args.seed, args.out, bundle_size=args.bundle_size, as_of=args.as_of)
    totals = summary.to_json()["totals"]
    print(f"{summary.members} members -> {args.out} in {summary.seconds:.2f}s: {totals['bundles']} bundles, "
          f"{totals['entries']} entries, {summary.bytes_written / 1e6:.1f} MB", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="planfit synth", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
