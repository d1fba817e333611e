"""The worklist (`GET /fhir/Patient/$worklist`, issue 22 item 4) over HTTP on both databases, against a
synthetic population's ground truth, and its dashboard page in Chromium.

Other test modules may share the server, so the checks that use the ground truth look at this
population's members only; the paging and filter checks hold for whatever the server holds.
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.support.alignment import TODAY, member_ids
from tests.support.auth import backend_token, register_backend, site_request
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, load_population, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

MEMBERS = 300
WITH_FINDINGS = ("misaligned", "review")
WORKLIST = "/Patient/$worklist"


@pytest.fixture(scope="module")
def truth(server, tmp_path_factory) -> dict:
    return load_population(server, tmp_path_factory.mktemp("worklist-population"), MEMBERS, 2222, TODAY)


@pytest.fixture(scope="module")
def ours(server, truth) -> dict[str, dict]:
    """Patient id → ground truth, for this population's members."""
    with server.http(server.auth) as c:
        ids = member_ids(c)
    return {ids[member]: expected for member, expected in truth.items()}


def _value(part: dict):
    return next(v for k, v in part.items() if k.startswith("value"))


def rows_of(body: dict) -> list[dict]:
    """Each member of a worklist page as {name: value or [values]}."""
    rows = []
    for p in body["parameter"]:
        if p["name"] != "member":
            continue
        row: dict = {"reason": [], "lineOfBusiness": [], "plan": [], "category": [], "nonClaims": [], "source": []}
        for part in p["part"]:
            if part["name"] == "category":
                code = _value(part["part"][0])
                row["category"].append(code)
                if _value(part["part"][1]):
                    row["nonClaims"].append(code)
            elif part["name"] in row:
                row[part["name"]].append(_value(part))
            else:
                row[part["name"]] = _value(part)
        row["id"] = row["subject"]["reference"].split("/")[1]
        row["impact"] = row.get("estimatedAnnualImpact", {}).get("value")
        rows.append(row)
    return rows


def _param(body: dict, name: str):
    return next((_value(p) for p in body["parameter"] if p["name"] == name), None)


