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
