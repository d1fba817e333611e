"""The dashboard's risk pages in headless Chromium (Playwright driving /usr/bin/chromium), on both
databases: the capitation page computes the README's worked example through `$capitation-adjustment`
and shows the adjustment-development and year-1 / resettlement / year-2 tables with the hand-computed
figures, and a malformed file's row and field; the member page shows the two levers (product change
first) and the HCC list with gap status and evidence, as `Patient/$risk` gives them."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from tests.support.alignment import TODAY, coverage
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.risk import clinical, medicare_member, read_risk, risk, value
from tests.risk.test_risk_capitation import EXPECTED, RATES, TRANSFERS


def _shown(page) -> dict[str, float]:
    return page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                      "Number(e.dataset.value)]))")


def test_capitation_page_shows_the_worked_example(server, browser) -> None:  # noqa: F811
    page = analyst_page(server, browser, "Practitioner/capitation-analyst")
    page.goto(server.url + "/app/#capitation")
    wait_ready(page, "capitation")
    page.fill("#capitation-rates", RATES.replace("acme-ipa,medicaid,400", "acme-ipa,medicaid,abc"))
    page.click("#capitation-run")
    wait_ready(page, "capitation-error")
    assert "rates row 2, field pmpm" in page.text_content("#capitation-error")
    page.fill("#capitation-rates", RATES)
    page.fill("#capitation-transfers", TRANSFERS)
    page.click("#capitation-run")
    wait_ready(page, "capitation-result")
    shown = _shown(page)
    for approach, rows in EXPECTED.items():
        assert page.is_visible(f"[data-panel='capitation-{approach}']")
        for (provider, lob), (factor, adjusted, year1, resettlement) in rows.items():
            key = f"{approach}/{provider}/{lob}"
            assert shown[f"factor/{key}"] == pytest.approx(factor, abs=1e-6), key
            assert shown[f"adjusted/{key}"] == pytest.approx(adjusted, abs=0.005), key
            assert shown[f"year1-factor/{key}"] == pytest.approx(year1, abs=1e-6), key
            assert shown[f"resettlement/{key}"] == pytest.approx(resettlement, abs=0.005), key
        for provider in {p for p, _ in rows}:
            total = sum(r[3] for (p, _), r in rows.items() if p == provider)
            assert shown[f"resettlement/{approach}/{provider}"] == pytest.approx(total, abs=0.01)
    page.screenshot(path=str(ARTIFACTS / f"capitation-{server.kind}.png"), full_page=True)
    # Deriving every row's member months: no member names these organizations, so the server refuses.
    page.check("#capitation-derive")
    page.fill("#capitation-base-year", "2020")
    page.click("#capitation-run")
    wait_ready(page, "capitation-error")
    assert "provider acme-ipa has no base-year member months" in page.text_content("#capitation-error")
    assert not page.errors, page.errors
    page.context.close()


def test_member_page_shows_the_two_levers_and_the_hccs(server, client: httpx.Client, browser) -> None:  # noqa: F811
    """A full dual in Medicare Advantage and Medicaid with clinical-only E11.9: product change (to the D-SNP)
    first, then the RAF uplift; HCC 38 a suspected open gap with its Condition as evidence."""
    pid = medicare_member(client, date(TODAY.year - 71, 5, 5), "female", dual="02", sopt="11")
    coverage(client, pid, sopt="21")
    condition = clinical(client, pid, "E11.9", TODAY.replace(day=1).isoformat())
    served = risk(client, pid, TODAY.year + 1)
    levers = {p["name"]: value(p) for p in next(p for p in served["parameter"] if p["name"] == "levers")["part"]}
    assert levers["first"] == "product-change"

    page = analyst_page(server, browser, "Practitioner/risk-analyst")
    page.goto(server.url + f"/app/#member/{pid}")
    wait_ready(page, "member")
    page.wait_for_selector("[data-panel='member-levers']")
    order = page.eval_on_selector_all("[data-panel='member-levers'] [data-lever]", "els => els.map(e => e.dataset.lever)")
    assert order == ["product-change", "raf-uplift"]
    shown = _shown(page)
    assert shown["lever/product-change"] == pytest.approx(levers["productChangeAnnual"]["value"])
    assert shown["lever/raf-uplift"] == pytest.approx(levers["rafUpliftAnnual"]["value"])
    assert shown["risk/all"] > shown["risk/claims"]
    row = page.locator("[data-panel='member-hccs'] tr[data-hcc='38']")
    assert row.get_attribute("data-status") == "open-gap"
    assert page.is_visible(f"tr[data-hcc='38'] [data-hcc-evidence='Condition/{condition}']")
    assert [c["code"]["code"] for c in read_risk(served).categories] == \
        page.eval_on_selector_all("[data-panel='member-hccs'] tr[data-hcc]", "els => els.map(e => e.dataset.hcc)")
    page.screenshot(path=str(ARTIFACTS / f"member-risk-{server.kind}.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()
