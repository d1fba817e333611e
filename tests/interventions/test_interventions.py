"""Intervention priority lists and Task checks over HTTP on both databases (SPEC §13, issue 23 items 1-2):
the synthetic population (`planfit synth`'s risk and intervention parts) loaded, scored and made a
roster's participants; the week's List ranks exactly the active ones as the ground truth says, reads
back unchanged, refuses stale inputs; Tasks assigned from it are checked for coverage, due dates,
barriers, owners and capacity."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from server.interventions.checks import BARRIER_SYSTEM, BUSINESS_SYSTEM, TYPE_SYSTEM
from server.interventions.config import load_priority_config
from tests.support.alignment import TODAY
from tests.support.servers import RunningServer
from tests.support.interventions import Loaded, entry_values, load, priority
from tests.support.rosters import NPI
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

CONFIG = load_priority_config()
TIER_ORDER = [t.code for t in CONFIG.tiers]


@pytest.fixture(scope="module")
def loaded(server: RunningServer, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    return load(server, client, tmp_path_factory.mktemp("interventions"), members=60, seed=7)


@pytest.fixture(scope="module")
def client(server: RunningServer):
    with server.http(server.auth, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def week_list(client: httpx.Client, loaded: Loaded) -> dict[str, Any]:
    r = priority(client, loaded)
    assert r.status_code == 201, r.text[:3000]
    return r.json()


def test_list_ranks_the_active_participants_as_the_ground_truth(loaded: Loaded, week_list: dict) -> None:
    by_patient = {pid: member for member, pid in loaded.ids.items()}
    entries = [entry_values(e) for e in week_list["entry"]]
    active = {loaded.ids[m] for m, v in loaded.truth["members"].items() if v["active"]}
    assert {e["patient"] for e in entries} == active
    for e in entries:
        member = by_patient[e["patient"]]
        assert (e["tier"], e["edVisits"], e["inpatientAdmissions"], e["carePlanVariance"]) == (
            loaded.value(member, "tier"), loaded.value(member, "ed"), loaded.value(member, "inpatient"),
            loaded.value(member, "variance")), member
        assert e["riskScore"] == pytest.approx(loaded.value(member, "score"), abs=1e-3), member
        due = date.fromisoformat(loaded.truth["week"]) + timedelta(days=CONFIG.tier(e["tier"]).due_days)
        assert e["dueDate"] == due.isoformat()

    def key(pid: str) -> tuple:
        v = loaded.truth["members"][by_patient[pid]]
        return (TIER_ORDER.index(v["tier"]), -v["ed"], -v["inpatient"], -v["variance"], -round(v["score"], 6), pid)

    assert [e["patient"] for e in entries] == sorted(active, key=key)
    assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
    # Every planted kind of input occurs, so the comparison above exercised each one.
    assert all(any(e[k] for e in entries) for k in ("edVisits", "inpatientAdmissions", "carePlanVariance"))
    inputs = {x["extension"][0]["valueCode"]: x["extension"][1]["valueDateTime"]
              for x in week_list["extension"] if x["url"].endswith("intervention-input")}
    assert set(inputs) == {"risk", "encounters", "claims", "carePlans"}
    assert all(v.startswith(TODAY.isoformat()[:4]) for v in inputs.values())


def test_a_weeks_list_reads_back_unchanged(client: httpx.Client, loaded: Loaded, week_list: dict) -> None:
    again = priority(client, loaded, week=(date.fromisoformat(loaded.truth["week"]) + timedelta(days=4)).isoformat())
    assert again.status_code == 200, again.text[:2000]
    assert again.json() == week_list
    read = client.get(f"/List/{week_list['id']}")
    assert read.status_code == 200 and read.json() == week_list and read.json()["meta"]["versionId"] == "1"
    found = client.get("/List", params={"subject": f"Group/{loaded.roster}", "code": "intervention-priority"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [week_list["id"]]
    refused = client.put(f"/List/{week_list['id']}", json={**week_list, "status": "retired"})
    assert refused.status_code == 405, refused.text
    assert client.delete(f"/List/{week_list['id']}").status_code == 405


def test_stale_inputs_are_refused_with_the_reason(client: httpx.Client, loaded: Loaded) -> None:
    future = TODAY + timedelta(days=60)  # every input refreshed today: older than its limit by then
    r = client.post("/List/$intervention-priority", json={"resourceType": "Parameters", "parameter": [
        {"name": "roster", "valueReference": {"reference": f"Group/{loaded.roster}"}},
        {"name": "week", "valueDate": future.isoformat()}]})
    assert r.status_code in (400, 422), r.text
    if r.status_code == 422:  # the week's payment year is configured: the inputs are judged
        issues = r.json()["issue"]
        assert r.json()["resourceType"] == "OperationOutcome"
        assert {i["diagnostics"].split(": ")[1] for i in issues} >= {"encounters", "carePlans"}
        assert all("last refreshed" in i["diagnostics"] for i in issues)
    r = priority(client, loaded, week=future.isoformat())
    assert r.status_code == 422, r.text
    assert any("encounters: last refreshed" in i["diagnostics"] for i in r.json()["issue"])
    other = client.get("/List", params={"subject": f"Group/{loaded.roster}"}).json()
    assert len(other.get("entry", [])) <= 1  # nothing stored for the refused week


def _practitioner(client: httpx.Client, name: str) -> str:
    r = client.post("/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": name}],
                                           "identifier": [{"system": NPI, "value": str(abs(hash(name)) % 10**10)}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def task(list_id: str, patient: str, owner: str, due: str, status: str = "requested", **extra: Any) -> dict:
    return {"resourceType": "Task", "status": status, "intent": "order",
            "code": {"coding": [{"system": TYPE_SYSTEM, "code": "outreach-call"}]},
            "focus": {"reference": f"List/{list_id}"}, "for": {"reference": f"Patient/{patient}"},
            "owner": {"reference": owner}, "restriction": {"period": {"end": due}}, **extra}


def _checks(client: httpx.Client, list_id: str) -> tuple[dict, list[tuple]]:
    r = client.get(f"/List/{list_id}/$intervention-checks")
    assert r.status_code == 200, r.text[:2000]
    params = r.json()["parameter"]
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in params if "part" not in p}
    found = []
    for p in params:
        if p["name"] == "violation":
            parts = {q["name"]: q.get("valueCode") or (q.get("valueReference") or {}).get("reference") for q in p["part"]}
            found.append((parts["check"], parts.get("patient"), parts.get("task"), parts.get("owner")))
    return values, sorted(found, key=str)


def test_task_checks(client: httpx.Client, week_list: dict) -> None:
    entries = [entry_values(e) for e in week_list["entry"]]
    high = [e for e in entries if CONFIG.tier(e["tier"]).high_priority]
    assert len(high) >= 4, "the seed must plant enough high-risk participants"
    lid = week_list["id"]
    anna, ben = (f"Practitioner/{_practitioner(client, n)}" for n in ("Care-Anna", "Care-Ben"))
    # high[0]: a correct Task; high[1]: escalated with a coded barrier; high[2]: escalated without one
    # (so also uncovered); high[3]: a Task due a day late; the rest: nothing (uncovered).
    made = {}
    made[0] = client.post("/Task", json=task(lid, high[0]["patient"], anna, high[0]["dueDate"])).json()["id"]
    escalation = {"businessStatus": {"coding": [{"system": BUSINESS_SYSTEM, "code": "escalated"}]}}
    made[1] = client.post("/Task", json=task(lid, high[1]["patient"], anna, high[1]["dueDate"], status="cancelled",
                                             statusReason={"coding": [{"system": BARRIER_SYSTEM, "code": "unreachable"}]},
                                             **escalation)).json()["id"]
    made[2] = client.post("/Task", json=task(lid, high[2]["patient"], anna, high[2]["dueDate"], status="cancelled",
                                             **escalation)).json()["id"]
    late = (date.fromisoformat(high[3]["dueDate"]) + timedelta(days=1)).isoformat()
    made[3] = client.post("/Task", json=task(lid, high[3]["patient"], "Organization/somewhere", late)).json()["id"]
    found = client.get("/Task", params={"barrier": f"{BARRIER_SYSTEM}|unreachable", "focus": f"List/{lid}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [made[1]]
    assert client.get("/Task", params={"due-date": late, "_summary": "count"}).json()["total"] >= 1
    # Ben gets one Task more than the capacity, for the low-tier participant at the end of the list.
    last = entries[-1]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": task(lid, last["patient"], ben, last["dueDate"]), "request": {"method": "POST", "url": "Task"}}
        for _ in range(CONFIG.owner_capacity + 1)]}
    assert client.post("", json=bundle).status_code == 200

    values, violations = _checks(client, lid)
    p = lambda i: f"Patient/{high[i]['patient']}"  # noqa: E731
    expected = [("uncovered", f"Patient/{e['patient']}", None, None) for e in high[2:] if e is not high[3]]
    expected += [("barrier", p(2), f"Task/{made[2]}", None), ("due-date", p(3), f"Task/{made[3]}", None),
                 ("owner", p(3), f"Task/{made[3]}", None), ("capacity", None, None, ben)]
    assert violations == sorted(expected, key=str)
    assert values["passed"] is False and values["highPriority"] == len(high)
    assert values["covered"] == len(high) - (len(high) - 3)

    # Completing Ben's extra Task brings him back to capacity; fixing high[3]'s Task clears its findings.
    extra = client.get("/Task", params={"owner": ben, "_count": "1"}).json()["entry"][0]["resource"]
    assert client.put(f"/Task/{extra['id']}", json={**extra, "status": "completed"}).status_code == 200
    fixed = {**client.get(f"/Task/{made[3]}").json(), "owner": {"reference": anna},
             "restriction": {"period": {"end": high[3]["dueDate"]}}}
    assert client.put(f"/Task/{made[3]}", json=fixed).status_code == 200
    _, violations = _checks(client, lid)
    assert {v[0] for v in violations} == {"uncovered", "barrier"}


def test_search_parameters_of_the_inputs(client: httpx.Client, loaded: Loaded) -> None:
    assert client.get("/Claim", params={"place-of-service": "23", "_summary": "count"}).json()["total"] > 0
    assert client.get("/CarePlan", params={"open-activity-date": f"lt{loaded.truth['week']}",
                                           "_summary": "count"}).json()["total"] > 0
    capability = client.get("/metadata").json()
    rest = {r["type"]: r for r in capability["rest"][0]["resource"]}
    assert {"due-date", "barrier", "focus", "owner"} <= {s["name"] for s in rest["Task"]["searchParam"]}
    assert {"intervention-priority", "intervention-checks"} <= {o["name"] for o in rest["List"].get("operation", [])}



@pytest.mark.parametrize("change, message", [
    (lambda d: d["tiers"].reverse(), "strictly descending"),
    (lambda d: d["tiers"][-1].update(minScore=0.5), "minScore 0"),
    (lambda d: d["tiers"][0].pop("dueDays"), "dueDays"),
    (lambda d: d.update(ownerCapacity=0), "ownerCapacity"),
], ids=["unordered-tiers", "no-tier-from-zero", "tier-without-due-rule", "no-capacity"])
def test_a_broken_configuration_is_refused(tmp_path, change, message: str) -> None:
    """The tier cut-points are data, validated when the feature is made at start (the message names the field)."""
    import json

    from server.data_files import MappingError, data_directory

    doc = json.loads((data_directory("mappings") / "interventions" / "priority.json").read_text())
    (tmp_path / "interventions").mkdir()
    (tmp_path / "interventions" / "priority.json").write_text(json.dumps(doc))
    assert load_priority_config(tmp_path) == CONFIG  # the copy as shipped is accepted
    change(doc)
    (tmp_path / "interventions" / "priority.json").write_text(json.dumps(doc))
    with pytest.raises(MappingError, match=message):
        load_priority_config(tmp_path)
