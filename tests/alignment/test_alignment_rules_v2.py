"""Rules v2 (SPEC §4.3) through HTTP: one scenario per answer v1 got wrong, each asserting the program's
answer (issue 17). Helpers and conventions as in test_alignment_scenarios.py: clinical data through
`client`, coverage and claims through `claims_client`, findings read back with `$alignment`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.alignment.mappings import load_mappings
from tests.support.alignment import (
    ICD,
    born,
    condition,
    condition_resource,
    coverage,
    days_ago,
    finding,
    months_ago,
    patient,
)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

RATES = load_mappings().rates.pmpm
F20_9 = (ICD, "F20.9")  # schizophrenia: SMI, lifelong
F33_2 = (ICD, "F33.2")  # recurrent major depression, severe: SMI, not lifelong


def _mainstream_adult(client: httpx.Client, claims_client: httpx.Client, **kwargs: Any) -> str:
    pid = patient(client, born(34), **kwargs)
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    return pid


def _money(f: Any, name: str) -> float | None:
    return next((p["valueMoney"]["value"] for p in f.raw["parameter"] if p["name"] == name), None)


def _integer(f: Any, name: str) -> int | None:
    return next((p["valueInteger"] for p in f.raw["parameter"] if p["name"] == name), None)


# -- Original Medicare is the member's choice -------------------------------------------------------------


def test_original_medicare_member_is_not_steered_to_medicare_advantage(client: httpx.Client,
                                                                       claims_client: httpx.Client) -> None:
    pid = patient(client, born(70))
    coverage(claims_client, pid, plan="ORIGINAL-MEDICARE", sopt="121")
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended, f.impact) == ("aligned", None, "medicare-ffs",
                                                                     "medicare-ffs", 0.0)
    assert list(f.eligible) == ["ma", "medicare-ffs"]  # eligible for MA, but never steered to it


def test_original_medicare_member_with_diabetes_has_a_csnp_opportunity(client: httpx.Client,
                                                                       claims_client: httpx.Client) -> None:
    pid = patient(client, born(70))
    coverage(claims_client, pid, plan="ORIGINAL-MEDICARE")
    condition(client, pid, [(ICD, "E11.9")])
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "opportunity", "medicare-ffs", "csnp")


# -- the finding's kind -------------------------------------------------------------------------------------


def test_harp_member_without_a_qualifying_diagnosis_is_a_compliance_finding(client: httpx.Client,
                                                                            claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    coverage(claims_client, pid, plan="NY-HARP")
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "compliance", "ny-harp", "ny-mmc")
    assert "enrolled-not-eligible" in f.reasons
    difference = float((RATES["ny-mmc"] - RATES["ny-harp"]) * 12)
    # Enrolled since before the 24-month lookback: exposure = 24 months x the monthly rate difference.
    assert f.impact == difference and _money(f, "overpaymentExposure") == -difference * 2
    assert _integer(f, "exposureMonths") == 24


def test_overpayment_exposure_counts_the_months_enrolled(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    coverage(claims_client, pid, plan="NY-HARP", start=months_ago(5))
    f = finding(client, pid)
    assert f.kind == "compliance" and _integer(f, "exposureMonths") == 5
    assert _money(f, "overpaymentExposure") == float((RATES["ny-harp"] - RATES["ny-mmc"]) * 5)
    opportunity = patient(client, born(40))  # an opportunity is no exposure
    coverage(claims_client, opportunity, plan="NY-MMC", start=months_ago(5))
    condition(client, opportunity, [(ICD, "F20.9")])
    f = finding(client, opportunity)
    assert f.kind == "opportunity" and _money(f, "overpaymentExposure") is None and _integer(f, "exposureMonths") is None


# -- evidence grading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
def test_uncertain_diagnosis_is_suspect_never_qualifying(client: httpx.Client, claims_client: httpx.Client,
                                                         verification: str) -> None:
    pid = _mainstream_adult(client, claims_client)
    cid = condition(client, pid, [F20_9], verification=verification)
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended, f.non_claims) == ("aligned", None, "ny-mmc", [])
    assert "ny-harp" not in f.eligible
    assert f.categories["smi"]["clinical"] is False
    assert [(e["resource"], e["grade"]) for e in f.evidence("smi")] == [(f"Condition/{cid}", "suspect")]


def test_resolved_diagnosis_without_abatement_is_suspect(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F33_2], clinical="resolved")  # no abatement date, as EMRs usually send it
    f = finding(client, pid)
    assert (f.status, f.recommended, f.non_claims) == ("aligned", "ny-mmc", [])
    assert [e["grade"] for e in f.evidence("smi")] == ["suspect"]


def test_confirmed_diagnosis_beside_a_suspect_one_qualifies(client: httpx.Client,
                                                            claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F33_2], verification="provisional")
    confirmed = condition(client, pid, [F33_2])
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended, f.non_claims) == ("misaligned", "opportunity", "ny-harp", ["smi"])
    smi = next(c for c in f.eligible["ny-harp"] if c[0] == "valueset")
    assert smi[2] == [f"Condition/{confirmed}"]  # only the qualifying evidence is cited


# -- lifelong categories -------------------------------------------------------------------------------------


def test_old_lifelong_problem_list_diagnosis_counts_with_its_last_affirmed_date(client: httpx.Client,
                                                                                 claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    recorded = "2018-05-14"
    cid = condition(client, pid, [F20_9], recorded=recorded, category="problem-list-item")
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended, f.non_claims) == ("misaligned", "opportunity", "ny-harp", ["smi"])
    assert f.evidence("smi") == [{"resource": f"Condition/{cid}", "system": ICD, "code": "F20.9", "date": recorded,
                                  "sourceKind": "clinical", "grade": "qualifying", "lastAffirmed": recorded}]


def test_last_affirmed_is_the_latest_of_asserted_date_and_the_cited_encounter(client: httpx.Client,
                                                                              claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    visit = client.post("/Encounter", json={
        "resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2025-03-02", "end": "2025-03-02"}})
    assert visit.status_code == 201, visit.text
    resource = condition_resource(pid, [F20_9], recorded="2018-05-14", category="problem-list-item")
    resource["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate",
                              "valueDateTime": "2024-07-01"}]
    r = client.post("/Condition", json=resource)
    assert r.status_code == 201, r.text
    assert [e["lastAffirmed"] for e in finding(client, pid).evidence("smi")] == ["2024-07-01"]
    # the problem-list entry is confirmed again at a visit: the visit's date is now the last affirmation
    resource = {**r.json(), "encounter": {"reference": f"Encounter/{visit.json()['id']}"}}
    assert client.put(f"/Condition/{resource['id']}", json=resource).status_code == 200
    assert [e["lastAffirmed"] for e in finding(client, pid).evidence("smi")] == ["2025-03-02"]


@pytest.mark.parametrize("case", ["not-lifelong", "encounter-diagnosis", "provisional"])
def test_old_diagnoses_that_do_not_persist(client: httpx.Client, claims_client: httpx.Client, case: str) -> None:
    pid = _mainstream_adult(client, claims_client)
    codes, category, verification = {
        "not-lifelong": ([F33_2], "problem-list-item", "confirmed"),  # MDD is not lifelong
        "encounter-diagnosis": ([F20_9], "encounter-diagnosis", "confirmed"),  # a visit, not the problem list
        "provisional": ([F20_9], "problem-list-item", "provisional"),
    }[case]
    condition(client, pid, codes, recorded="2018-05-14", category=category, verification=verification)
    f = finding(client, pid)
    assert (f.status, f.recommended, f.categories) == ("aligned", "ny-mmc", {})


def test_inactive_lifelong_diagnosis_in_the_window_still_qualifies(client: httpx.Client,
                                                                   claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [(ICD, "F31.9")], clinical="inactive")  # bipolar disorder: lifelong
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("misaligned", "ny-harp")
    assert [e["grade"] for e in f.evidence("smi")] == ["qualifying"]


# -- dual status ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "level"), [("02", "full"), ("03", "partial")])
def test_dual_status_code_without_a_medicaid_coverage_makes_a_dual(client: httpx.Client, claims_client: httpx.Client,
                                                                   code: str, level: str) -> None:
    pid = patient(client, born(72))
    cov = coverage(claims_client, pid, plan="MA", sopt="111", dual=code)  # no Medicaid feed: the MMR says dual
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended, f.dual_level) == ("misaligned", "opportunity", "ma",
                                                                           "dsnp", level)
    assert "dual-level-unknown" not in f.reasons and "dual-code-not-dual" not in f.reasons
    medicaid = next(c for c in f.eligible["dsnp"] if c[:2] == ("requires_lob", "medicaid"))
    assert medicaid[2] == [f"Coverage/{cov}"]


@pytest.mark.parametrize(("earlier", "later", "level"), [("02", "03", "partial"), ("03", "02", "full")])
def test_month_by_month_dual_status_the_latest_month_wins(client: httpx.Client, claims_client: httpx.Client,
                                                          earlier: str, later: str, level: str) -> None:
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="MA", dual=earlier)  # in force since 30 months ago
    coverage(claims_client, pid, sopt="22", dual=later, start=months_ago(1))  # this month's record
    f = finding(client, pid)
    assert (f.status, f.recommended, f.dual_level) == ("misaligned", "dsnp", level)
    assert "dual-level-conflict" not in f.reasons


def test_dsnp_member_without_medicaid_evidence_is_held_in_review(client: httpx.Client,
                                                                 claims_client: httpx.Client) -> None:
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="D-SNP")
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled) == ("review", "compliance", "dsnp")
    assert "medicaid-not-evidenced" in f.reasons and "deeming-period-ended" not in f.reasons


def test_dsnp_member_inside_the_deeming_period_is_held_in_review(client: httpx.Client,
                                                                 claims_client: httpx.Client) -> None:
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="D-SNP")
    coverage(claims_client, pid, sopt="22", dual="02", end=months_ago(2))  # Medicaid lost two months ago
    f = finding(client, pid)
    assert (f.status, f.kind) == ("review", "compliance")
    assert "medicaid-not-evidenced" in f.reasons and "deeming-period-ended" not in f.reasons


def test_dsnp_member_after_the_deeming_period_is_misaligned(client: httpx.Client,
                                                            claims_client: httpx.Client) -> None:
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="D-SNP")
    coverage(claims_client, pid, sopt="22", end=months_ago(9))  # Medicaid lost nine months ago
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "compliance", "dsnp", "ma")
    assert {"medicaid-not-evidenced", "deeming-period-ended", "enrolled-not-eligible"} <= set(f.reasons)


# -- NY HARP follows the State ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["coverage", "patient"])
@pytest.mark.parametrize("code", ["H9", "H8"])
def test_state_identified_harp_member_without_a_diagnosis(client: httpx.Client, claims_client: httpx.Client,
                                                          where: str, code: str) -> None:
    pid = patient(client, born(34), harp=code if where == "patient" else None)
    coverage(claims_client, pid, plan="NY-MMC", harp=code if where == "coverage" else None)
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "ny-harp")
    assert "state-identified" in f.reasons and "state-determination-pending" not in f.reasons
    assert ("state_status", code) in f.criteria("ny-harp")


def test_referral_candidate_without_a_state_code(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F20_9])
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "ny-harp")
    assert "state-determination-pending" in f.reasons and "state-identified" not in f.reasons


@pytest.mark.parametrize("exclusion", ["opted-out-h7", "opwdd"])
def test_harp_exclusions(client: httpx.Client, claims_client: httpx.Client, exclusion: str) -> None:
    if exclusion == "opwdd":
        pid = _mainstream_adult(client, claims_client, opwdd=True)
    else:
        pid = patient(client, born(34))
        coverage(claims_client, pid, plan="NY-MMC", harp="H7")
    condition(client, pid, [F20_9])
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended, f.non_claims) == ("aligned", None, "ny-mmc", ["smi"])
    assert "ny-harp" not in f.eligible
    assert {"opted-out-h7": "state-excluded", "opwdd": "flag-excluded"}[exclusion] in f.reasons


def test_ended_coverage_records_are_shown_as_not_current(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(72))
    current = coverage(claims_client, pid, plan="MA")
    ended = coverage(claims_client, pid, sopt="22", dual="02", end=days_ago(40))
    f = finding(client, pid)
    assert {(c["resource"], c["current"]) for c in f.coverages} == {(f"Coverage/{current}", True),
                                                                    (f"Coverage/{ended}", False)}
