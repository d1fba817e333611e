"""Da Vinci ATR attribution lists (SPEC §11, issue 21) over real HTTP on both databases.

The round trip runs through fhirpy, a real FHIR client library, as an ATR consumer would: create a draft
list, `$member-add` with each parameter combination the IG requires, cohort decisions (and the 422s of
their rules), `$member-remove`, `$confirm-attribution-list` (201, final), a refused `$member-add` (409),
then `$davinci-data-export`. httpx is used where fhirpy hides what is asserted (status codes, headers).
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError

from tests.support.bulk import download, wait_for
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import RunningServer
from tests.support.rosters import (
    ATR,
    DECISION,
    NPI,
    REASONS,
    by_member_id,
    by_reference,
    consumer_token,
    draft_group,
    extension,
    make_population,
    members_of,
    parameters,
)

PERIOD = ("valuePeriod", {"start": "2026-01-01", "end": "2026-12-31"})


def _http(server: RunningServer, token: str) -> httpx.Client:
    return server.http(None, headers={"Authorization": f"Bearer {token}"})


def _decide(index: int, population, **values) -> dict:
    body = parameters(patientReference=("valueReference", {"reference": f"Patient/{population.patients[index]}"}),
                      **values)
    return body


def test_atr_round_trip_through_fhirpy(server: RunningServer, client: httpx.Client) -> None:
    population = make_population(client, 6)
    token = consumer_token(server, population.organization)
    fhir = SyncFHIRClient(server.fhir, authorization=f"Bearer {token}")
    http = _http(server, token)

    group = fhir.resource("Group", **draft_group(population))
    group.save()
    gid = group.id
    # $member-add: every parameter combination the ATR OperationDefinition requires.
    group.execute("$member-add", data=by_member_id(population, 0, attributionPeriod=PERIOD))
    group.execute("$member-add", data=by_member_id(population, 1, attributionPeriod=PERIOD))
    group.execute("$member-add", data=by_member_id(population, 2, attributionPeriod=PERIOD))
    group.execute("$member-add", data=by_member_id(population, 3))
    group.execute("$member-add", data=by_reference(population, 4, attributionPeriod=PERIOD))
    group.execute("$member-add", data=by_reference(population, 5))
    unknown = parameters(patientReference=("valueReference", {"reference": "Patient/nobody-here"}),
                         providerReference=("valueReference", {"reference": f"Practitioner/{population.practitioner}"}))
    assert http.post(f"/Group/{gid}/$member-add", json=unknown).status_code == 422
    lone = parameters(memberId=("valueIdentifier", {"value": population.member_ids[0]}))
    assert http.post(f"/Group/{gid}/$member-add", json=lone).status_code == 400  # not an IG combination

    # Decisions: each rule refused with 422, then accepted when satisfied.
    reviewer = ("valueReference", {"reference": f"Practitioner/{population.practitioner}"})
    refused = {
        "active without basis": _decide(3, population, decision=("valueCode", "active"), reviewer=reviewer),
        "excluded without reason": _decide(1, population, decision=("valueCode", "excluded")),
        "pending without owner": _decide(2, population, decision=("valueCode", "pending"),
                                         clarificationDeadline=("valueDate", "2026-02-01")),
        "unknown reason": _decide(1, population, decision=("valueCode", "excluded"),
                                  reason=("valueCoding", {"system": REASONS, "code": "no-such-reason"})),
    }
    for case, body in refused.items():
        r = http.post(f"/Group/{gid}/$member-decision", json=body)
        assert r.status_code == 422, (case, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    group.execute("$member-decision", data=_decide(0, population, decision=("valueCode", "active"),
                                                   reason=("valueCoding", {"system": REASONS, "code": "payer-attributed"}),
                                                   reviewer=reviewer, reviewDate=("valueDate", "2026-01-15"),
                                                   nextCheckpoint=("valueDate", "2026-04-01")))
    group.execute("$member-decision", data=_decide(1, population, decision=("valueCode", "excluded"),
                                                   reason=("valueCoding", {"system": REASONS, "code": "declined"}),
                                                   reviewer=reviewer))
    group.execute("$member-decision", data=_decide(2, population, decision=("valueCode", "pending"),
                                                   owner=reviewer, clarificationDeadline=("valueDate", "2026-02-01")))
    # $member-remove in draft keeps the member, inactive and dropped.
    group.execute("$member-remove", data=parameters(
        patientReference=("valueReference", {"reference": f"Patient/{population.patients[4]}"})))

    full = fhir.reference("Group", gid).to_resource().serialize()
    members = members_of(full)
    assert set(members) == set(population.patients)
    assert full["quantity"] == 5
    dropped = members[population.patients[4]]
    assert dropped["inactive"] is True
    assert extension(dropped, ATR + "ext-changeType")["valueCode"] == "dropped"
    first = members[population.patients[0]]
    assert first["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert extension(first, ATR + "ext-attributedProvider")["valueReference"]["reference"] == \
        f"Practitioner/{population.practitioner}"
    assert extension(first, ATR + "ext-coverageReference")["valueReference"]["reference"] == \
        f"Coverage/cov-{population.tag}-0"
    decision = {e["url"]: e for e in extension(first, DECISION)["extension"]}
    assert decision["decision"]["valueCode"] == "active"
    assert decision["reviewer"]["valueReference"]["reference"] == f"Practitioner/{population.practitioner}"
    assert "period" not in members[population.patients[5]]  # unknown elements are left out (ATR)
    pending = {e["url"]: e for e in extension(members[population.patients[2]], DECISION)["extension"]}
    assert pending["clarificationDeadline"]["valueDate"] == "2026-02-01"

    # Each decision was written with a Provenance naming who decided.
    provenance = client.get("/Provenance", params={"entity": f"Patient/{population.patients[0]}"}).json()
    agents = [a["who"] for e in provenance.get("entry", []) for a in e["resource"]["agent"]]
    assert {"reference": f"Practitioner/{population.practitioner}"} in agents

    # $attribution-status: one member's data.
    status = group.execute("$attribution-status", data=parameters(
        memberId=("valueIdentifier", {"system": "urn:test:payer-member-id", "value": population.member_ids[0]})))
    kinds = sorted(e["resource"]["resourceType"] for e in status["entry"])
    assert kinds == ["Coverage", "Group", "Patient", "Practitioner"]
    assert len(status["entry"][0]["resource"]["member"]) == 1

    # Discovery (ATR spec.md): by NPI, contract identifier and name, with _summary=true.
    for params in ({"identifier": f"{NPI}|{population.npi}"},
                   {"identifier": f"urn:test:contract|contract-{population.tag}"},
                   {"name": f"Roster {population.tag}"}):
        found = http.get("/Group", params={**params, "_summary": "true"}).json()
        assert [e["resource"].get("id") for e in found.get("entry", [])] == [gid], orjson.dumps(found)
        assert "SUBSETTED" in str(found["entry"][0]["resource"]["meta"]["tag"])

    # $confirm-attribution-list: 201, final; then every change is refused with 409.
    confirmed = http.post(f"/Group/{gid}/$confirm-attribution-list")
    assert confirmed.status_code == 201, confirmed.text
    with pytest.raises(BaseFHIRError):
        group.execute("$member-add", data=by_member_id(population, 5))
    assert http.post(f"/Group/{gid}/$member-add", json=by_member_id(population, 5)).status_code == 409
    assert http.post(f"/Group/{gid}/$member-decision", json=_decide(
        3, population, decision=("valueCode", "excluded"),
        reason=("valueCoding", {"system": REASONS, "code": "declined"}))).status_code == 409
    header = http.get(f"/Group/{gid}").json()
    assert extension(header, ATR + "ext-attributionListStatus")["valueCode"] == "final"
    header.pop("meta")
    header.pop("member")
    assert http.put(f"/Group/{gid}", json=header).status_code == 409

    # $davinci-data-export: _type must include Group, Patient and Coverage; the export is Bulk Data.
    prefer = {"Prefer": "respond-async"}
    short = http.get(f"/Group/{gid}/$davinci-data-export", params={"_type": "Group,Patient"}, headers=prefer)
    assert short.status_code == 400
    kick = http.post(f"/Group/{gid}/$davinci-data-export", headers=prefer, json=parameters(
        exportType=("valueCanonical", "hl7.fhir.us.davinci-atr"), _type=("valueString", "Group,Patient,Coverage")))
    assert kick.status_code == 202, kick.text
    done = wait_for(http, kick.headers["Content-Location"])
    assert done.status_code == 200, done.text
    assert done.json()["requiresAccessToken"] is True
    lines = download(http, done.json())
    exported_group = orjson.loads(lines["Group"][0])
    assert len(lines["Group"]) == 1 and len(exported_group["member"]) == 6
    current = {p for i, p in enumerate(population.patients) if i != 4}
    assert {orjson.loads(x)["id"] for x in lines["Patient"]} == current
    assert {orjson.loads(x)["beneficiary"]["reference"].split("/")[1] for x in lines["Coverage"]} == current
    one = http.post(f"/Group/{gid}/$davinci-data-export", headers=prefer, json=parameters(
        patient=("valueReference", {"reference": f"Patient/{population.patients[0]}"})))
    assert one.status_code == 202, one.text
    only = download(http, wait_for(http, one.headers["Content-Location"]).json())
    assert [orjson.loads(x)["id"] for x in only["Patient"]] == [population.patients[0]]


def test_lists_are_entitled_per_instance(server: RunningServer, client: httpx.Client) -> None:
    """A consumer reads and changes only its organization's lists (ATR: the Producer SHALL verify the
    credentials allow access to the specific Group), through the same scopes-as-SQL path as any read."""
    mine, theirs = make_population(client, 2), make_population(client, 1)
    own = _http(server, consumer_token(server, mine.organization))
    other = _http(server, consumer_token(server, theirs.organization))
    created = own.post("/Group", json=draft_group(mine))
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    assert own.post(f"/Group/{gid}/$member-add", json=by_member_id(mine, 0, attributionPeriod=PERIOD)).status_code == 200
    assert other.get(f"/Group/{gid}").status_code == 404
    assert other.post(f"/Group/{gid}/$member-add", json=by_member_id(mine, 1)).status_code == 404
    assert other.post(f"/Group/{gid}/$confirm-attribution-list").status_code == 404
    assert other.get(f"/Group/{gid}/$davinci-data-export", headers={"Prefer": "respond-async"}).status_code == 404
    found = other.get("/Group", params={"identifier": f"{NPI}|{mine.npi}", "_summary": "true"}).json()
    assert not found.get("entry")
    # Nor can it create a list managed by another organization.
    assert other.post("/Group", json=draft_group(mine)).status_code == 403
    assert own.get(f"/Group/{gid}").status_code == 200


def test_list_shape_is_enforced_on_every_write(client: httpx.Client) -> None:
    population = make_population(client, 1)
    body = draft_group(population)
    assert client.post("/Group", json={**body, "managingEntity": None} | {"managingEntity": {"display": "x"}}).status_code == 422
    bad_status = {**body, "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "closed"}]}
    assert client.post("/Group", json=bad_status).status_code == 422
    inline = {**body, "member": [{"entity": {"reference": f"Patient/{population.patients[0]}"}}]}
    r = client.post("/Group", json=inline)
    assert r.status_code == 422 and "member-add" in r.text
    transaction = {"resourceType": "Bundle", "type": "transaction",
                   "entry": [{"resource": bad_status, "request": {"method": "POST", "url": "Group"}}]}
    assert client.post("", json=transaction).status_code == 422


def _changes(result: httpx.Response) -> dict[tuple[str, str], dict]:
    """The drift's changes by (kind, patient id), each as its parts by name."""
    assert result.status_code == 200, result.text
    changes = {}
    for p in result.json()["parameter"]:
        if p["name"] == "change":
            part = {x["name"]: next(v for k, v in x.items() if k.startswith("value")) for x in p["part"]}
            changes[(part["kind"], part["patient"]["reference"].split("/")[1])] = part
    return changes


