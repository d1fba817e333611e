"""Denial root cause (`ExplanationOfBenefit/$denial-root-cause`, issue 22 item 3) over HTTP on both
databases: CARIN BB style EOBs with denied lines for members whose finding changed during the year, each
line's classification decided by the finding *on its date of service* (computed from the evidence dated
on or before it), the benefit matrix and the CARC class.
"""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from server.app import create_app
from server.config import Settings
from server.fhir import reindex
from server.store.audit_schema import audit_denied_lines
from tests.support.alignment import (
    ICD,
    born,
    condition,
    coverage,
    days_ago,
    finding,
    patient,
)
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import DATABASES, fresh_database, unique

OPERATION = "/ExplanationOfBenefit/$denial-root-cause"
DISCRIMINATOR = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
RARC = "https://x12.org/codes/remittance-advice-remark-codes"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
SMI_RECORDED = 60  # days ago: the member becomes a HARP candidate on that day


def _denial(carc: str, rarc: str | None = None) -> dict:
    reason = [{"system": CARC, "code": carc}] + ([{"system": RARC, "code": rarc}] if rarc else [])
    return {"category": {"coding": [{"system": DISCRIMINATOR, "code": "denialreason"}]}, "reason": {"coding": reason}}


def _line(sequence: int, system: str, code: str, served: str, amount: float, carc: str | None) -> dict:
    adjudication = [{"category": {"coding": [{"system": ADJUDICATION, "code": "submitted"}]},
                     "amount": {"value": amount, "currency": "USD"}}]
    if carc:
        adjudication.append(_denial(carc, "N130" if carc == "204" else None))
    return {"sequence": sequence, "productOrService": {"coding": [{"system": system, "code": code}]},
            "servicedDate": served, "adjudication": adjudication}


def eob(client, pid: str, items: list[dict], provider: str, header_carc: str | None = None) -> str:
    resource = {
        "resourceType": "ExplanationOfBenefit", "status": "active",
        "identifier": [{"system": "urn:test:claim", "value": unique("eob")}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": {"reference": f"Patient/{pid}"}, "created": days_ago(1),
        "insurer": {"display": "Test plan"}, "provider": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi",
                                                                          "value": provider}},
        "outcome": "complete", "insurance": [{"focal": True, "coverage": {"display": "Test coverage"}}],
        "item": items,
    }
    if header_carc:
        resource["adjudication"] = [_denial(header_carc)]
    r = client.post("/ExplanationOfBenefit", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def denials(server, claims_server):
    """Members, their EOBs, the expected classification of each denied line; then one run."""
    with server.http(server.auth) as c, claims_server.http(claims_server.auth) as claims:
        candidate = patient(c, born(40))  # mainstream MMC; SMI recorded 60 days ago: a HARP candidate since then
        coverage(c, candidate, plan="MMC")
        condition(c, candidate, [(ICD, "F20.9")], recorded=days_ago(SMI_RECORDED))
        mainstream = patient(c, born(35))  # mainstream, no SMI/SUD: aligned all year
        coverage(c, mainstream, plan="MMC")
        harp = patient(c, born(45))  # already in HARP with SMI: aligned
        coverage(c, harp, plan="HARP")
        condition(c, harp, [(ICD, "F31.9")], recorded=days_ago(400))
        expected: dict[tuple[str, int], str] = {}
        after, before = days_ago(30), days_ago(SMI_RECORDED + 30)
        first = eob(claims, candidate, [
            _line(1, HCPCS, "H0036", after, 120.0, "204"),  # CPST after becoming a HARP candidate
            _line(2, HCPCS, "H0036", before, 80.0, "204"),  # the same service before: not a mismatch then
            _line(3, CPT, "90837", after, 150.0, "197"),  # psychotherapy: both products cover it
            _line(4, CPT, "99213", after, 90.0, "16"),  # no benefit category
            _line(5, CPT, "99214", after, 110.0, None),  # paid
        ], provider="1234567893")
        expected.update({(first, 1): "product-mismatch", (first, 2): "other", (first, 3): "authorization",
                         (first, 4): "coding"})
        header = eob(claims, candidate, [{"sequence": 1, "productOrService": {"coding": [{"system": HCPCS, "code": "H2017"}]},
                                          "servicedDate": after, "net": {"value": 60.0, "currency": "USD"}}],
                     provider="1234567893", header_carc="CO-109")  # a header-level denial applies to its lines
        expected[(header, 1)] = "product-mismatch"
        other = eob(claims, mainstream, [_line(1, HCPCS, "H0036", after, 120.0, "204")], provider="1992753880")
        expected[(other, 1)] = "other"
        enrolled = eob(claims, harp, [_line(1, HCPCS, "H0036", after, 120.0, "197")], provider="1992753880")
        expected[(enrolled, 1)] = "authorization"
        run = c.post(OPERATION)
        assert run.status_code == 200, run.text
        assert finding(c, candidate).status == "misaligned"  # today's findings are untouched by the run
        return {"expected": expected, "report": run.json(), "candidate": candidate, "mainstream": mainstream,
                "harp": harp}


def _lines(client) -> list[dict]:
    r = client.get(OPERATION, params={"_format": "csv", "part": "lines"})
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text)))


