"""The alignment engine through HTTP, one scenario per rule and edge of SPEC §4.2.

Clinical data is written through `client` (clinical evidence), coverage and claims through
`claims_client` (claims evidence); findings are read back with `GET /fhir/Patient/{id}/$alignment`,
which reflects every write by the time the write's response arrives.
"""

from __future__ import annotations

import httpx
import pytest

from server.alignment.mappings import load_mappings
from tests.support.alignment import (
    ICD,
    ICD_OID,
    SCT,
    TODAY,
    born,
    claim,
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
F20_9 = (ICD, "F20.9")  # schizophrenia: SMI and a C-SNP mental-health condition


def _mainstream_adult(client: httpx.Client, claims_client: httpx.Client, age: int = 34) -> str:
    pid = patient(client, born(age))
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    return pid


def test_harp_candidate_with_clinical_only_smi(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    cid = condition(client, pid, [F20_9])

    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended) == ("misaligned", "ny-mmc", "ny-harp")
    assert list(f.eligible) == ["ny-harp", "ny-mmc"]
    assert f.criteria("ny-harp") == {("requires_lob", "medicaid"), ("excludes_lob", "medicare"), ("min_age", "21"),
                                     ("excludes_flag", "opwdd"), ("excludes_state", "H7"), ("valueset", "smi"),
                                     ("coverage_area", "address-unknown")}  # no address: not excluded, shown
    smi_criterion = next(c for c in f.eligible["ny-harp"] if c[0] == "valueset")
    assert smi_criterion[2] == [f"Condition/{cid}"]
    assert f.non_claims == ["smi"]
    assert f.categories["smi"] == {
        "clinical": True, "claims": False, "nonClaims": True,
        "evidence": [{"resource": f"Condition/{cid}", "system": ICD, "code": "F20.9", "date": days_ago(30),
                      "sourceKind": "clinical", "grade": "qualifying", "lastAffirmed": days_ago(30)}],
    }
    assert {"higher-priority-eligible", "state-determination-pending"} <= set(f.reasons) and f.kind == "opportunity"
    assert f.impact == float((RATES["ny-harp"] - RATES["ny-mmc"]) * 12)
    assert f.age == 34


def test_claim_arriving_ends_the_non_claims_diagnosis(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F20_9])
    assert finding(client, pid).non_claims == ["smi"]

    claim_id = claim(claims_client, pid, codes=[(ICD, "F209")])
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("misaligned", "ny-harp")
    assert f.non_claims == []
    assert f.categories["smi"]["claims"] is True and f.categories["smi"]["nonClaims"] is False
    claim_evidence = [e for e in f.evidence("smi") if e["resource"] == f"Claim/{claim_id}"]
    assert claim_evidence == [{"resource": f"Claim/{claim_id}", "system": ICD, "code": "F209", "date": days_ago(20),
                               "sourceKind": "claims", "grade": "qualifying"}]


def test_age_21_on_the_evaluation_date_but_not_the_day_before(client: httpx.Client,
                                                                claims_client: httpx.Client) -> None:
    turns_21_today = patient(client, born(21))
    turns_21_tomorrow = patient(client, born(21, days_later=1))
    for pid in (turns_21_today, turns_21_tomorrow):
        coverage(claims_client, pid, plan="MMC")
        condition(client, pid, [F20_9])

    adult = finding(client, turns_21_today)
    assert (adult.age, adult.status, adult.recommended) == (21, "misaligned", "ny-harp")
    young = finding(client, turns_21_tomorrow)
    assert (young.age, young.status, young.recommended) == (20, "aligned", "ny-mmc")
    assert list(young.eligible) == ["ny-mmc"] and young.non_claims == ["smi"]


def test_dual_member_is_excluded_from_harp_and_recommended_dsnp(client: httpx.Client,
                                                                  claims_client: httpx.Client) -> None:
    pid = patient(client, born(45))
    medicare = coverage(claims_client, pid, plan="MA", sopt="111")
    coverage(claims_client, pid, sopt="22", dual="02")  # Medicaid fee-for-service, full dual
    condition(client, pid, [F20_9])

    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended, f.dual_level) == ("misaligned", "ma", "dsnp", "full")
    assert list(f.eligible) == ["dsnp", "csnp", "ma", "medicare-ffs"]
    assert ("dual_level", "full") in f.criteria("dsnp")
    assert {c["resource"] for c in f.coverages} >= {f"Coverage/{medicare}"}
    assert f.non_claims == ["smi"]


