"""Benchmark and savings arithmetic and monthly payment assurance (SPEC §13, issue 23 item 4) over HTTP,
on SQLite and PostgreSQL.

* The worked MSSP example: 10,000 beneficiaries × a $10,000 benchmark, $95M spend, 50 % sharing →
  $2.5M shared savings; the same population at 40 % (one-sided), below the MSR, and with losses.
* A REACH capitation example: margin = PMPM received − spend, with the symmetric risk-score cap holding the
  claims-aligned score at its floor while the voluntary-aligned score is exempt.
* `server/synth/savings.py` inputs against their ground truth: the settlement, and the payment-assurance
  report for a month against a locked roster of the same patients; a roster that differs (or is not
  locked) gets no savings figure, and the report says why.
"""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from server.synth import savings as synth
from tests.support.servers import RunningServer, unique
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.rosters import draft_group, make_population

CODES = "https://planfit.dev/fhir/CodeSystem/savings"
TRIGGER = "https://planfit.dev/fhir/StructureDefinition/trigger-status"
YEAR = 2026


@pytest.fixture(scope="module")
def http(server: RunningServer):
    with server.http(server.auth, timeout=600) as client:
        yield client


def _attachment(text: str) -> dict:
    return {"contentType": "text/csv", "data": base64.b64encode(text.encode()).decode()}


def load(http: httpx.Client, aco: str, contract: dict, beneficiaries: str, claims: str) -> dict:
    params = [{"name": "aco", "valueString": aco},
              {"name": "beneficiaries", "valueAttachment": _attachment(beneficiaries)},
              {"name": "claims", "valueAttachment": _attachment(claims)}]
    params += [{"name": k, "valueString": str(v)} for k, v in contract.items()]
    r = http.post("MeasureReport/$savings-load", json={"resourceType": "Parameters", "parameter": params})
    assert r.status_code == 200, r.text
    return {p["name"]: p["valueInteger"] for p in r.json()["parameter"]}


def figures(report: dict) -> dict:
    """code → measureScore value (None when the figure has none), plus trigger statuses."""
    out = {}
    for group in report["group"]:
        code = group["code"]["coding"][0]["code"]
        status = next((e["valueCode"] for e in group.get("extension", []) if e["url"] == TRIGGER), None)
        out[code] = status if status else group.get("measureScore", {}).get("value")
    return out


def settle(http: httpx.Client, aco: str) -> dict:
    r = http.get("MeasureReport/$savings", params={"aco": aco})
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "MeasureReport"
    return figures(r.json())


def _uniform(count: int, risk: str, basis: str = "claims", prefix: str = "b") -> list[str]:
    return [f"{prefix}-{i:05d},{basis},12,{risk}" for i in range(count)]


def _claims(count: int, paid: str, prefix: str = "b") -> str:
    return "patient,service_date,received_date,paid\n" + "".join(
        f"{prefix}-{i:05d},{YEAR}-03-{i % 28 + 1:02d},{YEAR}-04-20,{paid}\n" for i in range(count))


@pytest.fixture(scope="module")
def worked_example() -> tuple[str, str]:
    """10,000 claims-aligned beneficiaries all year at risk score 1.0 (the reference year's): with a
    $10,000 base rate, a $100M benchmark."""
    return "patient,basis,months,risk_score\n" + "\n".join(_uniform(10_000, "1.0000")) + "\n", "10000"


