"""The quarterly enrollment audit (`Measure/product-alignment/$audit-quarter`, issue 22 item 1) over HTTP
on both databases: a synthetic population, the previous quarter closed, then a quarter of changes made
over the API (members moved to the product recommended for them: resolved; members given an SMI
diagnosis that makes them HARP candidates: new), the current quarter closed. The reconciliation must be
exactly those changes; the CSV over HTTP, the CSV of `planfit audit-report` and the stored report agree;
the printable dashboard page is rendered in Chromium (screenshot and PDF in test-artifacts/).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys

import httpx
import pytest

from server.audit.quarter import Quarter
from tests.support.alignment import ICD, TODAY, condition, days_ago, finding, member_ids
from tests.support.auth import backend_token, register_backend, site_request
from tests.support.servers import ROOT
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, load_population, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

MEMBERS = 200
OPERATION = "/Measure/product-alignment/$audit-quarter"
CURRENT = Quarter.of(TODAY)
PREVIOUS = CURRENT.previous
CHANGED = 4  # members resolved, and members made new
LISTED = 500  # members the printable page lists per change (dashboard audit.js)


@pytest.fixture(scope="module")
def quarters(server, tmp_path_factory) -> dict:
    """Both quarters closed around a quarter of changes; what was changed, by Patient id."""
    truth = load_population(server, tmp_path_factory.mktemp("audit-population"), MEMBERS, 3333, TODAY)
    with server.http(server.auth) as c:
        ids = member_ids(c)
        ours = {ids[member]: t for member, t in truth.items()}
        previous = c.post(OPERATION, params={"quarter": str(PREVIOUS)})
        assert previous.status_code == 200, previous.text
        candidates = sorted(pid for pid, t in ours.items() if t["scenario"].startswith("harp-candidate-clinical"))
        resolved = candidates[:CHANGED]
        for pid in resolved:
            _enroll_in_harp(c, pid)
        adults = sorted(pid for pid, t in ours.items() if t["scenario"] == "mmc-aligned" and 21 <= t["age"] <= 64)
        new = adults[:CHANGED]
        for pid in new:
            condition(c, pid, [(ICD, "F20.9")], recorded=days_ago(10))
        assert len(resolved) == len(new) == CHANGED
        for pid in resolved:
            assert finding(c, pid).status == "aligned"
        for pid in new:
            assert (finding(c, pid).status, finding(c, pid).recommended) == ("misaligned", "ny-harp")
        # The same quarter closed twice: the second closing replaces the first, as a new version.
        for _ in range(2):
            current = c.post(OPERATION, json={"resourceType": "Parameters",
                                              "parameter": [{"name": "quarter", "valueString": str(CURRENT)}]})
            assert current.status_code == 200, current.text
    return {"ours": ours, "resolved": set(resolved), "new": set(new), "previous": previous.json(),
            "report": current.json()}


def _enroll_in_harp(c: httpx.Client, pid: str) -> None:
    """The member's active mainstream coverage now names the HARP plan (what a plan's enrollment update does)."""
    bundle = c.get("/Coverage", params={"beneficiary": f"Patient/{pid}", "status": "active"}).json()
    (coverage,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Coverage"]
    coverage["class"] = [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                               "code": "plan"}]}, "value": "HARP"}]
    r = c.put(f"/Coverage/{coverage['id']}", json=coverage)
    assert r.status_code == 200, r.text


def _ext(report: dict, name: str) -> list[dict]:
    return [e for e in report.get("extension", []) if e["url"].endswith("/" + name)]


def _lists(report: dict) -> dict[str, set[str]]:
    return {l["id"]: {e["item"]["reference"].split("/")[1] for e in l.get("entry", [])} for l in report["contained"]}


def _counts(report: dict) -> dict[str, int]:
    out = {}
    for e in _ext(report, "audit-reconciliation"):
        parts = {p["url"]: p for p in e["extension"]}
        out[parts["change"]["valueCode"]] = parts["count"]["valueInteger"]
    return out


def test_reconciliation_is_exactly_the_quarter_of_changes(quarters):
    ours = quarters["ours"]
    lists = {change: members & set(ours) for change, members in _lists(quarters["report"]).items()}
    before = {pid for pid in ours if ours[pid]["status"] == "misaligned"}
    assert lists["new"] == quarters["new"]
    assert lists["resolved"] == quarters["resolved"]
    assert lists["persisting"] == before - quarters["resolved"]
    every = _lists(quarters["report"])
    assert _counts(quarters["report"]) == {change: len(every[change]) for change in ("new", "resolved", "persisting")}
    # The previous quarter's own report: nothing closed before it in this database, so all of it is new.
    previous = _lists(quarters["previous"])
    assert previous["new"] & set(ours) == before and not previous["resolved"] and not previous["persisting"]


def test_stored_report_is_the_quarter_summary_with_its_strata(client, quarters):
    report = quarters["report"]
    stored = client.get(f"/MeasureReport/audit-product-alignment-{CURRENT}")
    assert stored.status_code == 200 and stored.json()["meta"]["versionId"] == "2"  # closed twice
    assert client.get(OPERATION, params={"quarter": str(CURRENT)}).json() == stored.json()
    assert report["type"] == "summary" and report["period"] == {"start": CURRENT.start.isoformat(),
                                                                 "end": CURRENT.end.isoformat()}
    assert _ext(report, "audit-previous-report")[0]["valueReference"]["reference"] == \
        f"MeasureReport/audit-product-alignment-{PREVIOUS}"
    group = report["group"][0]
    numerator = next(p["count"] for p in group["population"] if p["code"]["coding"][0]["code"] == "numerator")
    now = client.get("/Measure/product-alignment/$evaluate-measure",
                     params={"periodStart": CURRENT.start.isoformat(), "periodEnd": CURRENT.end.isoformat(),
                             "reportType": "population"}).json()
    assert numerator == next(p["count"] for p in now["group"][0]["population"]
                             if p["code"]["coding"][0]["code"] == "numerator")
    assert numerator == len(_lists(report)["new"]) + len(_lists(report)["persisting"])
    strata = {s["code"][0]["text"]: s for s in group["stratifier"]}
    assert {"enrolled-recommended", "line-of-business", "plan", "kind"} <= set(strata)
    # Line-of-business strata count what the worklist's lob filter selects.
    for stratum in strata["line-of-business"]["stratum"]:
        lob = stratum["value"]["text"]
        misaligned = next(p["count"] for p in stratum["population"] if p["code"]["coding"][0]["code"] == "numerator")
        page = client.get("/Patient/$worklist", params={"status": "misaligned", "lob": lob, "_count": "1"}).json()
        assert page["parameter"][0]["valueInteger"] == misaligned, lob


def test_csv_over_http_and_from_the_command_agree(server, client, quarters):
    http = client.get(OPERATION, params={"quarter": str(CURRENT), "_format": "csv"})
    assert http.status_code == 200 and http.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(http.text)))
    by_change = {change: {r["patient"].split("/")[1] for r in rows if r["change"] == change}
                 for change in ("new", "resolved", "persisting")}
    assert by_change == _lists(quarters["report"])
    for row in rows:
        if row["patient"].split("/")[1] in quarters["new"]:
            assert (row["enrolled_product"], row["recommended_product"], row["line_of_business"]) == \
                   ("ny-mmc", "ny-harp", "medicaid")
    env = {**os.environ, "PLANFIT_DATABASE_URL": server.database_url}
    for part in ("changes", "strata"):
        command = subprocess.run([sys.executable, "-m", "server.cli", "audit-report", "--quarter", str(CURRENT),
                                  "--part", part], cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert command.returncode == 0, command.stderr.decode()
        expected = client.get(OPERATION, params={"quarter": str(CURRENT), "_format": "csv", "part": part}).text
        assert command.stdout.decode() == expected, part  # bytes: RFC 4180 CRLF line ends kept
    strata = list(csv.DictReader(io.StringIO(expected)))
    assert strata[0]["stratifier"] == "all" and int(strata[0]["misaligned"]) == len(by_change["new"] | by_change["persisting"])


def test_refusals(server, client, quarters):
    assert client.post(OPERATION, params={"quarter": str(CURRENT.following.following)}).status_code == 400
    assert client.post(OPERATION, params={"quarter": "2026-Q3"}).status_code == 400
    assert client.post(OPERATION).status_code == 400
    assert client.get(OPERATION, params={"quarter": "2001Q1"}).status_code == 404
    stored = client.get(f"/MeasureReport/audit-product-alignment-{CURRENT}").json()
    assert client.put(f"/MeasureReport/{stored['id']}", json=stored).status_code == 405
    assert client.delete(f"/MeasureReport/{stored['id']}").status_code == 405
    scope = "system/Patient.rs system/MeasureReport.cruds"
    key = register_backend(server, scope)
    r = site_request(server, "POST", "/fhir" + OPERATION, params={"quarter": str(CURRENT)},
                     headers={"Authorization": f"Bearer {backend_token(server, key, scope)}"})
    assert r.status_code == 403, r.text


# ---- the printable page -----------------------------------------------------------------------------


def test_printable_audit_page_in_chromium(server, quarters, browser):
    page = analyst_page(server, browser, "Practitioner/audit-analyst")
    page.goto(f"{server.url}/app/#audit?quarter={CURRENT}")
    wait_ready(page, "audit")
    shown = page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                       "Number(e.dataset.value)]))")
    counts = _counts(quarters["report"])
    assert {change: shown[f"audit/{change}"] for change in counts} == counts
    listed = page.eval_on_selector_all("[data-member-change]", "els => els.map(e => [e.dataset.memberChange, "
                                                               "e.textContent.split('/')[1]])")
    # The page lists the first LISTED members of each change in the report's order (the server may hold
    # other test files' populations too) and says so when there are more.
    ordered = {l["id"]: [e["item"]["reference"].split("/")[1] for e in l.get("entry", [])]
               for l in quarters["report"]["contained"]}
    assert {change: [pid for c, pid in listed if c == change] for change in ordered} == \
        {change: members[:LISTED] for change, members in ordered.items()}
    if any(len(members) > LISTED for members in ordered.values()):
        assert page.get_by_text(f"First {LISTED} shown").count() >= 1
    page.screenshot(path=str(ARTIFACTS / f"audit-{CURRENT}-{server.kind}.png"), full_page=True)
    # Printed: the navigation and buttons are gone, the report is paginated.
    page.emulate_media(media="print")
    assert not page.is_visible("#audit-print") and not page.is_visible(".topbar")
    page.screenshot(path=str(ARTIFACTS / f"audit-{CURRENT}-{server.kind}-print.png"), full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    (ARTIFACTS / f"audit-{CURRENT}-{server.kind}.pdf").write_bytes(pdf)
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pdf.startswith(b"%PDF") and pages >= 2, pages  # figures, charts and the member lists
    assert not page.errors, page.errors
    page.context.close()
