"""NY HARP referral candidates with the risk factors their claims show (SPEC §4.3, issue 17) through HTTP:
psychiatric inpatient days (> 30 in 3 years) and months of ACT / targeted case management (>= 3), by the
line codes of `mappings/harp_risk_factors.json`. Listed, never a criterion: the State decides.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.alignment import ICD, born, claim, condition, coverage, days_ago, finding, patient
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
NOT_APPLICABLE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                              "code": "not-applicable"}]}
F20_9 = (ICD, "F20.9")


def _candidate(client: httpx.Client, claims_client: httpx.Client, **kwargs: Any) -> str:
    """A mainstream adult with schizophrenia in clinical data: a HARP referral candidate."""
    pid = patient(client, born(40), **kwargs)
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    condition(client, pid, [F20_9])
    return pid


def _stay(claims_client: httpx.Client, pid: str, admitted_days_ago: int, days: int, *, revenue: str = "0114",
          status: str = "active", rtype: str = "Claim") -> str:
    """An institutional claim for a stay of `days` days (the discharge day not counted)."""
    line = {"revenue": {"coding": [{"system": REVENUE, "code": revenue}]}, "productOrService": NOT_APPLICABLE}
    return claim(claims_client, pid, kind="institutional", day=days_ago(admitted_days_ago),
                 end=days_ago(admitted_days_ago - days), items=[line], status=status, rtype=rtype)


def _service(claims_client: httpx.Client, pid: str, code: str, served_days_ago: int, rtype: str = "Claim") -> str:
    line = {"productOrService": {"coding": [{"system": HCPCS, "code": code}]}, "servicedDate": days_ago(served_days_ago)}
    return claim(claims_client, pid, day=days_ago(served_days_ago), items=[line], rtype=rtype)


def _factor(f: Any, code: str) -> dict[str, Any] | None:
    for p in f.raw["parameter"]:
        if p["name"] == "riskFactor":
            parts = p["part"]
            if next(x["valueCode"] for x in parts if x["name"] == "code") == code:
                out: dict[str, Any] = {"evidence": []}
                for x in parts:
                    value = next(v for k, v in x.items() if k.startswith("value"))
                    if x["name"] == "evidence":
                        out["evidence"].append(value["reference"])
                    else:
                        out[x["name"]] = value
                return out
    return None


def test_more_than_30_psychiatric_inpatient_days_in_3_years(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _candidate(client, claims_client)
    first = _stay(claims_client, pid, 700, 20)
    second = _stay(claims_client, pid, 90, 11, revenue="0204", rtype="ExplanationOfBenefit")
    _stay(claims_client, pid, 4 * 365, 60)  # before the three years: not counted
    _stay(claims_client, pid, 300, 40, status="cancelled")  # not an active claim
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "ny-harp")
    assert "state-determination-pending" in f.reasons
    assert "risk-factor-psychiatric-inpatient-days" in f.reasons
    assert "risk-factor-act-tcm-months" not in f.reasons
    assert _factor(f, "psychiatric-inpatient-days") == {
        "code": "psychiatric-inpatient-days", "display": "Psychiatric inpatient days", "days": 31, "threshold": 31, "met": True,
        "evidence": [f"Claim/{first}", f"ExplanationOfBenefit/{second}"]}


def test_30_inpatient_days_and_two_months_of_act_are_shown_not_met(client: httpx.Client,
                                                                    claims_client: httpx.Client) -> None:
    pid = _candidate(client, claims_client)
    _stay(claims_client, pid, 200, 30)
    _stay(claims_client, pid, 50, 5, revenue="0450")  # emergency room: no psychiatric room and board
    _service(claims_client, pid, "H0040", 70)
    _service(claims_client, pid, "H0040", 70)
    _service(claims_client, pid, "T1017", 130)
    _service(claims_client, pid, "99213", 10)  # an office visit is no factor
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("misaligned", "ny-harp")
    assert not {"risk-factor-psychiatric-inpatient-days", "risk-factor-act-tcm-months"} & set(f.reasons)
    inpatient, act = _factor(f, "psychiatric-inpatient-days"), _factor(f, "act-tcm-months")
    assert (inpatient["days"], inpatient["met"], len(inpatient["evidence"])) == (30, False, 1)
    assert (act["months"], act["met"], len(act["evidence"])) == (2, False, 3)


def test_three_months_of_act_or_case_management(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = _candidate(client, claims_client)
    for served, code in ((40, "H0040"), (100, "T1017"), (160, "H0040")):
        _service(claims_client, pid, code, served, rtype="ExplanationOfBenefit")
    f = finding(client, pid)
    assert "risk-factor-act-tcm-months" in f.reasons
    assert _factor(f, "act-tcm-months")["months"] == 3
    assert _factor(f, "psychiatric-inpatient-days") is None


@pytest.mark.parametrize("state", ["H9", "H7"])
def test_risk_factors_are_listed_only_for_referral_candidates(client: httpx.Client, claims_client: httpx.Client,
                                                              state: str) -> None:
    """State-identified (H9) is no referral; opted out (H7) is never flagged: the figures stay visible."""
    pid = _candidate(client, claims_client, harp=state)
    _stay(claims_client, pid, 100, 45)
    f = finding(client, pid)
    assert "risk-factor-psychiatric-inpatient-days" not in f.reasons
    assert _factor(f, "psychiatric-inpatient-days")["met"] is True


def test_no_qualifying_diagnosis_no_referral(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    _stay(claims_client, pid, 100, 45)
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("aligned", "ny-mmc")
    assert "risk-factor-psychiatric-inpatient-days" not in f.reasons
