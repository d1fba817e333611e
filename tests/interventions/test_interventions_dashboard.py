"""The dashboard's care-management page in headless Chromium (Playwright driving /usr/bin/chromium): a care
manager signs in, opens a roster's priority list for a week (the page makes it with
List/$intervention-priority; its rows are the stored List's, in order), sees "my Tasks" (open Tasks owned by
their Practitioner) and updates a Task's status, which the API then serves."""

from __future__ import annotations

import httpx
import pytest

from server.interventions.checks import TYPE_SYSTEM
from tests.support.auth import register_user
from tests.support.servers import RunningServer
from tests.support.dashboard import ARTIFACTS, browser, page, sign_in_and_allow, wait_ready  # noqa: F401  (fixtures)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.interventions import entry_values, load


def _task(client: httpx.Client, owner: str, patient: str, due: str, list_id: str | None = None) -> str:
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": TYPE_SYSTEM, "code": "outreach-call", "display": "Outreach call"}]},
            "for": {"reference": f"Patient/{patient}"}, "owner": {"reference": owner},
            "restriction": {"period": {"end": due}}}
    if list_id:
        task["focus"] = {"reference": f"List/{list_id}"}
    r = client.post("/Task", json=task)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_care_management_page(server: RunningServer, client: httpx.Client, page, tmp_path) -> None:  # noqa: F811
    loaded = load(server, client, tmp_path, members=16, seed=7)
    anna = client.post("/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Care-Anna"}]}).json()["id"]
    owner = f"Practitioner/{anna}"
    patients = list(loaded.ids.values())
    first, second = _task(client, owner, patients[0], "2026-06-22"), _task(client, owner, patients[1], "2026-06-29")
    _task(client, "Practitioner/someone-else", patients[2], "2026-06-22")

    user = register_user(server, owner, ["*"])
    page.goto(server.url + "/app/")
    page.click("#launch-interventions")
    sign_in_and_allow(page, user)
    wait_ready(page, "interventions")
    assert page.url == server.url + "/app/#interventions"
    page.fill("#priority-form input[name=roster]", loaded.roster)
    page.fill("#priority-form input[name=week]", loaded.truth["week"])
    page.click("#priority-form button")
    page.wait_for_selector("section[data-panel='priority']", timeout=60_000)
    assert page.get_attribute("section[data-panel='priority']", "data-list"), page.text_content("main")

    list_id = page.get_attribute("section[data-panel='priority']", "data-list")
    stored = client.get(f"/List/{list_id}").json()
    entries = [entry_values(e) for e in stored["entry"]]
    assert page.eval_on_selector_all("tr[data-entry]", "rows => rows.map(r => r.dataset.entry)") == \
        [e["patient"] for e in entries]
    assert page.eval_on_selector_all("tr[data-entry]", "rows => rows.map(r => r.dataset.tier)") == [e["tier"] for e in entries]
    high = sum(e["tier"] == "high" for e in entries)
    assert page.get_attribute("[data-metric='priority/high']", "data-value") == str(high)

    # My Tasks: Anna's two open Tasks, earliest due first; not the other care manager's.
    assert page.eval_on_selector_all("tr[data-task]", "rows => rows.map(r => r.dataset.task)") == [first, second]
    page.select_option(f"tr[data-task='{first}'] select[name=status]", "in-progress")
    page.click(f"tr[data-task='{first}'] button")
    page.wait_for_selector(f"tr[data-task='{first}'][data-status='in-progress']")
    assert client.get(f"/Task/{first}").json()["status"] == "in-progress"
    page.select_option(f"tr[data-task='{second}'] select[name=status]", "completed")
    page.click(f"tr[data-task='{second}'] button")
    page.wait_for_selector(f"tr[data-task='{second}']", state="detached")
    assert client.get(f"/Task/{second}").json()["status"] == "completed"
    assert page.get_attribute("[data-metric='tasks/open']", "data-value") == "1"
    assert not page.console_errors, page.console_errors
    page.screenshot(path=str(ARTIFACTS / f"dashboard-interventions-{server.kind}.png"), full_page=True)


@pytest.fixture
def client(server: RunningServer):
    with server.http(server.auth, timeout=120) as c:
        yield c
