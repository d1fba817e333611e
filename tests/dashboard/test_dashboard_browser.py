"""The dashboard at /app/ in headless Chromium (Playwright driving /usr/bin/chromium), on a server
holding a synthetic population.

Population view: standalone launch → login → consent, then every figure on the page must equal the
product-alignment and nonclaims-bh-dx MeasureReports and the cohort Group histories that the test
fetches from the API itself. Member view: an EHR launch for a misaligned member with a non-claims
diagnosis, checked against that member's `$alignment`. Pages must run under their own strict CSP
(a violation is a console error). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from server.cohorts.definitions import CANDIDATES_PREFIX, COHORT_IDS
from server.dashboard.client import DASHBOARD_CLIENT_ID
from tests.support.alignment import TODAY, finding
from tests.support.auth import (
    auth_store,
    authorize_params,
    backend_token,
    pkce,
    register_backend,
    register_user,
    site_request,
)
from tests.support.dashboard import browser, page  # noqa: F401  (fixtures)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.dashboard import (
    ARTIFACTS,
    as_number,
    expected_alignment,
    expected_categories,
    expected_cohorts,
    expected_impact,
    load_population,
    patient_id,
    shown_metrics,
    sign_in_and_allow,
    wait_ready,
)

MEMBERS = 200
CANDIDATES = tuple(c for c in COHORT_IDS if c.startswith(CANDIDATES_PREFIX))
RA = "http://hl7.org/fhir/us/davinci-ra/StructureDefinition/"


@pytest.fixture(scope="module")
def truth(server, tmp_path_factory) -> dict:
    return load_population(server, tmp_path_factory.mktemp("dashboard-population"), MEMBERS, 9090, TODAY)


def _period() -> dict[str, str]:
    year = datetime.now(tz=timezone.utc).year
    return {"periodStart": f"{year}-01-01", "periodEnd": f"{year}-12-31"}


def _summary(client: httpx.Client, measure: str, **extra: str) -> dict:
    r = client.get(f"/Measure/{measure}/$evaluate-measure", params={**_period(), "reportType": "population", **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_page_is_served_with_a_strict_csp(server):
    r = site_request(server, "GET", "/app/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "<script" not in r.text.replace('<script type="module" src="assets/app.js"></script>', "")
    assert site_request(server, "GET", "/app/assets/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_dashboard_client_is_registered_with_exact_redirect_uris(server):
    client = auth_store(server.database_url).get_client(DASHBOARD_CLIENT_ID)
    assert client is not None and client.public and client.jwks is None
    assert f"{server.url}/app/" in client.redirect_uris
    assert all(uri.endswith("/app/") for uri in client.redirect_uris)
    assert not any(s.startswith("system/") or s.endswith((".cruds", ".write")) for s in client.scope.split())
    _verifier, challenge = pkce()
    r = site_request(server, "GET", "/auth/authorize", params=authorize_params(
        server, DASHBOARD_CLIENT_ID, "openid user/*.rs", challenge, "s", redirect_uri=f"{server.url}/app/elsewhere"))
    assert r.status_code == 400 and "location" not in r.headers  # shown as a page, never redirected


def test_population_view_shows_the_measure_reports(server, truth, client, page):
    analyst = register_user(server, "Practitioner/dashboard-analyst", ["*"])
    page.goto(server.url + "/app/")
    page.click("#launch-population")
    sign_in_and_allow(page, analyst)
    wait_ready(page, "population")
    assert page.url == server.url + "/app/#population"  # the code left the address bar
    shown = shown_metrics(page)

    patients = client.get("/Patient", params={"_summary": "count"}).json()["total"]
    alignment, nonclaims = _summary(client, "product-alignment"), _summary(client, "nonclaims-bh-dx")
    candidates = {c: _summary(client, "product-alignment", subject=f"Group/{c}") for c in CANDIDATES}
    expected = {**expected_alignment(alignment, patients), **expected_categories(nonclaims),
                **expected_impact(candidates), **expected_cohorts(client)}
    # The synthetic population has misaligned members and non-claims diagnoses of both categories.
    misaligned = sum(1 for member in truth.values() if member["status"] == "misaligned")
    assert expected["product-alignment/numerator"] >= misaligned > 0
    assert expected["category/smi"] > 0 and expected["category/sud"] > 0 and expected["cohort/misaligned"] > 0
    assert sum(v for k, v in expected.items() if k.startswith("flow/")) == expected["product-alignment/numerator"]
    wrong = {key: (value, shown.get(key)) for key, value in expected.items()
             if key not in shown or abs(as_number(shown[key]) - value) > 0.5}
    assert not wrong, wrong
    assert set(shown) == set(expected), set(shown) ^ set(expected)
    assert not page.console_errors, page.console_errors
    page.screenshot(path=str(ARTIFACTS / f"dashboard-population-{server.kind}.png"), full_page=True)

    # Drill down: the analyst opens a misaligned member by id.
    member = next(ident for ident, m in sorted(truth.items()) if m["status"] == "misaligned")
    page.fill("input[name=patient]", patient_id(client, member))
    page.click("form.open button")
    wait_ready(page, "member")
    assert page.get_attribute("[data-member='status']", "data-value") == "misaligned"
    assert page.get_attribute("[data-member='recommended']", "data-value") == truth[member]["recommended_product"]

    # A HARP referral candidate: the member page lists the risk factors its claims show (SPEC §4.3), each
    # with its figure, threshold, whether it is met, and the claims, as $alignment gives them.
    candidate = next(ident for ident, m in sorted(truth.items()) if m["risk_factors"])
    pid = patient_id(client, candidate)
    page.evaluate("id => { location.hash = '#member/' + id }", pid)  # the address a user would open
    page.wait_for_function("id => document.querySelector(\"[data-panel='member-risk-factors']\") && "
                           "document.querySelector('main').textContent.includes('Patient/' + id)", arg=pid, timeout=60_000)
    wait_ready(page, "member")
    factors = [p for p in finding(client, pid).raw["parameter"] if p["name"] == "riskFactor"]
    expected = {}
    for p in factors:
        parts = {x["name"]: x for x in p["part"]}
        figure = next(v for k, v in (parts.get("days") or parts["months"]).items() if k.startswith("value"))
        expected[parts["code"]["valueCode"]] = (str(figure), str(parts["threshold"]["valueInteger"]),
                                                str(parts["met"]["valueBoolean"]).lower(),
                                                sorted(x["valueReference"]["reference"] for x in p["part"]
                                                       if x["name"] == "evidence"))
    shown = page.eval_on_selector_all(
        "tr[data-risk-factor]", "rows => rows.map(r => [r.dataset.riskFactor, [r.dataset.value, "
                                "r.querySelector('[data-threshold]').dataset.threshold, r.dataset.met, "
                                "[...r.querySelectorAll('[data-risk-evidence]')].map(e => e.dataset.riskEvidence).sort()]])")
    assert expected and {code: tuple(v) for code, v in shown} == expected
    assert {code: int(v[0]) for code, v in expected.items()} == truth[candidate]["risk_factors"]


def test_member_view_after_ehr_launch(server, truth, client, page):
    member = next(ident for ident, m in sorted(truth.items())
                  if m["status"] == "misaligned" and m["recommended_product"] == "ny-harp" and m["non_claims_categories"])
    pid = patient_id(client, member)
    doctor = register_user(server, "Practitioner/dashboard-doctor", [pid])
    ehr = register_backend(server, "system/Patient.rs launch")
    r = site_request(server, "POST", "/auth/launch", json={"patient": pid, "client_id": DASHBOARD_CLIENT_ID},
                     headers={"Authorization": f"Bearer {backend_token(server, ehr, 'system/Patient.rs launch')}"})
    assert r.status_code == 200, r.text
    launch = r.json()
    page.goto(f"{server.url}/app/?{httpx.QueryParams(iss=launch['iss'], launch=launch['launch'])}")
    sign_in_and_allow(page, doctor)
    wait_ready(page, "member")
    assert page.url == f"{server.url}/app/#member/{pid}"

    f = finding(client, pid)
    assert f.status == "misaligned"

    def member_value(key: str) -> str | None:
        return page.get_attribute(f"[data-member='{key}']", "data-value")

    assert member_value("status") == "misaligned"
    assert (member_value("enrolled"), member_value("recommended")) == (f.enrolled, f.recommended)
    # The plans named (empty when the enrolled plan is unknown) and the enrolled rate cell's parts.
    assert (member_value("enrolled-plan"), member_value("recommended-plan")) == (f.enrolled_plan or "",
                                                                                 f.recommended_plan or "")
    cell = next(p for p in f.raw["parameter"] if p["name"] == "rateCell"
                and any(x["name"] == "role" and x["valueCode"] == "enrolled" for x in p["part"]))
    assert member_value("enrolled-rate-cell") == "/".join(
        x["valueCode"] for x in cell["part"] if x["name"] in ("product", "region", "segment", "aidCategory", "ageBand"))
    assert as_number(member_value("impact")) == pytest.approx(f.impact)
    # Non-claims diagnoses: the open coding gaps of the individual nonclaims-bh-dx report, with their evidence.
    r = client.get("/Measure/nonclaims-bh-dx/$evaluate-measure",
                   params={**_period(), "reportType": "subject", "subject": f"Patient/{pid}"})
    assert r.status_code == 200, r.text
    report = r.json()
    gaps = {g["id"]: sorted(e["reference"] for e in report.get("evaluatedResource", [])
                            if {"url": f"{RA}ra-groupReference", "valueString": g["id"]} in e.get("extension", []))
            for g in report["group"][1:]}
    assert page.get_attribute("[data-panel='member-nonclaims']", "data-source") == "measure-report"
    shown_gaps = page.eval_on_selector_all(
        "tr[data-gap]", "rows => rows.map(r => [r.dataset.gap, [...r.querySelectorAll('[data-gap-evidence]')]"
                        ".map(e => e.dataset.gapEvidence).sort()])")
    assert dict(shown_gaps) == gaps and sorted(gaps) == sorted(f.non_claims) and all(gaps.values())
    shown_criteria = page.eval_on_selector_all(
        "tr[data-eligible]", "rows => rows.map(r => [r.dataset.eligible, [...r.querySelectorAll('[data-criterion]')]"
                             ".map(c => c.dataset.criterion).sort()])")
    assert {p: sorted(c) for p, c in shown_criteria} == {p: sorted(f"{n}={v}" for n, v in f.criteria(p)) for p in f.eligible}
    shown_evidence = page.eval_on_selector_all(
        "tr[data-evidence]", "rows => rows.map(r => [r.dataset.category, r.dataset.evidence, "
                             "r.querySelector('[data-date]').dataset.date, r.querySelector('[data-source-kind]').textContent])")
    evidence = [[c, e["resource"], e["date"], e["sourceKind"]] for c, cat in f.categories.items() for e in cat["evidence"]]
    assert sorted(shown_evidence) == sorted(evidence) and any(e[3] == "clinical" for e in evidence)
    shown_grades = page.eval_on_selector_all("tr[data-evidence] [data-grade]", "tags => tags.map(t => t.dataset.grade)")
    assert sorted(shown_grades) == sorted(e["grade"] for cat in f.categories.values() for e in cat["evidence"])
    assert page.get_attribute("[data-member='kind']", "data-value") == f.kind
    assert not page.console_errors, page.console_errors
    page.screenshot(path=str(ARTIFACTS / f"dashboard-member-{server.kind}.png"), full_page=True)


def test_launch_from_another_server_is_refused(server, page):
    page.goto(f"{server.url}/app/?{httpx.QueryParams(iss='https://fhir.example.org/fhir', launch='x')}")
    wait_ready(page, "error")
    assert page.url.startswith(server.url + "/app/")  # nothing was sent to the other server
    assert "only works with " + server.fhir in page.text_content("#error")
