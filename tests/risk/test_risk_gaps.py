"""Da Vinci RA 2.1 coding gaps over HTTP on both databases: `$ra.evaluate-measure` for a Patient and a
Group, the suspected open gap for HCC 38 (V28) of a Medicare member whose only E11.9 is clinical and
its closing once a claim codes it (the stored report follows the claim), a pending gap while the
claim is not yet adjudicated, historic gaps, the stored
reports found with `category=ra`, request errors, and conformance of reports and bundles to the RA
profiles (tests/data/davinci-ra) and to the IG's example reports."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import orjson
import pytest

from tests.support.alignment import ICD, TODAY, claim
from tests.support.servers import SHARED
from tests.support.profile_checker import ProfileChecker
from tests.support.ra_conformance import code_system_codes, structure
from tests.support.risk import claimed, clinical, medicare_member, read_risk, risk
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

YEAR = TODAY.year  # the clinical evaluation period: this calendar year, feeding payment year YEAR + 1
PERIOD = {"periodStart": f"{YEAR}-01-01", "periodEnd": f"{YEAR}-12-31"}
RA = "http://hl7.org/fhir/us/davinci-ra/StructureDefinition/"
EXAMPLES = SHARED / "testdata" / "hl7-examples" / "davinci-ra"


def _ra(c: httpx.Client, subject: str, expect: int = 200, **params: str) -> dict[str, Any]:
    r = c.get("/Measure/$ra.evaluate-measure", params={**PERIOD, "subject": subject, **params})
    assert r.status_code == expect, r.text[:2000]
    return r.json()


def _bundles(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Patient id → its ra-measurereport-bundle."""
    assert body["resourceType"] == "Parameters"
    out = {}
    for p in body["parameter"]:
        assert p["name"] == "return"
        bundle = p["resource"]
        out[bundle["entry"][0]["resource"]["id"]] = bundle
    return out


