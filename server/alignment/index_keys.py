"""The search-index keys the engine reads, resolved once from the search-parameter registry.

The engine reads facts from the index tables only (`server/store/schema.py`): a parameter is found by
its hash `h_param = h64(type, code)`. Resolving them here, by name and checked against the registry,
keeps every hash the SQL uses in one place and fails at start-up (not with silently empty results) if
a parameter the engine depends on is ever renamed.

A token of one resource is looked up by (type, id, h_param) and its `code` / `system` columns, not by
the value hashes `h_value` / `h_sys_value`: with those, a planner with sampled statistics (SQLite)
may take "every active Claim" for "this Claim's status" and scan the whole index per row. The one
hash join is the value-set match, `idx_token.h_sys_value = alignment_codes.h_code` (see codes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.fhir import searchparams

CLAIM_TYPES = ("Claim", "ExplanationOfBenefit")
# (resource type, token parameter) whose codes are matched against the value sets.
CODE_PARAMETERS = (("Condition", "code"), ("Claim", "diagnosis"), ("ExplanationOfBenefit", "diagnosis"))
# Types whose writes can change a finding: the engine reads nothing else (an Encounter's period dates
# the diagnoses that cite it: their last-affirmed date).
READ_TYPES = frozenset({"Patient", "Coverage", "Condition", "Encounter", *CLAIM_TYPES})
# FHIR condition-clinical codes below `inactive` in its hierarchy, and the verification codes that
# withdraw a diagnosis (SPEC §4.2: refuted, entered-in-error, inactive/resolved before the window).
INACTIVE_CLINICAL = ("inactive", "resolved", "remission")
WITHDRAWN_VERIFICATION = ("refuted", "entered-in-error")
# Verification codes of an uncertain diagnosis: suspect evidence, shown but never qualifying (SPEC §4.3;
# ICD-10-CM Official Guidelines Section IV.H: uncertain outpatient diagnoses are not coded as confirmed).
SUSPECT_VERIFICATION = ("provisional", "differential", "unconfirmed")
# The Condition category whose entries persist (a lifelong problem-list diagnosis counts before the window).
PROBLEM_LIST = ("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")


def _param(rtype: str, code: str, kind: str) -> int:
    param = searchparams.lookup(rtype, code)
    if param is None or param.type != kind:
        raise RuntimeError(f"the alignment engine needs the {kind} search parameter {rtype}.{code}")
    return param.h_param


@dataclass(frozen=True)
class ClaimKeys:
    """Keys of one claim type (Claim or ExplanationOfBenefit); their diagnoses are claims evidence."""

    rtype: str
    patient: int
    diagnosis: int
    diagnosis_reference: int
    service_date: int
    created: int
    status: int
    service: int  # the line codes (productOrService, revenue): HARP risk factors

    @classmethod
    def of(cls, rtype: str) -> "ClaimKeys":
        return cls(
            rtype=rtype,
            patient=_param(rtype, "patient", "reference"),
            diagnosis=_param(rtype, "diagnosis", "token"),
            diagnosis_reference=_param(rtype, "diagnosis-reference", "reference"),
            service_date=_param(rtype, "service-date", "date"),
            created=_param(rtype, "created", "date"),
            status=_param(rtype, "status", "token"),
            service=_param(rtype, "service", "token"),
        )


@dataclass(frozen=True)
class IndexKeys:
    condition_patient: int
    condition_code: int
    condition_recorded: int
    condition_onset: int
    condition_abatement: int
    condition_verification: int
    condition_clinical: int
    condition_tag: int
    condition_category: int
    condition_asserted: int
    condition_encounter: int
    encounter_date: int
    claims: tuple[ClaimKeys, ...]
    coverage_beneficiary: int
    coverage_status: int
    coverage_period: int
    coverage_plan: int
    coverage_type: int
    coverage_dual_status: int
    coverage_harp_status: int
    coverage_aid_category: int
    coverage_orec: int
    coverage_institutional: int
    patient_birthdate: int
    patient_gender: int
    patient_harp_status: int
    patient_opwdd: int
    patient_address_state: int
    patient_address_postalcode: int

    @classmethod
    def resolve(cls) -> "IndexKeys":
        for rtype, code in CODE_PARAMETERS:
            _param(rtype, code, "token")
        return cls(
            condition_patient=_param("Condition", "patient", "reference"),
            condition_code=_param("Condition", "code", "token"),
            condition_recorded=_param("Condition", "recorded-date", "date"),
            condition_onset=_param("Condition", "onset-date", "date"),
            condition_abatement=_param("Condition", "abatement-date", "date"),
            condition_verification=_param("Condition", "verification-status", "token"),
            condition_clinical=_param("Condition", "clinical-status", "token"),
            condition_tag=_param("Condition", "_tag", "token"),
            condition_category=_param("Condition", "category", "token"),
            condition_asserted=_param("Condition", "asserted-date", "date"),
            condition_encounter=_param("Condition", "encounter", "reference"),
            encounter_date=_param("Encounter", "date", "date"),
            claims=tuple(ClaimKeys.of(rtype) for rtype in CLAIM_TYPES),
            coverage_beneficiary=_param("Coverage", "beneficiary", "reference"),
            coverage_status=_param("Coverage", "status", "token"),
            coverage_period=_param("Coverage", "period", "date"),
            coverage_plan=_param("Coverage", "plan", "token"),
            coverage_type=_param("Coverage", "type", "token"),
            coverage_dual_status=_param("Coverage", "dual-status", "token"),
            coverage_harp_status=_param("Coverage", "ny-harp-status", "token"),
            coverage_aid_category=_param("Coverage", "aid-category", "token"),
            coverage_orec=_param("Coverage", "medicare-entitlement-reason", "token"),
            coverage_institutional=_param("Coverage", "long-term-institutional", "token"),
            patient_birthdate=_param("Patient", "birthdate", "date"),
            patient_gender=_param("Patient", "gender", "token"),
            patient_harp_status=_param("Patient", "ny-harp-status", "token"),
            patient_opwdd=_param("Patient", "opwdd", "token"),
            patient_address_state=_param("Patient", "address-state", "string"),
            patient_address_postalcode=_param("Patient", "address-postalcode", "string"),
        )


def compartment_hashes(rtype: str) -> tuple[int, ...]:
    """h_param of the reference parameters that put a resource of this type in a Patient compartment."""
    return tuple(searchparams.param_hash(rtype, code) for code in searchparams.patient_compartment().get(rtype, ()))
