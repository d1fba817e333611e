"""Encounter data completeness (`Measure/encounter-completeness/$completeness`, issue 22 item 2) over HTTP
on both databases: clinical Conditions and Encounters from two provider organizations (an Encounter's
serviceProvider, a Condition's asserter's organization or its Encounter's) and from the writing client itself, claims and EOBs that match them on the day of service and are created some days later,
claims that do not count (cancelled, another member's, created after the window); each figure per source
and month is checked exactly, lag percentiles included, as MeasureReport and as CSV.
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.support.alignment import ICD, born, patient
from tests.support.servers import unique
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

OPERATION = "/Measure/encounter-completeness/$completeness"
PERIOD = {"periodStart": "2011-03-01", "periodEnd": "2011-04-30"}  # a period no other test writes in


def _id(c: httpx.Client, resource: dict) -> str:
    r = c.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _organization(c: httpx.Client) -> str:
    return _id(c, {"resourceType": "Organization", "name": unique("clinic"), "active": True})


def _encounter(c: httpx.Client, pid: str, day: str, org: str | None = None) -> str:
    resource = {"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"}, "period": {"start": day, "end": day}}
    if org:
        resource["serviceProvider"] = {"reference": f"Organization/{org}"}
    return _id(c, resource)


def _condition(c: httpx.Client, pid: str, day: str, *, asserter: str | None = None, encounter: str | None = None) -> str:
    resource = {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "recordedDate": day,
                "code": {"coding": [{"system": ICD, "code": "I10"}]}}
    if asserter:
        resource["asserter"] = {"reference": f"PractitionerRole/{asserter}"}
    if encounter:
        resource["encounter"] = {"reference": f"Encounter/{encounter}"}
    return _id(c, resource)


def _role(c: httpx.Client, org: str) -> str:
    return _id(c, {"resourceType": "PractitionerRole", "active": True, "organization": {"reference": f"Organization/{org}"}})


def _claim(c: httpx.Client, pid: str, served: str, created: str, *, rtype: str = "Claim", status: str = "active") -> str:
    resource = {
        "resourceType": rtype, "status": status, "use": "claim",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "patient": {"reference": f"Patient/{pid}"}, "created": created, "provider": {"display": "Test provider"},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Test coverage"}}],
    }
    if rtype == "Claim":
        resource["billablePeriod"] = {"start": served, "end": served}
        resource["priority"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]}
    else:  # an adjudicated EOB dated by its line's service date only
        resource.update({"outcome": "complete", "insurer": {"display": "Test plan"},
                         "insurance": [{"focal": True, "coverage": {"display": "Test coverage"}}],
                         "item": [{"sequence": 1, "servicedDate": served,
                                   "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]}}]})
    return _id(c, resource)


@pytest.fixture(scope="module")
def records(server, claims_server):
    """Clinical records and claims; the expected (conditions, matched, encounters, matched, p50, p90) per
    source and month with the default 90-day window and with a 200-day one."""
    with server.http(server.auth) as c, claims_server.http(claims_server.auth) as claims:
        north, south = _organization(c), _organization(c)
        member, other = patient(c, born(50)), patient(c, born(40))
        # North, March: three records matched (lags 15, 15, 40) and one billed after 134 days.
        _encounter(c, member, "2011-03-10", north)
        _condition(c, member, "2011-03-10", asserter=_role(c, north))
        _claim(claims, member, "2011-03-10", "2011-03-25")
        _encounter(c, member, "2011-03-12", north)
        _claim(claims, member, "2011-03-12", "2011-04-21")
        _encounter(c, member, "2011-03-20", north)
        _claim(claims, member, "2011-03-20", "2011-08-01")
        # South, April: a cancelled claim and another member's claim match nothing.
        _encounter(c, member, "2011-04-15", south)
        _claim(claims, member, "2011-04-15", "2011-04-20", status="cancelled")
        seen = _encounter(c, member, "2011-04-16", south)
        _claim(claims, other, "2011-04-16", "2011-04-18")
        _condition(c, member, "2011-04-16", encounter=seen)  # recorded in South's encounter
        # No organization: the writing client's source. An EOB dated by its line matches (lag 2).
        _encounter(c, member, "2011-04-05")
        _claim(claims, member, "2011-04-05", "2011-04-07", rtype="ExplanationOfBenefit")
        _condition(c, member, "2011-04-06")
        # Not counted: an Encounter the claims feed wrote, and one outside the period.
        _encounter(claims, member, "2011-04-05", south)
        _encounter(c, member, "2011-05-02", south)
        source = c.get(f"/Patient/{member}").json()["meta"]["source"]
    north, south = f"Organization/{north}", f"Organization/{south}"
    return {
        "sources": (north, south, source),
        90: {(north, "2011-03"): (1, 1, 3, 2, 15, 40), (south, "2011-04"): (1, 0, 2, 0, None, None),
             (source, "2011-04"): (1, 0, 1, 1, 2, 2)},
        200: {(north, "2011-03"): (1, 1, 3, 3, 15, 134), (south, "2011-04"): (1, 0, 2, 0, None, None),
              (source, "2011-04"): (1, 0, 1, 1, 2, 2)},
    }


def _detail(element: dict) -> tuple:
    parts = {e["url"]: e for e in next(x for x in element["extension"] if x["url"].endswith("/completeness-detail"))["extension"]}
    lags = tuple(parts[name]["valueQuantity"]["value"] if name in parts else None for name in ("lagP50", "lagP90"))
    return (*(parts[name]["valueInteger"] for name in ("conditions", "conditionsMatched", "encounters", "encountersMatched")),
            *lags)


def _strata(report: dict, sources: tuple[str, ...]) -> dict[tuple[str, str], dict]:
    stratifier = report["group"][0].get("stratifier", [{"stratum": []}])[0]
    out = {}
    for stratum in stratifier["stratum"]:
        source, month = (component["value"]["text"] for component in stratum["component"])
        if source in sources:
            out[(source, month)] = stratum
    return out


@pytest.mark.parametrize("window", [90, 200])
def test_figures_per_source_and_month(client, records, window):
    r = client.get(OPERATION, params={**PERIOD, "window": str(window)})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["type"], report["measure"]) == ("summary", "https://planfit.dev/fhir/Measure/encounter-completeness")
    assert report["extension"][0]["valueQuantity"]["value"] == window
    strata = _strata(report, records["sources"])
    assert {key: _detail(s) for key, s in strata.items()} == records[window]
    for key, stratum in strata.items():
        conditions, cm, encounters, em, _p50, _p90 = records[window][key]
        counts = {p["code"]["coding"][0]["code"]: p["count"] for p in stratum["population"]}
        assert counts == {"initial-population": conditions + encounters, "denominator": conditions + encounters,
                          "numerator": cm + em}
        assert stratum["measureScore"]["value"] == pytest.approx((cm + em) / (conditions + encounters))
    total = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}
    assert total["initial-population"] >= sum(c + e for c, _, e, *_ in records[window].values())


def test_csv_and_parameters_body_agree(client, records):
    r = client.get(OPERATION, params={**PERIOD, "_format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    rows = {(row["source"], row["month"]): row for row in csv.DictReader(io.StringIO(r.text))}
    for key, (conditions, cm, encounters, em, p50, p90) in records[90].items():
        row = rows[key]
        assert (int(row["conditions"]), int(row["conditions_matched"]), int(row["encounters"]),
                int(row["encounters_matched"])) == (conditions, cm, encounters, em)
        assert (row["lag_p50_days"], row["lag_p90_days"]) == ("" if p50 is None else str(p50), "" if p90 is None else str(p90))
    body = {"resourceType": "Parameters", "parameter": [{"name": "periodStart", "valueDate": PERIOD["periodStart"]},
                                                        {"name": "periodEnd", "valueDate": PERIOD["periodEnd"]}]}
    posted = client.post(OPERATION, json=body)
    assert posted.status_code == 200, posted.text
    assert {k: _detail(s) for k, s in _strata(posted.json(), records["sources"]).items()} == records[90]


def test_refusals(client):
    for params in ({"window": "-1"}, {"window": "9999"}, {"periodStart": "2011-13-01"},
                   {"periodStart": "2011-05-01", "periodEnd": "2011-04-01"}, {"nope": "1"}):
        r = client.get(OPERATION, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


def test_completeness_page_in_chromium(server, records, browser):
    page = analyst_page(server, browser, "Practitioner/completeness-analyst")
    page.goto(server.url + "/app/#completeness?periodStart=2011-03-01&periodEnd=2011-04-30")
    wait_ready(page, "completeness")
    shown = page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                       "Number(e.dataset.value)]))")
    for (source, month), (conditions, cm, encounters, em, p50, _p90) in records[90].items():
        key = f"completeness/{source}/{month}"
        assert shown[f"{key}/records"] == conditions + encounters
        assert shown[f"{key}/matched"] == cm + em
        if p50 is not None:
            assert shown[f"{key}/p50"] == p50
    bars = page.eval_on_selector_all("[data-panel=completeness-chart] svg rect.bar", "els => els.length")
    assert bars >= len(records[90])
    page.screenshot(path=str(ARTIFACTS / f"completeness-{server.kind}.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()
