"""The cohorts (SPEC §5): which members each fixed-id Group holds, as SELECTs over the findings tables.

Every cohort is a single SELECT of one column, `patient_id`, straight from the findings tables, so
membership is computed in the database (for every member, or only the members an evaluation covers).

Candidates for a product P are members eligible for P (a `finding_products` row) whose enrolled
product is another product. Members with no enrolled product (no active coverage) are nobody's
candidates: they are `not-evaluable` and have nothing to move from. Members under `review` are
candidates like any other: their enrolled and eligible products are still determined, and the
finding's status tells the reader to check the data first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, select

from server.alignment.facts import EVERYONE, Members
from server.store.alignment_schema import finding_categories, finding_products, findings

COHORT_SYSTEM = "https://planfit.dev/fhir/cohort"  # Group.identifier system; the value is the cohort id
COHORT_CODE_SYSTEM = "https://planfit.dev/fhir/CodeSystem/cohort"  # Group.code; code = the cohort id
COHORT_VALUESET = "https://planfit.dev/fhir/ValueSet/cohort"


# Group.characteristic: what qualifies a member, in PlanFit's code systems (the products and alignment
# statuses of the findings, the diagnosis categories of the value sets in mappings/).
CHARACTERISTIC_SYSTEM = "https://planfit.dev/fhir/CodeSystem/cohort-characteristic"
PRODUCT_SYSTEM = "https://planfit.dev/fhir/CodeSystem/product"
STATUS_SYSTEM = "https://planfit.dev/fhir/CodeSystem/alignment-status"
CATEGORY_SYSTEM = "https://planfit.dev/fhir/CodeSystem/diagnosis-category"


@dataclass(frozen=True)
class Cohort:
    id: str
    name: str
    description: str
    characteristic: tuple[dict, ...]


def _trait(code: str, display: str, system: str, value: str, exclude: bool = False) -> dict:
    return {
        "code": {"coding": [{"system": CHARACTERISTIC_SYSTEM, "code": code, "display": display}]},
        "valueCodeableConcept": {"coding": [{"system": system, "code": value}]},
        "exclude": exclude,
    }


def _nonclaims(category: str, label: str) -> Cohort:
    return Cohort(f"nonclaims-{category}", f"Non-claims {category.upper()} diagnosis",
                  f"Members with clinical evidence of {label} in the lookback window and no claims evidence of it.",
                  (_trait("non-claims-diagnosis", "Non-claims diagnosis", CATEGORY_SYSTEM, category),))


def _candidates(product: str, label: str) -> Cohort:
    return Cohort(f"candidates-{product}", f"{label} candidates",
                  f"Members eligible for {label} and enrolled in another product.",
                  (_trait("eligible-product", "Eligible product", PRODUCT_SYSTEM, product),
                   _trait("enrolled-product", "Enrolled product", PRODUCT_SYSTEM, product, exclude=True)))


COHORTS: tuple[Cohort, ...] = (
    _nonclaims("smi", "serious mental illness"),
    _nonclaims("sud", "substance use disorder"),
    Cohort("misaligned", "Misaligned members",
           "Members whose enrolled product is not the product recommended for them.",
           (_trait("alignment-status", "Alignment status", STATUS_SYSTEM, "misaligned"),)),
    _candidates("ny-harp", "NY Medicaid HARP"),
    _candidates("dsnp", "D-SNP"),
    _candidates("csnp", "C-SNP"),
)
COHORT_IDS: tuple[str, ...] = tuple(c.id for c in COHORTS)
COHORTS_BY_ID: dict[str, Cohort] = {c.id: c for c in COHORTS}

NONCLAIMS_PREFIX = "nonclaims-"
CANDIDATES_PREFIX = "candidates-"


def cohort_members_select(cohort_id: str, members: Members = EVERYONE) -> Select:
    """SELECT patient_id of the cohort's members; `members` limits it to the ids an evaluation binds
    as MEMBER_IDS. A KeyError for an unknown cohort id."""
    if cohort_id not in COHORTS_BY_ID:
        raise KeyError(cohort_id)
    if cohort_id.startswith(NONCLAIMS_PREFIX):
        c = finding_categories.c
        return _ids(c.patient_id, members, c.category == cohort_id.removeprefix(NONCLAIMS_PREFIX),
                    c.non_claims.is_(True))
    if cohort_id == "misaligned":
        return _ids(findings.c.patient_id, members, findings.c.status == "misaligned")
    product = cohort_id.removeprefix(CANDIDATES_PREFIX)
    p, f = finding_products.c, findings.c
    return (_ids(p.patient_id, members, p.product == product)
            .join_from(finding_products, findings, f.patient_id == p.patient_id)
            .where(and_(f.enrolled_product.is_not(None), f.enrolled_product != product)))


def _ids(patient_id: ColumnElement, members: Members, *where: ColumnElement[bool]) -> Select:
    return select(patient_id.label("patient_id")).where(*where, *members.where(patient_id))
