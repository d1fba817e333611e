"""Helpers of the dashboard browser test: a synthetic population loaded over HTTP, the SMART login
driven in the browser, and the figures the dashboard must show, computed from the API's own answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.synth import MEMBER_SYSTEM, generate
from server.cohorts.definitions import COHORT_IDS
from tests.support.alignment import post_bundles
from tests.support.auth import CHROMIUM, CHROMIUM_ARGS, PASSWORD, register_user, require_browser
from tests.support.servers import ROOT, RunningServer

FHIR_JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
ARTIFACTS = ROOT / "test-artifacts"


# ---- data -----------------------------------------------------------------------------------------


def load_population(server: RunningServer, out: Path, members: int, seed: int, as_of) -> dict[str, dict[str, Any]]:
    """Generate a synthetic population, post its bundles (clinical and claims feeds as their own
    clients) and return its ground truth by member identifier."""
    generate(members, seed=seed, out=out, as_of=as_of)
    for feed, auth in (("clinical", server.auth), ("claims", server.claims_auth)):
        with server.http(auth, headers=FHIR_JSON, timeout=600) as c:
            post_bundles(c, out / feed)
    return orjson.loads((out / "ground_truth.json").read_bytes())["members"]


def patient_id(client: httpx.Client, member: str) -> str:
    bundle = client.get("/Patient", params={"identifier": f"{MEMBER_SYSTEM}|{member}"}).json()
    (entry,) = [e for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Patient"]
    return entry["resource"]["id"]


# ---- browser --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (import this fixture into a test module to use it)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context collecting script errors and CSP violations (which Chromium reports
    as console errors "Refused to ... Content Security Policy ...")."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda m: tab.console_errors.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("pageerror", lambda e: tab.console_errors.append(str(e)))
    yield tab
    context.close()

def analyst_page(server: RunningServer, browser, fhir_user: str, **context_options):
    """A fresh page signed in through the population launch as a new analyst who may see every patient;
    `page.errors` collects script errors and CSP violations (Chromium's console errors about them)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, **context_options)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url + "/app/")
    page.click("#launch-population")
    sign_in_and_allow(page, register_user(server, fhir_user, ["*"]))
    wait_ready(page, "population")
    return page


def sign_in_and_allow(page, username: str) -> None:
    """The server's login and consent pages, as a user fills them in."""
    page.wait_for_selector("#username", timeout=30_000)
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#allow", timeout=30_000)
    page.click("#allow")


def wait_ready(page, view: str) -> None:
    """Wait until the app has drawn `view` (or its error page); fail showing the page if it is another."""
    page.wait_for_selector(f"body[data-ready='{view}'], body[data-ready='error']", timeout=60_000)
    assert page.get_attribute("body", "data-ready") == view, page.text_content("main")


def click_and_redraw(page, selector: str, view: str) -> None:
    """Click what redraws the current `view` (a filter, a form that changes the address) and wait for the new
    drawing. The app clears `data-ready` only when the hashchange event arrives, after the click returns, so
    the old drawing's marker is cleared first: otherwise `wait_ready` could match it."""
    page.evaluate("document.body.dataset.ready = ''")
    page.click(selector)
    wait_ready(page, view)


def shown_metrics(page) -> dict[str, str]:
    """Every figure on the page: data-metric key → the text the user sees."""
    return page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, e.textContent]))")


def as_number(text: str) -> float:
    """'$1,234' / '1,234' / '-$56' → the number."""
    cleaned = re.sub(r"[^0-9.\-]", "", text)
    return float(cleaned)


# ---- the figures the API gives ----------------------------------------------------------------------


def _code(concept: dict[str, Any] | None) -> str:
    concept = concept or {}
    return next((c["code"] for c in concept.get("coding", []) if c.get("code")), concept.get("text", ""))


def _stratifier_name(stratifier: dict[str, Any]) -> str:
    return ",".join(_code(c) for c in stratifier.get("code", []))


def _impact(element: dict[str, Any]) -> float | None:
    return next((e["valueMoney"]["value"] for e in element.get("extension", [])
                 if e["url"].endswith("/estimated-annual-impact")), None)


def _counts(element: dict[str, Any]) -> dict[str, int]:
    return {_code(p["code"]): p.get("count", 0) for p in element.get("population", [])}


def _strata(group: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The strata of the group's stratifier `name` (its code text)."""
    (stratifier,) = [s for s in group.get("stratifier", []) if _stratifier_name(s) == name]
    return stratifier.get("stratum", [])


def expected_alignment(report: dict[str, Any], patients: int) -> dict[str, float]:
    """What the population view must show of the product-alignment summary MeasureReport (and the
    number of Patients: those outside its initial population have no active coverage)."""
    group = report["group"][0]
    counts = _counts(group)
    expected: dict[str, float] = {
        "product-alignment/initial-population": counts["initial-population"],
        "product-alignment/numerator": counts["numerator"],
        "status/not-evaluable": max(0, patients - counts["initial-population"]),
    }
    if _impact(report) is not None:
        expected["product-alignment/impact"] = _impact(report)
    for stratum in _strata(group, "status"):
        expected[f"status/{_code(stratum['value'])}"] = _counts(stratum)["initial-population"]
    for name in ("enrolled-product", "recommended-product"):
        for stratum in _strata(group, name):
            expected[f"{name.replace('-', ' ')}/{_code(stratum['value'])}"] = _counts(stratum)["numerator"]
    for stratum in _strata(group, "enrolled-recommended"):
        pair = {_code(c["code"]): _code(c["value"]) for c in stratum["component"]}
        if _counts(stratum)["numerator"]:
            expected[f"flow/{pair['enrolled-product']}>{pair['recommended-product']}"] = _counts(stratum)["numerator"]
    return expected


def expected_impact(reports: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Impact and misaligned members of each candidate cohort (Group-scoped summary reports)."""
    expected: dict[str, float] = {}
    for cohort, report in reports.items():
        expected[f"impact/{cohort}"] = _impact(report) or 0
        expected[f"impact-members/{cohort}"] = _counts(report["group"][0])["numerator"]
    return expected


def expected_categories(report: dict[str, Any]) -> dict[str, float]:
    """What the population view must show of the nonclaims-bh-dx summary MeasureReport."""
    group = report["group"][0]
    expected: dict[str, float] = {"nonclaims-bh-dx/numerator": _counts(group)["numerator"]}
    for stratum in _strata(group, "category"):
        expected[f"category/{_code(stratum['value'])}"] = _counts(stratum)["numerator"]
        expected[f"category-all/{_code(stratum['value'])}"] = _counts(stratum)["initial-population"]
    return expected


def expected_cohorts(client: httpx.Client) -> dict[str, float]:
    """Current size and number of versions of each cohort Group, from its history."""
    expected: dict[str, float] = {}
    for cohort in COHORT_IDS:
        r = client.get(f"/Group/{cohort}/_history", params={"_count": 100})
        assert r.status_code == 200, r.text
        versions = [e["resource"] for e in r.json().get("entry", []) if e.get("resource")]
        latest = max(versions, key=lambda g: int(g["meta"]["versionId"]))
        expected[f"cohort/{cohort}"] = latest["quantity"]
        expected[f"cohort-versions/{cohort}"] = r.json()["total"]
    return expected
