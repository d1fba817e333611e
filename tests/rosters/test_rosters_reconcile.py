"""Payer attribution files into rosters, and their reconciliation (SPEC §11, §9; issue 21 items 2 and 6).

A 5,000-participant payer file from `planfit synth` (server/synth/rosters.py: planted mismatches and their ground truth) is
imported over HTTP into a draft list on both databases; the reconciliation must report exactly the planted
mismatches. A malformed file is refused whole with its row and field named; the same file imported twice
changes nothing.
"""

from __future__ import annotations

import base64
import json
from datetime import date
from pathlib import Path

import httpx
import pytest

from server.synth import rosters as synth
from tests.support.servers import RunningServer
from tests.support.rosters import MEMBER_SYSTEM, NPI, draft_group, make_population, parameters
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

PARTICIPANTS = 5000
SEED = 2121


@pytest.fixture(scope="module")
def payer_population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("roster-population")
    synth.generate(PARTICIPANTS, SEED, out, date.today())
    return out


@pytest.fixture(scope="module")
def loaded(server: RunningServer, payer_population: Path) -> RunningServer:
    with server.http(server.auth, timeout=300) as http:
        for bundle in sorted(payer_population.glob("bundle-*.json")):
            r = http.post("", content=bundle.read_bytes())
            assert r.status_code == 200, r.text[:500]
    return server


def _file(data: bytes, content_type: str = "text/csv", title: str = "attribution.csv", **extra) -> dict:
    attachment = {"contentType": content_type, "data": base64.b64encode(data).decode(), "title": title}
    return parameters(file=("valueAttachment", attachment), **extra)


def _new_list(client: httpx.Client) -> tuple[str, object]:
    population = make_population(client, 1)
    r = client.post("/Group", json=draft_group(population))
    assert r.status_code == 201, r.text
    return r.json()["id"], population