@pytest.mark.parametrize("track, paid_each, outcome, shared, losses, msr", [
    ("basic-e", "9500.00", "shared-savings", 2_500_000, 0, 3.0),  # the worked example: 5 % > MSR 3 % at 10,000; 50 %
    ("basic-a", "9500.00", "shared-savings", 2_000_000, 0, 3.0),  # one-sided, 40 %
    ("basic-a", "9800.00", "within-corridor", 0, 0, 3.0),  # 2 % savings: below the MSR
    ("enhanced", "10600.00", "shared-losses", 0, 2_400_000, 3.0),  # 6 % losses × 40 %, under the 15 % limit
    ("basic-e", "7000.00", "shared-savings", 10_000_000, 0, 3.0),  # 30 % × 50 % = $15M, held at 10 % of the benchmark
    ("enhanced", "14000.00", "shared-losses", 0, 15_000_000, 3.0),  # 40 % × 40 % = $16M, held at 15 % of it
])
def test_mssp_worked_example(http: httpx.Client, worked_example, track, paid_each, outcome, shared, losses, msr):
    beneficiaries, base_rate = worked_example
    aco = unique("mssp")
    counts = load(http, aco, {"program": "mssp", "performanceYear": YEAR, "track": track, "baseRate": base_rate,
                              "referenceRiskScore": "1.0"}, beneficiaries, _claims(10_000, paid_each))
    assert counts == {"beneficiaries": 10_000, "claims": 10_000}
    got = settle(http, aco)
    assert got["benchmark"] == 100_000_000
    assert got["spend"] == 10_000 * float(paid_each)
    assert got["minimum-savings-rate"] == msr
    assert (got["shared-savings"], got["shared-losses"]) == (shared, losses)
    report = http.get("MeasureReport/$savings", params={"aco": aco}).json()
    assert next(g for g in report["group"] if g["code"]["coding"][0]["code"] == "shared-savings")["code"]["text"] == outcome
    csv_text = http.get("MeasureReport/$savings", params={"aco": aco}, headers={"Accept": "text/csv"}).text
    rows = {line.split(",")[0]: line.split(",")[1] for line in csv_text.strip().split("\n")[1:]}
    assert float(rows["shared-savings"]) == shared and float(rows["benchmark"]) == 100_000_000


def test_reach_capitation_example(http: httpx.Client):
    """800 claims-aligned beneficiaries at 0.90 (held at the 3 % floor of the 1.00 reference: 0.97) and 200
    voluntarily aligned at 1.10 (exempt); $12,000 a year; $1,000 PMPM received; $11.4M spent."""
    aco = unique("reach")
    rows = _uniform(800, "0.9000", prefix="c") + _uniform(200, "1.1000", "voluntary", prefix="v")
    claims = _claims(800, "11400.00", prefix="c") + _claims(200, "11400.00", prefix="v").split("\n", 1)[1]
    load(http, aco, {"program": "reach", "performanceYear": YEAR, "baseRate": "12000", "referenceRiskScore": "1.00",
                     "capitationPmpm": "1000"}, "patient,basis,months,risk_score\n" + "\n".join(rows) + "\n", claims)
    got = settle(http, aco)
    assert (got["risk-score-claims"], got["applied-risk-score-claims"]) == (0.9, 0.97)
    assert (got["risk-score-voluntary"], got["applied-risk-score-voluntary"]) == (1.1, 1.1)
    assert got["benchmark-claims"] == 800 * 12_000 * 0.97 == 9_312_000
    assert got["benchmark-voluntary"] == 200 * 12_000 * 1.1
    assert got["benchmark"] == 11_952_000 and got["savings"] == 552_000
    assert (got["capitation-received"], got["spend"], got["capitation-margin"]) == (12_000_000, 11_400_000, 600_000)


# -- synthetic ground truth and payment assurance ----------------------------------------------------------

PATIENTS = 400
REPORT_MONTH = 10


def _roster(http: httpx.Client, population, patients: list[str], final: bool = True) -> str:
    created = http.post("Group", json=draft_group(population, unique("savings-roster")))
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    members = [{"entity": {"reference": f"Patient/{p}"}, "period": {"start": f"{YEAR}-01-01"}} for p in patients]
    data = base64.b64encode(orjson.dumps({"resourceType": "Group", "type": "person", "actual": True,
                                          "member": members})).decode()
    r = http.post(f"Group/{gid}/$roster-import", json={"resourceType": "Parameters", "parameter": [
        {"name": "file", "valueAttachment": {"contentType": "application/fhir+json", "data": data}},
        {"name": "approvedBy", "valueReference": {"reference": f"Practitioner/{population.practitioner}"}}]})
    assert r.status_code == 200, r.text
    if final:
        assert http.post(f"Group/{gid}/$confirm-attribution-list").status_code == 201
    return gid


