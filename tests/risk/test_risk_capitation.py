"""`POST /fhir/$capitation-adjustment` over HTTP on both databases: the README's worked example against
its hand-computed tables (all four approaches), the CSV form, idempotent re-sending, and malformed
rate and risk-transfer files refused whole with the row and field named."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import httpx
import pytest

from tests.support.alignment import TODAY, coverage
from tests.support.rosters import ATR, parameters
from tests.support.servers import unique
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

# README.md, "Capitation by line of business": the files of the worked example.
RATES = """provider,lob,pmpm,base_member_months,base_risk,year1_member_months,year1_risk
acme-ipa,medicare,1000,1000,1.20,1000,1.30
acme-ipa,medicaid,400,2000,0.90,2000,0.90
acme-ipa,commercial,500,1000,0.80,1000,0.80
metro-group,individual,500,1000,1.00,1000,1.00
metro-group,small-group,450,1000,1.00,1000,1.00
metro-group,large-group,480,1000,1.00,1000,1.00
"""
TRANSFERS = """lob,transfers,total_cost_of_care,experience_rated
individual,180000,1200000,false
small-group,-88000,1100000,false
large-group,0,900000,true
"""
# Computed by hand (README): approach → (provider, lob) → (factor, adjusted PMPM, year-1 factor, resettlement).
EXPECTED = {
    "non-revenue-neutral": {
        ("acme-ipa", "medicare"): (1.2, 1200.00, 1.3, 100000.00),
        ("acme-ipa", "medicaid"): (0.9, 360.00, 0.9, 0.00),
        ("acme-ipa", "commercial"): (0.8, 400.00, 0.8, 0.00),
    },
    "retrospective-revenue-neutral": {
        ("acme-ipa", "medicare"): (1.189655, 1189.66, 1.288793, 99138.00),
        ("acme-ipa", "medicaid"): (0.892241, 356.90, 0.892241, 0.00),
        ("acme-ipa", "commercial"): (0.793103, 396.55, 0.793103, 0.00),
    },
    "retrospective-prospective-revenue-neutral": {
        ("acme-ipa", "medicare"): (1.189655, 1189.66, 1.235537, 45882.00),
        ("acme-ipa", "medicaid"): (0.892241, 356.90, 0.855372, -29495.20),
        ("acme-ipa", "commercial"): (0.793103, 396.55, 0.760331, -16386.00),
    },
    "risk-transfer": {
        ("metro-group", "individual"): (1.105769, 552.88, 1.105769, 0.00),
        ("metro-group", "small-group"): (0.884615, 398.08, 0.884615, 0.00),
        ("metro-group", "large-group"): (1.0, 480.00, 1.0, 0.00),
    },
}
RELATIVE_RISK = {"medicare": 1.263158, "medicaid": 0.947368, "commercial": 0.842105}


def _parameters(rates: str, transfers: str | None = None, attachment: bool = False) -> dict[str, Any]:
    def param(name: str, text: str) -> dict[str, Any]:
        if attachment:
            return {"name": name, "valueAttachment": {"contentType": "text/csv",
                                                      "data": base64.b64encode(text.encode()).decode()}}
        return {"name": name, "valueString": text}

    params = [param("rates", rates)] + ([param("riskTransfers", transfers)] if transfers else [])
    return {"resourceType": "Parameters", "parameter": params}


def _ext(stratum: dict[str, Any], name: str) -> Any:
    url = f"https://planfit.dev/fhir/StructureDefinition/capitation-{name}"
    value = next(e for e in stratum["extension"] if e["url"] == url)
    return value.get("valueDecimal", value.get("valueMoney", {}).get("value"))


def _table(report: dict[str, Any]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    out: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for group in report["group"]:
        approach = group["code"]["coding"][0]["code"]
        for s in group["stratifier"][0]["stratum"]:
            key = tuple(c["value"]["text"] for c in s["component"])
            out.setdefault(approach, {})[key] = {
                "factor": _ext(s, "factor"), "adjusted": s["measureScore"]["value"], "year1": _ext(s, "year1-factor"),
                "resettlement": _ext(s, "resettlement"), "relative": _ext(s, "relative-risk"),
                "member_months": s["population"][0]["count"]}
    return out


def _stored_count(c: httpx.Client) -> int:
    r = c.get("/MeasureReport", params={"measure": "https://planfit.dev/fhir/Measure/capitation-adjustment",
                                        "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_readme_example_reproduces_the_hand_computed_tables(client: httpx.Client) -> None:
    r = client.post("/$capitation-adjustment", json=_parameters(RATES, TRANSFERS))
    assert r.status_code == 200, r.text
    report = r.json()
    table = _table(report)
    for approach, rows in EXPECTED.items():
        for key, (factor, adjusted, year1, resettlement) in rows.items():
            got = table[approach][key]
            assert (got["factor"], got["adjusted"], got["year1"], got["resettlement"]) == \
                pytest.approx((factor, adjusted, year1, resettlement), abs=1e-9), (approach, key)
    for lob, relative in RELATIVE_RISK.items():
        assert table["retrospective-revenue-neutral"][("acme-ipa", lob)]["relative"] == pytest.approx(relative, abs=1e-9)
    assert table["non-revenue-neutral"][("acme-ipa", "medicaid")]["member_months"] == 2000
    # Revenue neutrality: the base year's revenue is unchanged under both revenue-neutral approaches (to the
    # rounding of adjusted PMPMs), and the recalibrated year-1 resettlements add up to zero (to the cent).
    for approach in ("retrospective-revenue-neutral", "retrospective-prospective-revenue-neutral"):
        rows = table[approach]
        before = 1000 * 1000 + 2000 * 400 + 1000 * 500
        after = sum(rows[("acme-ipa", lob)]["member_months"] * rows[("acme-ipa", lob)]["adjusted"] for lob in RELATIVE_RISK)
        assert abs(after - before) <= 0.01 * 4000
    assert abs(sum(v["resettlement"] for k, v in table["retrospective-prospective-revenue-neutral"].items()
                   if k[0] == "acme-ipa")) <= 1.0

    # The same files again (as attachments): the same stored report, not a new version.
    again = client.post("/$capitation-adjustment", json=_parameters(RATES, TRANSFERS, attachment=True))
    assert again.status_code == 200 and again.json()["id"] == report["id"]
    stored = client.get(f"/MeasureReport/{report['id']}")
    assert stored.status_code == 200 and stored.json()["meta"]["versionId"] == "1"

    as_csv = client.post("/$capitation-adjustment", json=_parameters(RATES, TRANSFERS), headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    row = next(x for x in rows if (x["approach"], x["lob"]) == ("retrospective-prospective-revenue-neutral", "medicaid"))
    assert (row["factor"], row["adjusted_pmpm"], row["year1_factor"], row["resettlement"]) == \
        ("0.892241", "356.90", "0.855372", "-29495.20")
    assert len(rows) == 3 * 6 + 3


def test_rates_csv_body(client: httpx.Client) -> None:
    r = client.post("/$capitation-adjustment", content=RATES.encode(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert {g["code"]["coding"][0]["code"] for g in r.json()["group"]} == set(EXPECTED) - {"risk-transfer"}


@pytest.mark.parametrize("rates,transfers,where", [
    (RATES.replace("acme-ipa,medicaid,400", "acme-ipa,medicaid,abc"), None, "rates row 2, field pmpm"),
    (RATES.replace("0.80,1000,0.80", "0.80,1000,-1"), None, "rates row 3, field year1_risk"),
    (RATES + "acme-ipa,medicare,900,10,1,10,1\n", None, "rates row 7, field lob"),
    (RATES.replace("metro-group,individual", "metro group,individual"), None, "rates row 4, field provider"),
    (RATES.replace("year1_risk", "year1_riks"), None, "rates header"),
    (RATES, TRANSFERS.replace("0,900000,true", "0,900000,maybe"), "riskTransfers row 3, field experience_rated"),
    (RATES, TRANSFERS.replace("1100000", "0"), "riskTransfers row 2, field total_cost_of_care"),
    (RATES, TRANSFERS + "vision,1,10,false\n", "riskTransfers"),
])
def test_malformed_files_are_refused_whole(client: httpx.Client, rates: str, transfers: str | None, where: str) -> None:
    before = _stored_count(client)
    r = client.post("/$capitation-adjustment", json=_parameters(rates, transfers))
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [where], issue
    assert _stored_count(client) == before


def _attributed_patient(c: httpx.Client, organization: str | None) -> str:
    resource: dict[str, Any] = {"resourceType": "Patient", "birthDate": "1950-05-05", "gender": "female"}
    if organization:
        resource["generalPractitioner"] = [{"reference": f"Organization/{organization}"}]
    r = c.post("/Patient", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_member_months_derived_from_coverage_and_attribution(client: httpx.Client) -> None:
    """A small population counted by hand: a month counts when a coverage of the line of business is in
    force on its first day and the member names the organization as generalPractitioner."""
    base = TODAY.year - 2  # base year and year 1 both wholly in the past
    org_a, org_b = unique("org-a"), unique("org-b")
    for org in (org_a, org_b):
        assert client.put(f"/Organization/{org}", json={"resourceType": "Organization", "id": org,
                                                        "name": "Test provider organization"}).status_code in (200, 201)
    p1 = _attributed_patient(client, org_a)  # joins 15 March, leaves 10 February: 9 + 2 months
    coverage(client, p1, sopt="11", start=f"{base}-03-15", end=f"{base + 1}-02-10")
    p2 = _attributed_patient(client, org_a)  # all along, twice over (counted once), and Medicaid for June
    coverage(client, p2, sopt="11", start=f"{base}-01-01")
    coverage(client, p2, sopt="11", start=f"{base}-01-01", end=f"{base}-12-31")
    coverage(client, p2, sopt="21", start=f"{base}-06-01", end=f"{base}-06-30")
    p3 = _attributed_patient(client, org_a)  # a cancelled coverage counts nothing
    coverage(client, p3, sopt="11", status="cancelled", start=f"{base}-01-01")
    p4 = _attributed_patient(client, None)  # attributed to no one
    coverage(client, p4, sopt="11", start=f"{base}-01-01")
    p5 = _attributed_patient(client, org_b)  # in force on 1 July only
    coverage(client, p5, sopt="11", start=f"{base}-07-01", end=f"{base}-07-01")
    rates = ("provider,lob,pmpm,base_member_months,base_risk,year1_member_months,year1_risk\n"
             f"{org_a},medicare,1000,,1.0,,1.1\n{org_a},medicaid,500,,1.0,,1.0\n"
             f"{org_a},commercial,400,100,1.0,100,1.0\n{org_b},medicare,1000,,1.0,,1.0\n")
    r = client.post("/$capitation-adjustment", json={"resourceType": "Parameters", "parameter": [
        {"name": "rates", "valueString": rates}, {"name": "baseYear", "valueInteger": base}]})
    assert r.status_code == 200, r.text
    table = _table(r.json())["non-revenue-neutral"]
    assert {k: v["member_months"] for k, v in table.items()} == {
        (org_a, "medicare"): 9 + 12, (org_a, "medicaid"): 1, (org_a, "commercial"): 100, (org_b, "medicare"): 1}
    # Year 1: (2 + 12) member months × 1000 × (1.1 − 1.0).
    assert table[(org_a, "medicare")]["resettlement"] == pytest.approx(1400.00)

    # deriveMemberMonths (CSV body, query parameters): every row's months derived, the given ones too.
    derived = client.post("/$capitation-adjustment", content=rates.encode(), headers={
        "Content-Type": "text/csv", "Accept": "text/csv"}, params={"baseYear": str(base), "deriveMemberMonths": "true"})
    assert derived.status_code == 200, derived.text
    months = {(row["provider"], row["lob"]): row["member_months"] for row in csv.DictReader(io.StringIO(derived.text))
              if row["approach"] == "non-revenue-neutral"}
    assert months == {(org_a, "medicare"): "21", (org_a, "medicaid"): "1", (org_a, "commercial"): "0",
                      (org_b, "medicare"): "1"}
    bad = client.post("/$capitation-adjustment", content=rates.encode(), headers={"Content-Type": "text/csv"},
                      params={"baseYear": "soon"})
    assert bad.status_code == 400 and "baseYear" in bad.text


def _attribution_list(c: httpx.Client, organization: str) -> str:
    """A draft Da Vinci ATR Group managed for `organization`."""
    r = c.post("/Group", json={
        "resourceType": "Group", "meta": {"profile": [ATR + "atr-group"]},
        "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "draft"}],
        "type": "person", "actual": True, "name": f"Roster of {organization}",
        "managingEntity": {"reference": f"Organization/{organization}"}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _rostered(c: httpx.Client, group: str, patient: str, provider: str, start: str, end: str | None = None) -> None:
    period = {"start": start, **({"end": end} if end else {})}
    r = c.post(f"/Group/{group}/$member-add", json=parameters(
        patientReference=("valueReference", {"reference": f"Patient/{patient}"}),
        providerReference=("valueReference", {"reference": provider}), attributionPeriod=("valuePeriod", period)))
    assert r.status_code == 200, r.text


def test_member_months_attributed_by_rosters(client: httpx.Client) -> None:
    """Counted by hand: a month some ATR roster row's period holds goes to the row's provider organization
    (its attributedProvider when an Organization, else the list's managingEntity), the other months to the
    generalPractitioner; a deleted list attributes nothing."""
    base = TODAY.year - 2
    org_a, org_b, org_c = unique("org-a"), unique("org-b"), unique("org-c")
    for org in (org_a, org_b, org_c):
        assert client.put(f"/Organization/{org}", json={"resourceType": "Organization", "id": org,
                                                        "name": "Test provider organization"}).status_code in (200, 201)
    practitioner = client.post("/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Roster"}]})
    assert practitioner.status_code == 201, practitioner.text
    doctor = f"Practitioner/{practitioner.json()['id']}"
    list_b, list_c = _attribution_list(client, org_b), _attribution_list(client, org_c)
    p1 = _attributed_patient(client, org_a)  # on org B's list (by its practitioner) 10 April – 30 Sep: May–Sep
    coverage(client, p1, sopt="11", start=f"{base}-01-01")
    _rostered(client, list_b, p1, doctor, f"{base}-04-10", f"{base}-09-30")
    p2 = _attributed_patient(client, None)  # on org B's list attributed to org C from 1 March, covered to June
    coverage(client, p2, sopt="11", start=f"{base}-01-01", end=f"{base}-06-30")
    _rostered(client, list_b, p2, f"Organization/{org_c}", f"{base}-03-01")
    p3 = _attributed_patient(client, org_a)  # on org C's list all year, but the list is deleted
    coverage(client, p3, sopt="11", start=f"{base}-01-01")
    _rostered(client, list_c, p3, f"Organization/{org_c}", f"{base}-01-01", f"{base}-12-31")
    assert client.delete(f"/Group/{list_c}").status_code in (200, 204)
    rates = ("provider,lob,pmpm,base_member_months,base_risk,year1_member_months,year1_risk\n"
             f"{org_a},medicare,1000,,1.0,,1.1\n{org_b},medicare,1000,,1.0,,1.1\n{org_c},medicare,1000,,1.0,,1.1\n")
    r = client.post("/$capitation-adjustment", json={"resourceType": "Parameters", "parameter": [
        {"name": "rates", "valueString": rates}, {"name": "baseYear", "valueInteger": base}]})
    assert r.status_code == 200, r.text
    table = _table(r.json())["non-revenue-neutral"]
    # Base year: org A has p1's 7 months off the roster and p3's 12; org B p1's 5; org C p2's March–June.
    assert {k: v["member_months"] for k, v in table.items()} == {
        (org_a, "medicare"): 7 + 12, (org_b, "medicare"): 5, (org_c, "medicare"): 4}
    # Year 1 (member months × 1000 × (1.1 − 1.0)): p1 and p3 with org A all year, no roster month, p2 uncovered.
    assert {k: v["resettlement"] for k, v in table.items()} == pytest.approx({
        (org_a, "medicare"): 24 * 100.0, (org_b, "medicare"): 0.0, (org_c, "medicare"): 0.0})