def test_drift_between_two_versions_of_one_list(client: httpx.Client) -> None:
    """Every member change writes a new Group version; any two versions compare: added, removed (also from
    an open list, where the row is deleted), changed decisions, with who and when; Parameters and CSV."""
    population = make_population(client, 4)
    p = population.patients
    created = client.post("/Group", json=draft_group(population))
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    versions = [created.headers["ETag"]]

    def change(operation: str, body: dict | None = None) -> None:
        r = client.post(f"/Group/{gid}/${operation}", json=body or {})
        assert r.status_code == 200, r.text
        assert r.headers["ETag"] not in versions  # each change is a new version
        versions.append(r.headers["ETag"])

    for index in (0, 1, 2):  # versions 2, 3, 4
        change("member-add", by_member_id(population, index, attributionPeriod=PERIOD))
    active = {"decision": ("valueCode", "active"),
              "reason": ("valueCoding", {"system": REASONS, "code": "payer-attributed"})}
    change("member-decision", _decide(0, population, **active))  # version 5
    header = {k: v for k, v in client.get(f"/Group/{gid}").json().items() if k != "member"}
    header["extension"] = [e for e in header["extension"] if not e["url"].endswith("attributionListStatus")]
    header["extension"].append({"url": ATR + "ext-attributionListStatus", "valueCode": "open"})
    opened = client.put(f"/Group/{gid}", json=header)  # version 6
    assert opened.status_code == 200, opened.text
    versions.append(opened.headers["ETag"])
    change("member-remove", parameters(patientReference=("valueReference", {"reference": f"Patient/{p[1]}"})))  # 7
    excluded = {"decision": ("valueCode", "excluded"), "reason": ("valueCoding", {"system": REASONS, "code": "declined"})}
    change("member-decision", _decide(0, population, **excluded))  # version 8
    change("member-add", by_member_id(population, 3, attributionPeriod=PERIOD))  # version 9
    assert versions[-1] == 'W/"9"'
    assert p[1] not in members_of(client.get(f"/Group/{gid}").json())  # removed from the open list for good

    later = _changes(client.get(f"/Group/{gid}/$roster-drift", params={"from": "5"}))
    assert set(later) == {("added", p[3]), ("removed", p[1]), ("decision-changed", p[0])}
    assert later[("removed", p[1])]["by"] == "pytest-clinical" and "at" in later[("removed", p[1])]
    assert later[("decision-changed", p[0])]["before"] == "active (payer-attributed)"
    assert later[("decision-changed", p[0])]["after"] == "excluded (declined)"
    assert later[("added", p[3])]["by"] == "pytest-clinical"
    early = client.get(f"/Group/{gid}/$roster-drift", params={"from": "2", "to": "4"})
    assert set(_changes(early)) == {("added", p[1]), ("added", p[2])}
    references = {x["name"]: x.get("valueReference", {}).get("reference") for x in early.json()["parameter"]}
    assert references["group"] == f"Group/{gid}/_history/4" and references["baseline"] == f"Group/{gid}/_history/2"
    assert set(_changes(client.get(f"/Group/{gid}/$roster-drift", params={"from": "9", "to": "5"}))) == {
        ("added", p[1]), ("removed", p[3]), ("decision-changed", p[0])}
    assert _changes(client.get(f"/Group/{gid}/$roster-drift", params={"from": "6", "to": "6"})) == {}
    as_csv = client.get(f"/Group/{gid}/$roster-drift", params={"from": "1", "_format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert sorted(line.split(",")[:2] for line in as_csv.text.strip().splitlines()[1:]) == sorted(
        [["added", p[0]], ["added", p[2]], ["added", p[3]]])

    assert client.get(f"/Group/{gid}/$roster-drift", params={"from": "10"}).status_code == 422
    assert client.get(f"/Group/{gid}/$roster-drift", params={"from": "0"}).status_code == 422
    assert client.get(f"/Group/{gid}/$roster-drift", params={"from": "x"}).status_code == 400
    assert client.get(f"/Group/{gid}/$roster-drift", params={"from": "2", "baseline": f"Group/{gid}"}).status_code == 400


def test_drift_against_the_locked_list(client: httpx.Client) -> None:
    """A later roster compared with the locked one: added, removed (with who and when when the roster still
    lists the member as dropped), changed decisions; as Parameters and as CSV."""
    population = make_population(client, 5)
    active = {"decision": ("valueCode", "active"),
              "reason": ("valueCoding", {"system": REASONS, "code": "payer-attributed"})}

    def roster(indexes: list[int]) -> str:
        created = client.post("/Group", json=draft_group(population, f"Drift {population.tag}"))
        assert created.status_code == 201, created.text
        gid = created.json()["id"]
        for index in indexes:
            r = client.post(f"/Group/{gid}/$member-add", json=by_member_id(population, index, attributionPeriod=PERIOD))
            assert r.status_code == 200, r.text
        assert client.post(f"/Group/{gid}/$member-decision", json=_decide(0, population, **active)).status_code == 200
        return gid

    locked = roster([0, 1, 2, 3])
    excluded = _decide(1, population, decision=("valueCode", "excluded"),
                       reason=("valueCoding", {"system": REASONS, "code": "declined"}))
    assert client.post(f"/Group/{locked}/$member-decision", json=excluded).status_code == 200
    assert client.get(f"/Group/{locked}/$roster-drift").status_code == 422  # nothing locked yet
    assert client.post(f"/Group/{locked}/$confirm-attribution-list").status_code == 201

    later = roster([0, 1, 2, 4])
    assert client.post(f"/Group/{later}/$member-decision", json=_decide(1, population, **active)).status_code == 200
    assert client.post(f"/Group/{later}/$member-remove", json=parameters(
        patientReference=("valueReference", {"reference": f"Patient/{population.patients[2]}"}))).status_code == 200

    changes = _changes(client.get(f"/Group/{later}/$roster-drift"))
    p = population.patients
    assert set(changes) == {("added", p[4]), ("removed", p[2]), ("removed", p[3]), ("decision-changed", p[1])}
    assert changes[("decision-changed", p[1])]["before"] == "excluded (declined)"
    assert changes[("decision-changed", p[1])]["after"] == "active (payer-attributed)"
    assert changes[("decision-changed", p[1])]["by"] == "pytest-clinical" and "at" in changes[("decision-changed", p[1])]
    assert changes[("removed", p[2])]["by"] == "pytest-clinical"  # dropped in the draft: who and when
    assert "by" not in changes[("removed", p[3])]  # never in the later roster
    explicit = client.get(f"/Group/{later}/$roster-drift", params={"baseline": f"Group/{locked}", "_format": "csv"})
    assert explicit.headers["content-type"].startswith("text/csv")
    assert len(explicit.text.strip().splitlines()) == 1 + len(changes)
    assert client.get(f"/Group/{later}/$roster-drift", params={"baseline": f"Group/{later}"}).status_code == 422