def _reports(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MeasureReport"]


def _ext(node: dict[str, Any], name: str) -> Any:
    values = [next(v for k, v in e.items() if k.startswith("value")) for e in node.get("extension", [])
              if e["url"] == RA + name]
    return values[0] if values else None


def _gaps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """HCC code → ccType, evidenceStatus, hierarchical status, dx codes and evidence references."""
    evidence: dict[str, list[str]] = {}
    for e in report.get("evaluatedResource", []):
        for ext in e["extension"]:
            evidence.setdefault(ext["valueString"], []).append(e["reference"])
    out = {}
    for g in report.get("group", []):
        coding = g["code"]["coding"][0]
        out[coding["code"]] = {
            "version": coding["version"],
            "ccType": _ext(g, "ra-ccType")["coding"][0]["code"],
            "evidenceStatus": _ext(g, "ra-evidenceStatus")["coding"][0]["code"],
            "hierarchical": _ext(g, "ra-hierarchicalStatus")["coding"][0]["code"],
            "dx": sorted(e["valueCodeableConcept"]["coding"][0]["code"] for e in g["extension"] if e["url"] == RA + "ra-dxCode"),
            "evidence": sorted(evidence.get(g["id"], [])),
        }
    return out


def _stored(c: httpx.Client, pid: str) -> list[dict[str, Any]]:
    r = c.get("/MeasureReport", params={"subject": f"Patient/{pid}", "category": "ra"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _born(age: int) -> date:
    return date(YEAR - age, 3, 10)


def test_suspected_gap_closes_when_a_claim_codes_it(client: httpx.Client) -> None:
    pid = medicare_member(client, _born(70), "female")
    condition = clinical(client, pid, "E11.9", f"{YEAR}-0{min(TODAY.month, 9)}-01")
    report = _reports(_bundles(_ra(client, f"Patient/{pid}"))[pid])
    assert [r["measure"].rsplit("/", 1)[-1] for r in report] == [f"ra-cms-hcc-v28-py{YEAR + 1}"]
    gap = _gaps(report[0])["38"]
    assert gap == {"version": "28", "ccType": "suspected", "evidenceStatus": "open-gap",
                   "hierarchical": "applied-not-superseded", "dx": ["E11.9"], "evidence": [f"Condition/{condition}"]}
    stored = _stored(client, pid)
    assert [r["id"] for r in stored] == [report[0]["id"]]
    assert _gaps(stored[0])["38"]["evidenceStatus"] == "open-gap"

    claim = claimed(client, pid, ["E11.9"], f"{YEAR}-0{min(TODAY.month, 9)}-15")
    # The stored report follows the claim without another $ra.evaluate-measure.
    stored = _stored(client, pid)
    assert len(stored) == 1 and stored[0]["meta"]["versionId"] == "2"
    closed = _gaps(stored[0])["38"]
    assert closed["evidenceStatus"] == "closed-gap" and closed["ccType"] == "suspected"
    assert closed["evidence"] == sorted([f"Condition/{condition}", f"Claim/{claim}"])
    again = _gaps(_reports(_bundles(_ra(client, f"Patient/{pid}"))[pid])[0])["38"]
    assert again == closed


def test_historic_and_net_new_gaps_and_groups(client: httpx.Client) -> None:
    historic = medicare_member(client, _born(75), "male")
    claimed(client, historic, ["E11.9", "J44.9"], f"{YEAR - 1}-05-01")  # coded last year only
    claimed(client, historic, ["J44.9"], f"{YEAR}-02-01")  # coded again this year
    net_new = medicare_member(client, _born(66), "female", dual="02", sopt="14")
    claimed(client, net_new, ["I50.9"], f"{YEAR}-03-01")
    not_medicare = client.post("/Patient", json={"resourceType": "Patient", "gender": "male",
                                                 "birthDate": "1950-01-01"}).json()["id"]
    group = client.post("/Group", json={"resourceType": "Group", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/{p}"}} for p in (historic, net_new, not_medicare)]}).json()["id"]
    bundles = _bundles(_ra(client, f"Group/{group}"))
    assert set(bundles) == {historic, net_new, not_medicare}
    assert _reports(bundles[not_medicare]) == []  # not a Medicare member: the Patient alone
    gaps = _gaps(_reports(bundles[historic])[0])
    assert (gaps["38"]["ccType"], gaps["38"]["evidenceStatus"]) == ("historic", "open-gap")
    assert (gaps["280"]["ccType"], gaps["280"]["evidenceStatus"]) == ("historic", "closed-gap")
    gaps = _gaps(_reports(bundles[net_new])[0])
    assert (gaps["226"]["ccType"], gaps["226"]["evidenceStatus"]) == ("net-new", "closed-gap")


def _set_outcome(c: httpx.Client, eob: str, outcome: str) -> None:
    resource = c.get(f"/ExplanationOfBenefit/{eob}").json()
    resource["outcome"] = outcome
    r = c.put(f"/ExplanationOfBenefit/{eob}", json=resource)
    assert r.status_code == 200, r.text


def _gap_totals(c: httpx.Client) -> dict[str, int]:
    """`$risk-evaluate`'s gap counts over every member of the server."""
    r = c.post("/$risk-evaluate", params={"paymentYear": str(YEAR + 1)})
    assert r.status_code == 200, r.text
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in r.json()["parameter"]}
    return {name: values[name] for name in ("openHistoricGaps", "openSuspectedGaps", "closedGaps", "pendingGaps")}


def test_a_claim_not_yet_adjudicated_makes_the_gap_pending(client: httpx.Client) -> None:
    """Da Vinci RA evidence-status `pending`: "evidence was received by the payer and is in the process of being
    evaluated" = an ExplanationOfBenefit whose outcome is queued (or partial). It counts from all sources, not as
    a claim, until adjudicated; then the stored report closes the gap. The population totals count it as
    pending (not open, not closed) the same way."""
    pid = medicare_member(client, _born(71), "male")
    before = _gap_totals(client)
    eob = claim(client, pid, codes=[(ICD, "E11.9")], day=f"{YEAR}-0{min(TODAY.month, 9)}-10", rtype="ExplanationOfBenefit")
    _set_outcome(client, eob, "queued")
    report = _reports(_bundles(_ra(client, f"Patient/{pid}"))[pid])[0]
    assert _conformance_problems(_checker(), report) == []
    gap = _gaps(report)["38"]
    assert (gap["ccType"], gap["evidenceStatus"], gap["evidence"]) == ("net-new", "pending", [f"ExplanationOfBenefit/{eob}"])
    scores = read_risk(risk(client, pid, YEAR + 1))
    assert [c["code"]["code"] for c in scores.categories] == ["38"] and scores.uplift > 0
    queued = _gap_totals(client)
    assert queued == {**before, "pendingGaps": before["pendingGaps"] + 1}
    _set_outcome(client, eob, "complete")
    assert _gap_totals(client) == {**before, "closedGaps": before["closedGaps"] + 1}
    (stored,) = _stored(client, pid)
    assert _gaps(stored)["38"]["evidenceStatus"] == "closed-gap"
    assert read_risk(risk(client, pid, YEAR + 1)).uplift == 0


def test_request_errors(client: httpx.Client) -> None:
    pid = medicare_member(client, _born(70), "female")
    for params, code in (({"subject": pid}, 400), ({"subject": "Patient/nope-x"}, 404),
                         ({"subject": f"Patient/{pid}", "periodStart": "1990-01-01", "periodEnd": "1990-12-31"}, 400),
                         ({"subject": f"Patient/{pid}", "periodEnd": "bad"}, 400),
                         ({"subject": f"Patient/{pid}", "measureId": "unknown"}, 404),
                         ({"subject": f"Patient/{pid}", "color": "red"}, 400)):
        r = client.get("/Measure/$ra.evaluate-measure", params={**PERIOD, **params})
        assert r.status_code == code, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/Measure/$ra.evaluate-measure", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": PERIOD["periodStart"]}, {"name": "periodEnd", "valueDate": PERIOD["periodEnd"]},
        {"name": "subject", "valueString": f"Patient/{pid}"}]})
    assert r.status_code == 200, r.text
    r = client.get(f"/Measure/ra-cms-hcc-v28-py{YEAR + 1}/$ra.evaluate-measure", params={**PERIOD, "subject": f"Patient/{pid}"})
    assert r.status_code == 200, r.text