@pytest.fixture(scope="module")
def synthetic(http: httpx.Client):
    population = make_population(http, PATIENTS)
    files = synth.generate(population.patients, 2323, YEAR, REPORT_MONTH)
    aco = unique("syn")
    load(http, aco, files["contract"], files["beneficiaries"], files["claims"])
    return aco, population, files


def test_settlement_matches_the_ground_truth(http: httpx.Client, synthetic):
    aco, _population, files = synthetic
    truth = files["expected"]
    got = settle(http, aco)
    assert round(got["benchmark-claims"] * 100) == truth["benchmarkByBasis"]["claims"]
    assert round(got["benchmark-voluntary"] * 100) == truth["benchmarkByBasis"]["voluntary"]
    assert got["applied-risk-score-claims"] < got["risk-score-claims"]  # the cap bites the claims-aligned only
    assert got["applied-risk-score-voluntary"] == got["risk-score-voluntary"]
    assert round(got["benchmark"] * 100) == truth["benchmark"] and round(got["spend"] * 100) == truth["spend"]
    assert round(got["shared-savings"] * 100) == truth["sharedSavings"]


def test_payment_assurance_against_the_locked_cohort(http: httpx.Client, synthetic):
    aco, population, files = synthetic
    truth = files["expected"]["assurance"]
    locked = _roster(http, population, population.patients)
    r = http.get("MeasureReport/$payment-assurance", params={"aco": aco, "month": truth["month"],
                                                             "cohort": f"Group/{locked}"})
    assert r.status_code == 200, r.text
    report = r.json()
    got = figures(report)
    assert (got["attributed"], got["locked-cohort"], got["attributed-not-in-cohort"], got["cohort-not-attributed"]) == \
        (PATIENTS, PATIENTS, 0, 0)
    assert (got["claims-received"], got["claims-expected"]) == (truth["claimsReceived"], truth["claimsExpected"])
    assert got["claims-not-received"] == float(truth["claimsNotReceivedPercent"])
    assert round(got["provisional-benchmark"] * 100) == truth["provisionalBenchmark"]
    assert round(got["provisional-spend"] * 100) == truth["provisionalSpend"]
    assert round(got["provisional-savings"] * 100) == truth["provisionalSavings"]
    assert round(got["provisional-shared-savings"] * 100) == truth["provisionalSharedSavings"]
    assert got["trigger-cohort-match"] == "met" and got["trigger-claims-completion"] == "met"
    assert got["trigger-savings-threshold"] == "met"
    assert report["subject"] == {"reference": f"Group/{locked}"}
    issues = report["contained"][0]["issue"]
    assert issues and {i["severity"] for i in issues} == {"information"}  # open questions only
    csv_text = http.get("MeasureReport/$payment-assurance", headers={"Accept": "text/csv"},
                        params={"aco": aco, "month": truth["month"], "cohort": f"Group/{locked}"}).text
    assert csv_text.startswith("figure,value,unit,status,note\n") and "provisional-shared-savings," in csv_text

    # POST keeps the month's report of record: read back unchanged, a new version when checked again.
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco}, {"name": "month", "valueString": truth["month"]},
        {"name": "cohort", "valueReference": {"reference": f"Group/{locked}"}}]}
    kept = http.post("MeasureReport/$payment-assurance", json=body)
    assert kept.status_code == 200, kept.text
    stored = kept.json()
    assert stored["id"] == f"payment-assurance-{truth['month']}-{aco}" and stored["meta"]["versionId"] == "1"
    assert figures(stored) == got
    assert http.get(f"MeasureReport/{stored['id']}").json() == stored
    assert http.post("MeasureReport/$payment-assurance", json=body).json()["meta"]["versionId"] == "2"