def test_reconciliation_finds_every_planted_mismatch_and_nothing_else(loaded: RunningServer, client: httpx.Client,
                                                                      payer_population: Path) -> None:
    truth = json.loads((payer_population / "roster_truth.json").read_text())
    gid, population = _new_list(client)
    data = (payer_population / "attribution.csv").read_bytes()
    approver = ("valueReference", {"reference": f"Practitioner/{population.practitioner}"})
    system = ("valueUri", truth["member_id_system"])
    r = client.post(f"/Group/{gid}/$roster-import", json=_file(data, approvedBy=approver, memberIdSystem=system))
    assert r.status_code == 200, r.text
    unknown = sum(1 for e in truth["expected"] if e["kind"] == "unknown-participant")
    assert f"Imported {truth['file_rows']} rows: {truth['file_rows'] - unknown} members added" in r.text
    version = r.headers["ETag"]

    # The same file again changes nothing: same Group version, same members.
    again = client.post(f"/Group/{gid}/$roster-import", json=_file(data, approvedBy=approver, memberIdSystem=system))
    assert again.status_code == 200 and "already imported" in again.text
    assert again.headers["ETag"] == version
    assert client.get(f"/Group/{gid}", params={"_summary": "true"}).json()["quantity"] == truth["file_rows"] - unknown

    # The file's identity and approval are on record.
    provenance = client.get("/Provenance", params={"target": f"Group/{gid}"}).json()
    texts = [json.dumps(e["resource"]) for e in provenance.get("entry", [])]
    assert any("SHA-256" in t and population.practitioner in t for t in texts), texts

    # Members the file leaves out, added by hand, are listed too.
    npi = {"system": NPI, "value": population.npi}
    for participant in truth["extras"]:
        body = parameters(memberId=("valueIdentifier", {"system": truth["member_id_system"], "value": participant}),
                          providerNpi=("valueIdentifier", npi))
        assert client.post(f"/Group/{gid}/$member-add", json=body).status_code == 200

    report = client.get(f"/Group/{gid}/$roster-reconcile")
    assert report.status_code == 200, report.text
    found = {(p["kind"], p.get("participantId"), p.get("row"), p["field"]) for p in _mismatches(report.json())}
    expected = {(e["kind"], e["participant_id"], e["row"], e["field"]) for e in truth["expected"]}
    assert found == expected
    counts = {p["part"][0]["valueCode"]: p["part"][1]["valueInteger"]
              for p in report.json()["parameter"] if p["name"] == "count"}
    assert sum(counts.values()) == len(expected) and all(counts.values())

    as_csv = client.get(f"/Group/{gid}/$roster-reconcile", params={"_format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.strip().splitlines()
    assert lines[0] == "kind,participant_id,patient_id,row,field,stated,found" and len(lines) == len(expected) + 1


def _mismatches(parameters_resource: dict) -> list[dict]:
    out = []
    for p in parameters_resource["parameter"]:
        if p["name"] == "mismatch":
            out.append({part["name"]: next(v for k, v in part.items() if k.startswith("value"))
                        for part in p["part"]})
    return out


@pytest.mark.parametrize("content, row, field", [
    (b"participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason\n"
     b"A1,2026-01-05,smi,approved,\nA2,2026-01-05,sud,approved,\nA3,2026-02-30x,smi,approved,\n", 3, "attribution_date"),
    (b"participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason\n"
     b"A1,2026-01-05,smi,approved,\nA2,2026-01-05,asthma,approved,\n", 2, "qualifying_category"),
    (b"participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason\n"
     b"A1,2026-01-05,smi,approved,\nA1,2026-01-06,smi,approved,\n", 2, "participant_id"),
    (b"participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason\n"
     b"A1,2026-01-05,smi,maybe,\n", 1, "authorization_status"),
    (b"participant_id,attribution_date,qualifying_category\nA1,2026-01-05,smi\n", 0, "header"),
])
def test_a_malformed_file_is_refused_whole(client: httpx.Client, content: bytes, row: int, field: str) -> None:
    gid, population = _new_list(client)
    # The first rows are valid and name a real member: nothing of them may be stored either.
    content = content.replace(b"A1,", population.member_ids[0].encode() + b",")
    r = client.post(f"/Group/{gid}/$roster-import", json=_file(content))
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert f"row {row}, field {field}" in issue["diagnostics"] and issue["expression"] == [f"row[{row}].{field}"]
    group = client.get(f"/Group/{gid}").json()
    assert group["meta"]["versionId"] == "1" and "member" not in group
    assert client.get(f"/Group/{gid}/$roster-reconcile").status_code == 422  # no file was recorded


def test_an_atr_group_file_is_imported(client: httpx.Client) -> None:
    gid, population = _new_list(client)
    payer_group = {"resourceType": "Group", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/{population.patients[0]}"}, "period": {"start": "2026-01-01"},
         "extension": [{"url": "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider",
                        "valueReference": {"reference": f"Practitioner/{population.practitioner}"}}]},
        {"entity": {"identifier": {"system": "urn:test:payer-member-id", "value": "nobody-knows"}}}]}
    body = _file(json.dumps(payer_group).encode(), "application/fhir+json", "payer-group.json",
                 memberIdSystem=("valueUri", "urn:test:payer-member-id"))
    r = client.post(f"/Group/{gid}/$roster-import", json=body)
    assert r.status_code == 200, r.text
    assert "Imported 2 rows: 1 members added, 0 updated, 1 participant ids name no member" in r.text
    member = client.get(f"/Group/{gid}").json()["member"][0]
    assert member["period"] == {"start": "2026-01-01"}
    report = client.get(f"/Group/{gid}/$roster-reconcile").json()
    assert [(m["kind"], m["participantId"]) for m in _mismatches(report)] == [("unknown-participant", "nobody-knows")]