def test_partial_dual_in_a_dsnp_is_aligned(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(70))
    coverage(claims_client, pid, plan="D-SNP", dual="03")
    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended, f.dual_level) == ("aligned", "dsnp", "dsnp", "partial")


def test_medicare_member_with_diabetes_is_a_csnp_candidate(client: httpx.Client,
                                                             claims_client: httpx.Client) -> None:
    pid = patient(client, born(72))
    coverage(claims_client, pid, sopt="111")  # Medicare HMO: the SOPT code names the MA product
    cid = condition(client, pid, [(ICD, "E11.9")])

    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended) == ("misaligned", "ma", "csnp")
    assert ("valueset", "csnp-diabetes") in f.criteria("csnp")
    assert next(c for c in f.eligible["csnp"] if c[0] == "valueset")[2] == [f"Condition/{cid}"]
    assert f.non_claims == []  # diabetes is not a non-claims category


def test_refuted_and_entered_in_error_conditions_are_ignored(client: httpx.Client,
                                                               claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F20_9], verification="refuted", clinical="inactive")
    condition(client, pid, [(ICD, "F31.9")], verification="entered-in-error")

    f = finding(client, pid)
    assert (f.status, f.recommended) == ("aligned", "ny-mmc")
    assert f.categories == {} and f.non_claims == []


def test_conditions_outside_the_lookback_are_ignored(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F20_9], recorded=months_ago(25))  # active, but recorded before the window
    condition(client, pid, [(ICD, "F10.20")], clinical="resolved", abated=months_ago(26))  # resolved before it
    claim(claims_client, pid, codes=[(ICD, "F31.9")], day=months_ago(30))
    assert finding(client, pid).categories == {}

    # resolved inside the window: shown as suspect evidence, never qualifying (SPEC §4.3)
    condition(client, pid, [(ICD, "F10.20")], clinical="resolved", abated=months_ago(3))
    f = finding(client, pid)
    assert (f.status, f.recommended, f.non_claims) == ("aligned", "ny-mmc", [])
    assert [e["grade"] for e in f.evidence("sud")] == ["suspect"]


def test_conflicting_coverages_need_review(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    coverage(claims_client, pid, plan="NY-HARP")  # a second Medicaid product at the same time

    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended) == ("review", "ny-harp", "ny-mmc")
    assert "conflicting-coverage" in f.reasons and "enrolled-not-eligible" in f.reasons


def test_dual_without_a_status_code_needs_review(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(66))
    coverage(claims_client, pid, plan="ORIGINAL-MEDICARE")
    coverage(claims_client, pid, sopt="2")
    f = finding(client, pid)
    assert (f.status, f.recommended, f.dual_level) == ("review", "dsnp", "unknown")
    assert f.reasons[:1] == ["dual-level-unknown"]


def test_no_active_coverage_is_not_evaluable(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    condition(client, pid, [F20_9])
    f = finding(client, pid)
    assert (f.status, f.enrolled, f.recommended, f.impact) == ("not-evaluable", None, None, None)
    assert f.reasons == ["no-active-coverage"] and f.non_claims == ["smi"]

    coverage(claims_client, pid, plan="NY-MMC", end=days_ago(1))  # ended yesterday
    coverage(claims_client, pid, plan="COMMERCIAL", status="cancelled")
    coverage(claims_client, pid, plan="MA", start=days_ago(-10))  # starts in ten days
    assert finding(client, pid).status == "not-evaluable"


@pytest.mark.parametrize(
    "codings",
    [[(SCT, "58214004")], [(ICD, "F20.9")], [(ICD, "f209")], [(ICD_OID, "F20.9")], [(SCT, "58214004"), (ICD, "F20.9")]],
    ids=["snomed-only", "icd-only", "icd-lower-case-no-dot", "icd-oid-system", "both"],
)
def test_snomed_and_icd_codings(client: httpx.Client, claims_client: httpx.Client,
                                codings: list[tuple[str, str]]) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, codings)
    f = finding(client, pid)
    assert (f.recommended, f.non_claims) == ("ny-harp", ["smi"])
    assert {(e["system"], e["code"]) for e in f.evidence("smi")} == set(codings)


