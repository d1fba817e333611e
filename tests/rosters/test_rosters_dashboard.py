"""The dashboard's roster page in headless Chromium (Playwright driving /usr/bin/chromium): the list of
attribution lists, one roster filtered by decision and reason, decision editing (and a refusal shown with
the server's reason), locking, and the drift against the locked list and between two versions of one list.
Every figure is checked against the API's own answers."""

from __future__ import annotations

import httpx

from tests.support.auth import register_user
from tests.support.dashboard import ARTIFACTS, browser, click_and_redraw, page, sign_in_and_allow, wait_ready  # noqa: F401  (fixtures)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.rosters import REASONS, by_member_id, draft_group, make_population, parameters

PERIOD = ("valuePeriod", {"start": "2026-01-01"})


def _decide(client: httpx.Client, gid: str, patient: str, **values) -> None:
    body = parameters(patientReference=("valueReference", {"reference": f"Patient/{patient}"}), **values)
    r = client.post(f"/Group/{gid}/$member-decision", json=body)
    assert r.status_code == 200, r.text


def test_roster_page(server, client, page) -> None:  # noqa: F811
    population = make_population(client, 4)
    p = population.patients
    lists = []
    for name in ("locked", "current"):
        created = client.post("/Group", json=draft_group(population, f"{name} {population.tag}"))
        assert created.status_code == 201, created.text
        gid = created.json()["id"]
        lists.append(gid)
        for index in (0, 1, 2) if name == "locked" else (0, 1, 3):
            r = client.post(f"/Group/{gid}/$member-add", json=by_member_id(population, index, attributionPeriod=PERIOD))
            assert r.status_code == 200, r.text
        _decide(client, gid, p[1], decision=("valueCode", "excluded"),
                reason=("valueCoding", {"system": REASONS, "code": "declined"}))
    locked, current = lists
    assert client.post(f"/Group/{locked}/$confirm-attribution-list").status_code == 201

    reviewer = register_user(server, f"Practitioner/{population.practitioner}", ["*"])
    page.goto(server.url + "/app/")
    page.click("#launch-rosters")
    sign_in_and_allow(page, reviewer)
    wait_ready(page, "rosters")
    assert page.url == server.url + "/app/#rosters"
    assert page.is_visible(f"tr[data-roster='{current}']") and page.is_visible(f"tr[data-roster='{locked}']")

    page.click(f"tr[data-roster='{current}'] a")
    wait_ready(page, "roster")
    assert page.get_attribute("#roster-status", "data-value") == "draft"
    assert page.get_attribute("[data-metric='decision/excluded']", "data-value") == "1"
    assert page.get_attribute("[data-metric='decision/none']", "data-value") == "2"
    assert sorted(page.eval_on_selector_all("tr[data-member]", "rows => rows.map(r => r.dataset.member)")) == \
        sorted([p[0], p[1], p[3]])
    # Drift against the locked list: patient 3 added, patient 2 removed.
    assert page.get_attribute("[data-metric='drift/added']", "data-value") == "1"
    assert page.get_attribute("[data-metric='drift/removed']", "data-value") == "1"

    # Drift between two versions of this list: version 4 (three members added) against version 1 (empty).
    page.fill("#drift-versions input[name=from]", "1")
    page.fill("#drift-versions input[name=to]", "4")
    click_and_redraw(page, "#drift-versions button", "roster")
    page.wait_for_selector("[data-panel='drift'] h2:has-text('from version 1 to 4')")
    api = client.get(f"/Group/{current}/$roster-drift", params={"from": "1", "to": "4"}).json()
    added = [c for c in api["parameter"] if c["name"] == "change"]
    assert len(added) == 3
    assert page.get_attribute("[data-metric='drift/added']", "data-value") == "3"
    assert page.get_attribute("[data-metric='drift/decision-changed']", "data-value") == "0"
    assert sorted(page.eval_on_selector_all("tr[data-drift='added'] td:nth-child(2)", "cells => cells.map(c => c.textContent)")) \
        == sorted(f"Patient/{p[i]}" for i in (0, 1, 3))
    page.fill("#drift-versions input[name=from]", "4")
    page.fill("#drift-versions input[name=to]", "5")
    click_and_redraw(page, "#drift-versions button", "roster")
    page.wait_for_selector("[data-panel='drift'] h2:has-text('from version 4 to 5')")
    assert page.get_attribute("[data-metric='drift/decision-changed']", "data-value") == "1"  # patient 1 excluded

    # Filter by decision, then by reason.
    page.select_option("#roster-filters select[name=decision]", "excluded")
    click_and_redraw(page, "#roster-filters button", "roster")
    assert page.eval_on_selector_all("tr[data-member]", "rows => rows.map(r => r.dataset.member)") == [p[1]]
    page.select_option("#roster-filters select[name=decision]", "")
    page.select_option("#roster-filters select[name=reason]", "declined")
    click_and_redraw(page, "#roster-filters button", "roster")
    assert page.eval_on_selector_all("tr[data-member]", "rows => rows.map(r => r.dataset.member)") == [p[1]]

    # Edit a decision: pending without a deadline is refused (the server's 422 shown), then active is saved.
    page.goto(f"{server.url}/app/#roster/{current}")
    wait_ready(page, "roster")
    form = f"form[data-decide='{p[0]}']"
    page.select_option(f"{form} select[name=decision]", "pending")
    page.click(f"{form} button")
    page.wait_for_selector("#roster-error:not(:empty)")
    assert "422" in page.text_content("#roster-error") and "deadline" in page.text_content("#roster-error")
    page.select_option(f"{form} select[name=decision]", "active")
    page.select_option(f"{form} select[name=reason]", "payer-attributed")
    page.click(f"{form} button")
    page.wait_for_selector(f"tr[data-member='{p[0]}'][data-decision='active']")
    member = {m["entity"]["reference"]: m for m in client.get(f"/Group/{current}").json()["member"]}[f"Patient/{p[0]}"]
    decision = {e["url"]: e for e in member["extension"][-1]["extension"]}
    assert decision["decision"]["valueCode"] == "active" and decision["reason"]["valueCoding"]["code"] == "payer-attributed"
    assert decision["reviewer"]["valueReference"]["reference"] == f"Practitioner/{population.practitioner}"
    assert decision["recordedBy"]["valueString"] == reviewer

    # Lock: the list becomes final and the editing controls go away.
    page.click("#lock-roster")
    page.wait_for_selector("#roster-status[data-value='final']")
    assert not page.query_selector("form.decide") and not page.query_selector("#lock-roster")
    assert not page.console_errors, page.console_errors
    page.screenshot(path=str(ARTIFACTS / f"dashboard-roster-{server.kind}.png"), full_page=True)