def test_payment_assurance_refuses_savings_when_the_cohort_differs(http: httpx.Client, synthetic):
    aco, population, files = synthetic
    month = files["expected"]["assurance"]["month"]
    short = _roster(http, population, population.patients[3:])  # three attributed beneficiaries missing
    report = http.get("MeasureReport/$payment-assurance", params={"aco": aco, "month": month,
                                                                  "cohort": f"Group/{short}"}).json()
    got = figures(report)
    assert (got["attributed"], got["locked-cohort"], got["attributed-not-in-cohort"]) == (PATIENTS, PATIENTS - 3, 3)
    assert not [code for code in got if code.startswith("provisional-")]
    assert got["trigger-cohort-match"] == "not-met" and got["trigger-savings-threshold"] == "not-evaluated"
    errors = [i for i in report["contained"][0]["issue"] if i["severity"] == "error"]
    assert len(errors) == 1 and "does not match the locked cohort" in errors[0]["diagnostics"]
    csv_text = http.get("MeasureReport/$payment-assurance", headers={"Accept": "text/csv"},
                        params={"aco": aco, "month": month, "cohort": f"Group/{short}"}).text
    assert "provisional-" not in csv_text and "does not match the locked cohort" in csv_text

    draft = _roster(http, population, population.patients, final=False)  # same members, not locked
    report = http.get("MeasureReport/$payment-assurance", params={"aco": aco, "month": month,
                                                                  "cohort": f"Group/{draft}"}).json()
    assert not [code for code in figures(report) if code.startswith("provisional-")]
    assert any("is not final" in i["diagnostics"] for i in report["contained"][0]["issue"])


def test_bad_savings_inputs_are_refused(http: httpx.Client):
    aco = unique("bad")
    good = {"program": "mssp", "performanceYear": YEAR, "track": "basic-e", "baseRate": "10000", "referenceRiskScore": "1"}
    beneficiaries = "patient,basis,months,risk_score\nb-1,claims,13,1.0\n"

    def params(contract: dict, ben: str, claims: str) -> dict:
        return {"resourceType": "Parameters", "parameter": [
            {"name": "aco", "valueString": aco}, {"name": "beneficiaries", "valueString": ben},
            {"name": "claims", "valueString": claims}, *({"name": k, "valueString": str(v)} for k, v in contract.items())]}

    r = http.post("MeasureReport/$savings-load", json=params(good, beneficiaries, _claims(1, "1.00")))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["beneficiaries[1].months"]
    fine = "patient,basis,months,risk_score\nb-00000,claims,12,1.0\n"
    late = "patient,service_date,received_date,paid\nb-00000,2026-03-01,2026-02-01,1.00\n"
    r = http.post("MeasureReport/$savings-load", json=params(good, fine, late))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["claims[1].received_date"]
    r = http.post("MeasureReport/$savings-load", json=params({**good, "track": "basic-a", "corridor": "1.0"}, fine,
                                                             _claims(1, "1.00")))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["corridor"]
    assert http.get("MeasureReport/$savings", params={"aco": unique("none")}).status_code == 404


def test_savings_page_in_chromium(server: RunningServer, http: httpx.Client, synthetic, browser):  # noqa: F811
    """The dashboard's Savings page shows the settlement and the month's payment assurance as the API
    answers them, and the refusal (no savings figure, the reason) against a roster that differs."""
    aco, population, files = synthetic
    month = files["expected"]["assurance"]["month"]
    locked = _roster(http, population, population.patients)
    short = _roster(http, population, population.patients[1:])
    settled = figures(http.get("MeasureReport/$savings", params={"aco": aco}).json())
    page = analyst_page(server, browser, "Practitioner/savings-analyst")
    page.goto(server.url + f"/app/#savings?aco={aco}&month={month}&cohort=Group/{locked}")
    wait_ready(page, "savings")
    shown = page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                       "Number(e.dataset.value)]))")
    assert (shown["settlement/benchmark"], shown["settlement/shared-savings"]) == \
        (settled["benchmark"], settled["shared-savings"])
    assert shown["assurance/attributed"] == PATIENTS and shown["assurance/locked-cohort"] == PATIENTS
    assert page.query_selector("tr[data-figure='assurance/provisional-shared-savings']") is not None
    assert page.query_selector("#assurance-refused") is None
    page.screenshot(path=str(ARTIFACTS / f"savings-{server.kind}.png"), full_page=True)

    page.goto(server.url + f"/app/#savings?aco={aco}&month={month}&cohort=Group/{short}")
    page.wait_for_selector("#assurance-refused", timeout=60_000)
    assert "does not match the locked cohort" in page.text_content("#assurance-refused")
    assert page.query_selector("tr[data-figure='assurance/provisional-shared-savings']") is None
    assert not page.errors, page.errors
    page.context.close()