def test_each_denied_line_is_classified_by_the_finding_on_its_date_of_service(client, denials):
    shown = {(row["eob"].split("/")[1], int(row["sequence"])): row for row in _lines(client)}
    ours = {key: row for key, row in shown.items() if key in denials["expected"]}
    assert {key: row["classification"] for key, row in ours.items()} == denials["expected"]
    candidate = [row for row in ours.values() if row["patient"] == f"Patient/{denials['candidate']}"]
    before = next(row for row in candidate if row["service_date"] == days_ago(SMI_RECORDED + 30))
    after = next(row for row in candidate if row["procedure"] == "H0036" and row != before)
    assert (before["finding_status"], before["recommended_product"]) == ("aligned", "ny-mmc")
    assert (after["finding_status"], after["recommended_product"], after["category"]) == \
           ("misaligned", "ny-harp", "bh-hcbs-core")
    assert after["carc"] == "204" and after["rarc"] == "N130" and after["submitted"] == "120.00"
    header = next(row for row in candidate if row["procedure"] == "H2017")
    assert (header["carc"], header["submitted"]) == ("109", "60.00")


def test_group_report_and_rollups(client, denials):
    group = client.get("/Group/denials-product-mismatch").json()
    members = {m["entity"]["reference"] for m in group.get("member", [])}
    assert f"Patient/{denials['candidate']}" in members
    assert f"Patient/{denials['mainstream']}" not in members and f"Patient/{denials['harp']}" not in members
    report = denials["report"]
    assert client.get(OPERATION).json()["id"] == "denial-root-cause"
    lines = _lines(client)
    strata = {s["value"]["coding"][0]["code"]: s for s in report["group"][0]["stratifier"][0]["stratum"]}
    for name, stratum in strata.items():
        mine = [row for row in lines if row["classification"] == name]
        assert stratum["population"][0]["count"] == len(mine)
        assert stratum["extension"][0]["valueMoney"]["value"] == pytest.approx(sum(float(r["submitted"]) for r in mine))
    at_stake = next(e for e in report["extension"] if e["url"].endswith("/amount-at-stake"))["valueMoney"]["value"]
    assert at_stake == pytest.approx(sum(float(r["submitted"]) for r in lines if r["classification"] == "product-mismatch"))
    by_member = {r["patient"]: r for r in csv.DictReader(io.StringIO(
        client.get(OPERATION, params={"_format": "csv", "part": "members"}).text))}
    mine = by_member[f"Patient/{denials['candidate']}"]
    assert (mine["denied_lines"], mine["denied_amount"], mine["product_mismatch_lines"], mine["product_mismatch_amount"]) \
        == ("5", "500.00", "2", "180.00")
    providers = list(csv.DictReader(io.StringIO(client.get(OPERATION, params={"_format": "csv", "part": "providers"}).text)))
    assert sum(int(r["denied_lines"]) for r in providers) == len(lines)


def test_clients_cannot_write_the_results(client, denials):
    group = client.get("/Group/denials-product-mismatch").json()
    r = client.put("/Group/denials-product-mismatch", json=group)
    assert r.status_code == 405, r.text
    assert client.delete("/MeasureReport/denial-root-cause").status_code == 405
    assert client.get(OPERATION, params={"_format": "csv", "part": "nope"}).status_code == 400