def test_a_member_listed_twice_is_added_once_from_its_first_row(client: httpx.Client) -> None:
    """Two rows of one patient and provider make one member, stated by the first of them, in a new list and
    when a later file updates the list; the same patient without a provider is an attribution of its own."""
    gid, population = _new_list(client)
    patient, provider = f"Patient/{population.patients[0]}", f"Practitioner/{population.practitioner}"

    def entry(start: str, attributed: str | None) -> dict:
        extension = [{"url": "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider",
                      "valueReference": {"reference": attributed}}] if attributed else []
        return {"entity": {"reference": patient}, "period": {"start": start}, "extension": extension}

    def imported(starts: list[tuple[str, str | None]]) -> httpx.Response:
        payer_group = {"resourceType": "Group", "type": "person", "actual": True,
                       "member": [entry(start, attributed) for start, attributed in starts]}
        return client.post(f"/Group/{gid}/$roster-import",
                           json=_file(json.dumps(payer_group).encode(), "application/fhir+json", "payer-group.json"))

    def periods() -> dict:
        members = client.get(f"/Group/{gid}").json()["member"]
        return {next((e["valueReference"]["reference"] for e in m.get("extension", [])
                      if e["url"].endswith("ext-attributedProvider")), None): m["period"]["start"] for m in members}

    r = imported([("2026-01-01", provider), ("2026-02-01", None), ("2026-03-01", provider)])
    assert r.status_code == 200, r.text
    assert "Imported 3 rows: 2 members added, 0 updated, 0 participant ids name no member" in r.text
    assert periods() == {provider: "2026-01-01", None: "2026-02-01"}
    r = imported([("2026-04-01", provider), ("2026-05-01", provider), ("2026-06-01", None)])
    assert r.status_code == 200, r.text
    assert "Imported 3 rows: 0 members added, 2 updated, 0 participant ids name no member" in r.text
    assert periods() == {provider: "2026-04-01", None: "2026-06-01"}


def test_member_ids_on_coverage_identifiers_name_their_own_members(client: httpx.Client) -> None:
    """ATR puts the member id on Coverage.identifier: each row's id finds its own Coverage's beneficiary."""
    population = make_population(client, 3)
    r = client.post("/Group", json=draft_group(population))
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    rows = "".join(f"{member},2026-01-05,smi,approved,\n" for member in population.member_ids)
    content = ("participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason\n" + rows).encode()
    r = client.post(f"/Group/{gid}/$roster-import", json=_file(content, memberIdSystem=("valueUri", MEMBER_SYSTEM)))
    assert r.status_code == 200, r.text
    assert "Imported 3 rows: 3 members added, 0 updated, 0 participant ids name no member" in r.text
    members = client.get(f"/Group/{gid}").json()["member"]
    assert sorted(m["entity"]["reference"] for m in members) == sorted(f"Patient/{p}" for p in population.patients)


@pytest.mark.parametrize("layout", ["plain", "quoted-crlf", "blank-line"])
def test_a_csv_file_reads_the_same_however_it_is_written(client: httpx.Client, layout: str) -> None:
    """A plain file is split a column at a time, one with quoted fields (and CRLF line ends) goes through the
    csv module, one with a blank line is read row by row: the same members and stated values either way."""
    population = make_population(client, 2)
    r = client.post("/Group", json=draft_group(population))
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    header = "participant_id,attribution_date,qualifying_category,authorization_status,exclusion_reason"
    rows = [[member, "2026-01-05", "smi", "pending", "zz-no-such-reason"] for member in population.member_ids]
    if layout == "plain":
        text = "\n".join([header, *(",".join(row) for row in rows)]) + "\n"
    elif layout == "quoted-crlf":
        text = "\r\n".join([header, *(",".join(f'"{value}"' for value in row) for row in rows)]) + "\r\n"
    else:
        text = f"{header}\n{','.join(rows[0])}\n\n{','.join(rows[1])}\n"
    r = client.post(f"/Group/{gid}/$roster-import", json=_file(text.encode(), memberIdSystem=("valueUri", MEMBER_SYSTEM)))
    assert r.status_code == 200, r.text
    assert "Imported 2 rows: 2 members added, 0 updated, 0 participant ids name no member" in r.text
    members = client.get(f"/Group/{gid}").json()["member"]
    assert sorted(m["entity"]["reference"] for m in members) == sorted(f"Patient/{p}" for p in population.patients)
    report = client.get(f"/Group/{gid}/$roster-reconcile").json()
    assert sorted(m["participantId"] for m in _mismatches(report) if m["kind"] == "exclusion-reason-invalid") == \
        sorted(population.member_ids)