def test_codes_outside_the_value_sets_do_not_count(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    # MDD unspecified, depression NOS, alcohol use (not a use disorder), nicotine, not an ICD-10-CM code
    for code in ("F32.9", "F32.A", "F10.90", "F17.210", "F20.99"):
        condition(client, pid, [(ICD, code)])
    condition(client, pid, [(SCT, "35489007")])  # depressive disorder
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("aligned", "ny-mmc")
    assert set(f.categories) == {"csnp-mental-health"}  # F32.9 is a C-SNP condition, not SMI


@pytest.mark.parametrize("rtype", ["Claim", "ExplanationOfBenefit"])
def test_claim_diagnosis_by_reference(client: httpx.Client, claims_client: httpx.Client, rtype: str) -> None:
    pid = _mainstream_adult(client, claims_client)
    # The EMR's Condition was recorded before the window: it does not count on its own ...
    cid = condition(client, pid, [F20_9], recorded=months_ago(28))
    assert finding(client, pid).categories == {}
    # ... but a recent claim citing it by diagnosisReference is claims evidence of SMI.
    claim_id = claim(claims_client, pid, references=[cid], rtype=rtype)
    f = finding(client, pid)
    assert (f.status, f.recommended, f.non_claims) == ("misaligned", "ny-harp", [])
    assert f.evidence("smi") == [{"resource": f"{rtype}/{claim_id}", "system": ICD, "code": "F20.9",
                                  "date": days_ago(20), "sourceKind": "claims", "grade": "qualifying"}]


def test_cancelled_claims_do_not_count(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    claim(claims_client, pid, codes=[F20_9], status="cancelled")
    assert finding(client, pid).categories == {}


def test_a_claims_feed_condition_is_claims_evidence(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    cid = condition(claims_client, pid, [(ICD, "F11.20")])
    f = finding(client, pid)
    assert f.non_claims == [] and f.categories["sud"]["claims"] is True
    assert [(e["resource"], e["sourceKind"]) for e in f.evidence("sud")] == [(f"Condition/{cid}", "claims")]


def test_findings_follow_updates_deletes_and_moves(client: httpx.Client, claims_client: httpx.Client) -> None:
    first = _mainstream_adult(client, claims_client)
    second = _mainstream_adult(client, claims_client)
    cid = condition(client, first, [F20_9])
    assert finding(client, first).recommended == "ny-harp"

    # the Condition is corrected to belong to the other member: both are re-evaluated
    moved = {**condition_resource(second, [F20_9]), "id": cid}
    assert client.put(f"/Condition/{cid}", json=moved).status_code == 200
    assert (finding(client, first).recommended, finding(client, second).recommended) == ("ny-mmc", "ny-harp")

    assert client.delete(f"/Condition/{cid}").status_code == 204
    assert finding(client, second).recommended == "ny-mmc"

    # a new birth date (now 19) takes the member out of HARP eligibility
    condition(client, second, [F20_9])
    assert finding(client, second).recommended == "ny-harp"
    body = client.get(f"/Patient/{second}").json()
    assert client.put(f"/Patient/{second}", json={**body, "birthDate": born(19).isoformat()}).status_code == 200
    assert finding(client, second).recommended == "ny-mmc"


def test_transaction_bundle_is_evaluated_before_its_response(client: httpx.Client,
                                                              claims_client: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "birthDate": born(50).isoformat()},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**condition_resource("x", [F20_9]),
                      "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Condition"}},
    ]}
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    f = finding(client, pid)
    assert (f.status, f.non_claims) == ("not-evaluable", ["smi"])


def test_deleted_patient_has_no_finding(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    assert client.delete(f"/Patient/{pid}").status_code == 204
    assert client.get(f"/Patient/{pid}/$alignment").status_code == 410
    assert client.get("/Patient/no-such-member/$alignment").status_code == 404


def test_full_re_evaluation(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _mainstream_adult(client, claims_client)
    condition(client, pid, [F20_9])
    before = finding(client, pid)

    r = client.post("/$evaluate-alignment")
    assert r.status_code == 200, r.text
    summary = {p["name"]: p for p in r.json()["parameter"]}
    assert summary["evaluationDate"]["valueDate"] == TODAY.isoformat()
    assert summary["lookbackStart"]["valueDate"] == months_ago(24)
    counts = {}
    for p in r.json()["parameter"]:
        if p["name"] == "status":
            parts = {x["name"]: x for x in p["part"]}
            counts[parts["code"]["valueCode"]] = parts["count"]["valueInteger"]
    assert sum(counts.values()) == summary["members"]["valueInteger"] >= 1 and counts["misaligned"] >= 1
    after = finding(client, pid)
    assert (after.status, after.eligible, after.categories) == (before.status, before.eligible, before.categories)