def every_page(c: httpx.Client, count: int = 37, **filters: str) -> tuple[int, list[dict]]:
    """(total, rows) following the next cursors; every page must report the same total."""
    rows, cursor, totals = [], None, set()
    while True:
        params = {**filters, "_count": str(count), **({"_cursor": cursor} if cursor else {})}
        r = c.get(WORKLIST, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        totals.add(_param(body, "total"))
        rows += rows_of(body)
        cursor = _param(body, "next")
        if cursor is None:
            break
    (total,) = totals
    return total, rows


def _sort_key(row: dict) -> tuple:
    return (row["impact"] is not None, row["impact"] or 0, row["id"])


def test_pages_cover_the_members_with_findings_in_impact_order(client, ours):
    total, rows = every_page(client)
    assert total == len(rows) and len({r["id"] for r in rows}) == len(rows)
    assert rows == sorted(rows, key=_sort_key, reverse=True)  # impact high to low, then id, no null first
    listed = {r["id"]: r for r in rows if r["id"] in ours}
    expected = {pid for pid, t in ours.items() if t["status"] in WITH_FINDINGS}
    assert set(listed) == expected and expected
    for pid, row in listed.items():
        t = ours[pid]
        assert (row["status"], row.get("enrolledProduct"), row.get("recommendedProduct")) == \
               (t["status"], t["enrolled_product"], t["recommended_product"]), pid
        assert sorted(row["nonClaims"]) == sorted(t["non_claims_categories"]), pid
    assert any(r["impact"] is not None for r in listed.values())


def test_a_walk_of_the_index_and_a_sort_of_the_matches_give_the_same_pages(client):
    """Pages of 2 walk the index (matches are many per row of the page), pages of 500 sort every match
    (`DENSE_MATCHES`): the same members in the same order."""
    everyone = "misaligned,review,aligned,not-evaluable"
    walked, sorted_ = every_page(client, 2, status=everyone), every_page(client, 500, status=everyone)
    assert walked == sorted_ and walked[0] >= 20 * (2 + 1)


@pytest.mark.parametrize("filters", [
    {"status": "misaligned", "recommended": "ny-harp"},
    {"status": "misaligned,review,aligned", "enrolled": "ma,ny-mmc"},
    {"status": "review"},
])
def test_product_and_status_filters_match_the_ground_truth(client, ours, filters):
    statuses = filters["status"].split(",")
    total, rows = every_page(client, **filters)
    assert total == len(rows)
    listed = {r["id"] for r in rows if r["id"] in ours}
    expected = {pid for pid, t in ours.items() if t["status"] in statuses
                and (t["recommended_product"] or "") in filters.get("recommended", t["recommended_product"] or "").split(",")
                and (t["enrolled_product"] or "") in filters.get("enrolled", t["enrolled_product"] or "").split(",")}
    assert listed == expected and expected


@pytest.mark.parametrize("name,field", [("kind", "reason"), ("lob", "lineOfBusiness"), ("plan", "plan"),
                                        ("category", "category"), ("source", "source")])
def test_member_detail_filters_select_the_rows_that_show_the_value(client, name, field):
    """A filter on coverages, categories, evidence or reasons (EXISTS probes and LIKE) selects exactly the
    members whose row (read by other queries) shows that value."""
    _total, everyone = every_page(client, status="misaligned,review,aligned,not-evaluable")
    values = sorted({v for r in everyone for v in r[field]})
    assert values, field
    for value in values[:4]:
        total, rows = every_page(client, status="misaligned,review,aligned,not-evaluable", **{name: value.lower()})
        expected = [r["id"] for r in everyone if value.lower() in {v.lower() for v in r[field]}]  # plans: any case
        assert [r["id"] for r in rows] == expected and total == len(expected), (name, value)


def test_csv_is_the_page_shown(client):
    params = {"status": "misaligned,review", "_count": "25"}
    body = client.get(WORKLIST, params=params).json()
    r = client.get(WORKLIST, params={**params, "_format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    rows = rows_of(body)
    assert [t["patient"] for t in table] == [f"Patient/{row['id']}" for row in rows]
    assert [t["status"] for t in table] == [row["status"] for row in rows]
    assert [float(t["annual_impact"]) if t["annual_impact"] else None for t in table] == [row["impact"] for row in rows]
    by_accept = client.get(WORKLIST, params=params, headers={"Accept": "text/csv"})
    assert by_accept.text == r.text


@pytest.mark.parametrize("params", [{"status": "lost"}, {"kind": "nope"}, {"_count": "0"}, {"_count": "501"},
                                    {"_cursor": "abc"}, {"_sort": "name"}, {"colour": "red"}, {"enrolled": ""}])
def test_bad_parameters_are_refused(client, params):
    r = client.get(WORKLIST, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_token_missing_a_type_or_confined_by_a_filter_is_refused(server):
    every_other = "system/Patient.rs system/Coverage.rs system/Claim.rs system/ExplanationOfBenefit.rs"
    for scope in ("system/Patient.rs", f"{every_other} system/Condition.rs?category=problem-list-item"):
        key = register_backend(server, scope)
        r = site_request(server, "GET", "/fhir" + WORKLIST,
                         headers={"Authorization": f"Bearer {backend_token(server, key, scope)}"})
        assert r.status_code == 403, (scope, r.text)


# ---- the dashboard page -----------------------------------------------------------------------------


def _shown_ids(page) -> list[str]:
    return page.eval_on_selector_all("tr[data-patient]", "rows => rows.map(r => r.dataset.patient)")


def wait_for_rows(page, body: dict) -> list[str]:
    """Wait until the page shows the members of this API answer, in its order (after a hash change the
    previous page stays up until the new one is drawn)."""
    ids = [r["id"] for r in rows_of(body)]
    page.wait_for_function("ids => document.body.dataset.ready === 'worklist' && JSON.stringify("
                           "[...document.querySelectorAll('tr[data-patient]')].map(r => r.dataset.patient)) === "
                           "JSON.stringify(ids)", arg=ids, timeout=30_000)
    return ids


def test_worklist_page_in_chromium(server, client, ours, browser):
    page = analyst_page(server, browser, "Practitioner/worklist-analyst", accept_downloads=True)
    page.click("#tabs a[data-tab='worklist']")
    wait_ready(page, "worklist")

    first = client.get(WORKLIST, params={"_count": "50"}).json()
    assert _shown_ids(page) == [r["id"] for r in rows_of(first)]
    assert int(page.get_attribute("#worklist-total", "data-value")) == _param(first, "total")

    # Filter by recommended product through the form; the page shows what the API answers for it.
    page.select_option("select[name=recommended]", "ny-harp")
    page.select_option("select[name=status]", "misaligned")
    page.click("#apply-filters")
    page.wait_for_url("**#worklist?status=misaligned&recommended=ny-harp")
    filtered = client.get(WORKLIST, params={"status": "misaligned", "recommended": "ny-harp", "_count": "50"}).json()
    shown = wait_for_rows(page, filtered)
    assert shown and int(page.get_attribute("#worklist-total", "data-value")) == _param(filtered, "total")
    assert {ours[pid]["recommended_product"] for pid in shown if pid in ours} == {"ny-harp"}
    page.screenshot(path=str(ARTIFACTS / f"worklist-{server.kind}.png"), full_page=True)

    # The CSV download is the page shown.
    with page.expect_download() as download:
        page.click("#worklist-csv")
    text = download.value.path().read_text()
    assert [row["patient"] for row in csv.DictReader(io.StringIO(text))] == [f"Patient/{pid}" for pid in shown]

    # One click opens the member page.
    page.click(f"a[data-open='{shown[0]}']")
    wait_ready(page, "member")
    assert page.url.endswith(f"#member/{shown[0]}")
    assert page.get_attribute("[data-member='recommended']", "data-value") == "ny-harp"
    assert not page.errors, page.errors
    page.context.close()


def test_worklist_pages_forward_in_chromium(server, client, browser):
    page = analyst_page(server, browser, "Practitioner/worklist-pager")
    page.goto(server.url + "/app/#worklist?status=misaligned,review,aligned&_count=20")
    wait_ready(page, "worklist")
    second = client.get(WORKLIST, params={"status": "misaligned,review,aligned", "_count": "20"}).json()
    wait_for_rows(page, second)
    page.click("#worklist-next")
    after = client.get(WORKLIST, params={"status": "misaligned,review,aligned", "_count": "20",
                                         "_cursor": _param(second, "next")}).json()
    assert wait_for_rows(page, after) != [r["id"] for r in rows_of(second)]
    page.click("#worklist-first")
    wait_for_rows(page, second)
    page.context.close()
