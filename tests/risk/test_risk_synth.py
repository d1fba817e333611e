"""The synthetic risk population (`planfit synth`'s `risk/` part) over HTTP on both databases: every
member's CMS-HCC scores from claims and from all sources equal the generator's ground truth (computed by
hccinfhir), `$ra.evaluate-measure` on a Group of them gives exactly the expected gaps, `$risk-evaluate`
counts them set-based, the synthetic capitation files are accepted, and member months derived from the
population's Coverage and attribution (ATR rosters over generalPractitioner) equal the generator's count."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from server.synth.risk import MEMBER_SYSTEM, generate
from tests.support.alignment import TODAY, post_bundles
from tests.support.servers import RunningServer
from tests.support.risk import post_rosters, read_risk, risk
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.risk.test_risk_gaps import _bundles, _gaps, _reports

MEMBERS = 40


@pytest.fixture(scope="module")
def population(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("risk-population")
    # Its own prefix: the provider Organizations' member months count every member attributed to them.
    truth = generate(MEMBERS, seed=2020, out=out, as_of=TODAY, prefix="risk-synth")
    with server.http(server.auth, timeout=120) as c, \
            server.http(server.claims_auth, timeout=120) as claims:
        post_bundles(c, out / "clinical")
        post_bundles(claims, out / "claims")
        rostered = sum(1 for m in truth["members"].values() if m["rostered"])
        assert post_rosters(c, out) == rostered > 0
        ids = {}
        for ident in truth["members"]:
            found = c.get("/Patient", params={"identifier": f"{MEMBER_SYSTEM}|{ident}"}).json()["entry"]
            assert len(found) == 1
            ids[ident] = found[0]["resource"]["id"]
    return {"truth": truth, "ids": ids, "out": out}


def test_scores_equal_ground_truth(client: httpx.Client, population: dict[str, Any]) -> None:
    truth, year = population["truth"], population["truth"]["payment_year"]
    for ident, expected in truth["members"].items():
        served = read_risk(risk(client, population["ids"][ident], year))
        for basis in ("claims", "all"):
            assert served.raw[(basis, "28")] == pytest.approx(expected["scores"]["28"][basis], abs=1e-3), (ident, basis)


def test_gaps_equal_ground_truth(client: httpx.Client, population: dict[str, Any]) -> None:
    truth, ids = population["truth"], population["ids"]
    group = client.post("/Group", json={"resourceType": "Group", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/{pid}"}} for pid in ids.values()]}).json()["id"]
    r = client.get("/Measure/$ra.evaluate-measure", params={
        "periodStart": f"{truth['diagnosis_year']}-01-01", "periodEnd": f"{truth['diagnosis_year']}-12-31",
        "subject": f"Group/{group}"})
    assert r.status_code == 200, r.text[:2000]
    bundles = _bundles(r.json())
    expected_open = {"historic": 0, "suspected": 0}
    closed = 0
    for ident, expected in truth["members"].items():
        gaps = _gaps(_reports(bundles[ids[ident]])[0])
        assert {cc: [g["ccType"], g["evidenceStatus"]] for cc, g in gaps.items()} == expected["gaps"], ident
        for cc_type, status in expected["gaps"].values():
            if status == "open-gap":
                expected_open[cc_type] += 1
            else:
                closed += 1
    summary = client.post("/$risk-evaluate", params={"paymentYear": str(truth["payment_year"])})
    assert summary.status_code == 200, summary.text
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in summary.json()["parameter"]}
    # The whole server's members: this population's counts are a lower bound, exact when it is alone.
    assert values["openHistoricGaps"] >= expected_open["historic"]
    assert values["openSuspectedGaps"] >= expected_open["suspected"]
    assert values["closedGaps"] >= closed
    assert values["members"] >= MEMBERS


def test_synthetic_capitation_files_are_accepted(client: httpx.Client, population: dict[str, Any]) -> None:
    out = population["out"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "rates", "valueString": (out / "capitation_rates.csv").read_text()},
        {"name": "riskTransfers", "valueString": (out / "risk_transfers.csv").read_text()}]}
    r = client.post("/$capitation-adjustment", json=body)
    assert r.status_code == 200, r.text
    report = r.json()
    rows = (out / "capitation_rates.csv").read_text().splitlines()[1:]
    assert [len(g["stratifier"][0]["stratum"]) for g in report["group"]] == [len(rows)] * 4
    assert report["type"] == "summary"


def test_member_months_derived_from_coverage_equal_ground_truth(client: httpx.Client,
                                                                 population: dict[str, Any]) -> None:
    out, truth = population["out"], population["truth"]
    rates = (out / "capitation_rates_coverage.csv").read_text()
    r = client.post("/$capitation-adjustment", json={"resourceType": "Parameters", "parameter": [
        {"name": "rates", "valueString": rates}, {"name": "baseYear", "valueInteger": truth["diagnosis_year"] - 1}]},
        headers={"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    rows = [line.split(",") for line in r.text.splitlines()[1:] if line.startswith("non-revenue-neutral,")]
    served = {f"{row[1]}|{row[2]}": int(Decimal(row[3])) for row in rows}
    expected = {key: months[0] for key, months in truth["member_months"].items()}
    assert len(rows) == len(rates.splitlines()) - 1
    # Every rate row gets the generator's base-year count (0 where no member has that line of business).
    assert served == {key: expected.get(key, 0) for key in served}
    assert set(expected) <= set(served) and sum(expected.values()) > 0