def test_denials_page_in_chromium(server, denials, browser):
    page = analyst_page(server, browser, "Practitioner/denials-analyst")
    page.goto(server.url + "/app/#denials")
    wait_ready(page, "denials")
    shown = page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                       "Number(e.dataset.value)]))")
    report = denials["report"]
    group = report["group"][0]
    assert shown["denials/lines"] == group["population"][0]["count"]
    at_stake = next(e for e in report["extension"] if e["url"].endswith("/amount-at-stake"))["valueMoney"]["value"]
    assert shown["denials/at-stake"] == pytest.approx(at_stake)
    for stratum in group["stratifier"][0]["stratum"]:
        code = stratum["value"]["coding"][0]["code"]
        assert shown[f"denials/lines/{code}"] == stratum["population"][0]["count"]
        assert shown[f"denials/amount/{code}"] == pytest.approx(stratum["extension"][0]["valueMoney"]["value"])
    page.screenshot(path=str(ARTIFACTS / f"denials-{server.kind}.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()


def test_a_run_reads_each_eob_as_it_now_is(client, claims_server, denials):
    """The denied lines are read when an EOB is written: a run after an EOB is updated or deleted classifies
    what the EOB now says (the lines of the deleted one are gone, the updated one's denial reason is new)."""
    with claims_server.http(claims_server.auth) as claims:
        served = days_ago(10)
        updated = eob(claims, denials["mainstream"], [_line(1, CPT, "99213", served, 70.0, "16")], provider="1992753880")
        deleted = eob(claims, denials["mainstream"], [_line(1, CPT, "99213", served, 40.0, "16")], provider="1992753880")
        repeated = eob(claims, denials["mainstream"], [_line(1, CPT, "99213", served, 30.0, "16"),  # one sequence twice:
                                                       _line(1, CPT, "99214", served, 35.0, "197")],  # the first is kept
                       provider="1992753880")
        assert client.post(OPERATION).status_code == 200
        shown = {(row["eob"].split("/")[1], int(row["sequence"])): row["classification"] for row in _lines(client)}
        assert (shown[(updated, 1)], shown[(deleted, 1)], shown[(repeated, 1)]) == ("coding", "coding", "coding")
        resource = claims.get(f"/ExplanationOfBenefit/{updated}").json()
        resource["item"] = [_line(1, CPT, "99213", served, 70.0, "197"), _line(2, CPT, "99214", served, 20.0, None)]
        assert claims.put(f"/ExplanationOfBenefit/{updated}", json=resource).status_code == 200
        assert claims.delete(f"/ExplanationOfBenefit/{deleted}").status_code in (200, 204)
    assert client.post(OPERATION).status_code == 200
    shown = {(row["eob"].split("/")[1], int(row["sequence"])): row["classification"] for row in _lines(client)}
    assert {key: value for key, value in shown.items() if key[0] in (updated, deleted)} == {(updated, 1): "authorization"}
    assert {key: value for key, value in shown.items() if key in denials["expected"]} == denials["expected"]


@pytest.mark.parametrize("kind", DATABASES)
def test_a_run_with_nothing_to_evaluate_answers(kind, tmp_path):
    """No denied line whose category a product change could explain (here: a new database) leaves no date to
    evaluate a finding on: the run reports zero, where it once failed with 500 (found by the OpenAPI fuzz)."""
    with fresh_database(kind, tmp_path) as url, TestClient(create_app(Settings(database_url=url, auth="off"))) as c:
        r = c.post("/fhir" + OPERATION)
        assert r.status_code == 200, r.text
        extensions = {e["url"].rsplit("/", 1)[1]: e["valueMoney"]["value"] for e in r.json()["extension"]}
        assert extensions == {"denied-amount": 0.0, "amount-at-stake": 0.0}


@pytest.mark.parametrize("kind", DATABASES)
def test_a_reindex_request_reads_every_stored_eob_again(kind, tmp_path):
    """The denied lines are kept in each EOB's write transaction; the EOBs stored before that (migration 0583)
    get theirs at the next start through a reindex request, as `planfit reindex` asks: a run then
    classifies them."""
    with fresh_database(kind, tmp_path) as url:
        settings = Settings(database_url=url, auth="off")
        with TestClient(create_app(settings), base_url="http://testserver/fhir") as c:
            pid = c.post("/Patient", json={"resourceType": "Patient", "birthDate": born(40).isoformat()}).json()["id"]
            eob(c, pid, [_line(1, CPT, "99213", days_ago(5), 50.0, "16")], provider="1992753880")
            db = c.app.state.audit_engine.db
        with db.begin() as conn:
            conn.execute(delete(audit_denied_lines))  # as a database before 0583 may hold them
        reindex.request(db, {"ExplanationOfBenefit": ["status"]})
        with TestClient(create_app(settings), base_url="http://testserver/fhir") as c:
            report = c.post(OPERATION).json()
            assert report["group"][0]["population"][0]["count"] == 1
            assert [(row["classification"], row["submitted"]) for row in _lines(c)] == [("coding", "50.00")]