def _checker() -> ProfileChecker:
    names = ("ra-measurereport", "ra-model-measure", "ra-ccType", "ra-evidenceStatus", "ra-evidenceStatusDate",
             "ra-hierarchicalStatus", "ra-dxCode", "ra-groupReference")
    return ProfileChecker([structure(n) for n in names])


def _conformance_problems(checker: ProfileChecker, report: dict[str, Any]) -> list[str]:
    problems = checker.check_against(report, structure("ra-measurereport"))
    codes = code_system_codes()
    systems = {"ra-ccType": "RiskAdjustmentConditionCategoryType", "ra-evidenceStatus": "RiskAdjustmentEvidenceStatus",
               "ra-hierarchicalStatus": "RiskAdjustmenthierarchicalStatus"}
    for g in report.get("group", []):
        for ext in g.get("extension", []):
            name = ext["url"].removeprefix(RA)
            problems += checker.check_against(ext, structure(name))
            if name in systems and ext["valueCodeableConcept"]["coding"][0]["code"] not in codes[systems[name]]:
                problems.append(f"{name}: code not in the IG's {systems[name]}")
    for e in report.get("evaluatedResource", []):
        for ext in e["extension"]:
            problems += checker.check_against(ext, structure("ra-groupReference"))
    category = report["extension"][0]["valueCodeableConcept"]["coding"][0]
    if (report["extension"][0]["url"], category["code"]) != ("http://hl7.org/fhir/StructureDefinition/measurereport-category", "ra"):
        problems.append("measurereport-category is not ra")
    return problems


def test_reports_conform_to_the_ra_profiles(client: httpx.Client) -> None:
    pid = medicare_member(client, _born(82), "female", dual="03", sopt="14")
    clinical(client, pid, "E11.22", f"{YEAR}-01-20")
    clinical(client, pid, "N18.4", f"{YEAR}-01-20")
    claimed(client, pid, ["E11.9", "I50.9"], f"{YEAR}-01-25")
    body = _ra(client, f"Patient/{pid}")
    bundle = _bundles(body)[pid]
    assert bundle["type"] == "collection" and bundle["meta"]["profile"] == [RA + "ra-measurereport-bundle"]
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient", "MeasureReport"]
    checker = _checker()
    report = _reports(bundle)[0]
    assert _conformance_problems(checker, report) == []
    assert {g["code"]["coding"][0]["system"] for g in report["group"]} == {"http://terminology.hl7.org/CodeSystem/cmshcc"}
    gaps = _gaps(report)
    assert gaps["38"]["hierarchical"] == "applied-superseded" and gaps["37"]["hierarchical"] == "applied-not-superseded"
    # Every reference resolves: the reporter, the RA Model Measure (a seeded ra-model-measure), the evidence.
    assert client.get(f"/{report['reporter']['reference']}").status_code == 200
    measure = client.get(f"/Measure/{report['measure'].rsplit('/', 1)[-1]}").json()
    assert measure["url"] == report["measure"] and checker.check_against(measure, structure("ra-model-measure")) == []
    for e in report["evaluatedResource"]:
        assert client.get(f"/{e['reference']}").status_code == 200
    # The checker catches a violation.
    broken = orjson.loads(orjson.dumps(report))
    del broken["group"][0]["extension"][0]
    broken["type"] = "summary"
    assert len(_conformance_problems(checker, broken)) >= 2


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared Da Vinci RA examples not present")
def test_ig_examples_pass_the_same_checks() -> None:
    """The checks above accept the IG's own example reports, so they test the profiles, not PlanFit's habits."""
    checker = _checker()
    names = ("MeasureReport-ra-measurereport01.json", "MeasureReport-ra-measurereport02.json",
             "MeasureReport-ra-measurereport03.json", "MeasureReport-ra-measurereport04.json")
    for name in names:
        example = orjson.loads((EXAMPLES / name).read_bytes())
        assert _conformance_problems(checker, example) == [], name
