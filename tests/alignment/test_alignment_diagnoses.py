"""`alignment_diagnoses` (issue 19): the diagnosis facts the alignment feature keeps in each write
transaction, read over HTTP-made data from the server's own database. Every create, update and delete of
a Condition, Claim or ExplanationOfBenefit (and of what their rows read from: the Encounter a Condition
cites, the Condition a claim cites) leaves exactly the rows of the current versions; a failed transaction
leaves none; the rebuild from the index tables (the backfill: a reindexing) gives the same rows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from server.alignment.diagnoses import maintain
from server.fhir import reindex
from server.fhir.dates import date_range
from server.fhir.searchparams import token_hashes
from server.store.alignment_schema import alignment_diagnoses
from tests.support.alignment import (
    ICD,
    SCT,
    born,
    claim,
    condition,
    condition_resource,
    coverage,
    days_ago,
    finding,
    months_ago,
    patient,
    refused_then_committed,
)
from tests.support.inprocess import AppServer, claims_server, server  # noqa: F401 (the in-process tier)

F20_9, F31_9 = (ICD, "F20.9"), (ICD, "F31.9")
COLUMNS = ("system", "code", "source_kind", "recorded_lo", "affirmed_lo", "created_lo", "service_lo",
           "withdrawn", "uncertain", "inactive", "problem_list", "active")


def _engine(server: AppServer) -> Engine:
    return server.app.state.store.engine


def _rows(server: AppServer, rtype: str, rid: str) -> list[dict[str, Any]]:
    a = alignment_diagnoses.c
    with _engine(server).connect() as conn:
        found = conn.execute(select(alignment_diagnoses).where(a.rtype == rtype, a.rid == rid)).mappings().all()
    return sorted(({name: row[name] for name in ("patient_id", "h_code", *COLUMNS)} for row in found),
                  key=lambda row: (row["code"], row["service_lo"] or 0))


def _all_rows(server: AppServer) -> list[tuple]:
    with _engine(server).connect() as conn:
        return sorted(tuple(row) for row in conn.execute(select(alignment_diagnoses)))


def _day(text: str) -> int:
    return date_range(text)[0]


def test_condition_rows_follow_create_update_and_delete(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(40))
    body = condition_resource(pid, [F20_9, (SCT, "58214004")], recorded=days_ago(30), category="problem-list-item")
    cid = client.post("/Condition", json=body).json()["id"]
    rows = _rows(server, "Condition", cid)
    assert [(r["system"], r["code"]) for r in rows] == [(SCT, "58214004"), F20_9]
    assert {r["h_code"] for r in rows} == {token_hashes("Condition", "code", s, c)[1] for s, c in (F20_9, (SCT, "58214004"))}
    assert all(r["patient_id"] == pid and r["source_kind"] == "clinical" and r["recorded_lo"] == _day(days_ago(30))
               and r["affirmed_lo"] == _day(days_ago(30)) and r["problem_list"] and not r["uncertain"]
               and not r["inactive"] and not r["withdrawn"] and r["active"] is None for r in rows)

    updated = {**condition_resource(pid, [F31_9], recorded=days_ago(10), verification="provisional",
                                    clinical="resolved", abated=days_ago(5)), "id": cid}
    assert client.put(f"/Condition/{cid}", json=updated).status_code == 200
    rows = _rows(server, "Condition", cid)
    assert [(r["code"], r["uncertain"], r["inactive"], r["problem_list"], r["recorded_lo"]) for r in rows] == [
        ("F31.9", True, True, False, _day(days_ago(10)))]

    assert client.delete(f"/Condition/{cid}").status_code == 204
    assert _rows(server, "Condition", cid) == []


def test_a_conditions_last_affirmed_date_follows_the_encounter_it_cites(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(40))
    encounter = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "period": {"start": days_ago(3), "end": days_ago(3)}}
    eid = client.post("/Encounter", json=encounter).json()["id"]
    body = {**condition_resource(pid, [F20_9], recorded=days_ago(400)), "encounter": {"reference": f"Encounter/{eid}"}}
    cid = client.post("/Condition", json=body).json()["id"]
    assert [r["affirmed_lo"] for r in _rows(server, "Condition", cid)] == [_day(days_ago(3))]

    encounter["period"] = {"start": days_ago(1), "end": days_ago(1)}
    assert client.put(f"/Encounter/{eid}", json={**encounter, "id": eid}).status_code == 200
    assert [r["affirmed_lo"] for r in _rows(server, "Condition", cid)] == [_day(days_ago(1))]

    assert client.delete(f"/Encounter/{eid}").status_code == 204
    assert [r["affirmed_lo"] for r in _rows(server, "Condition", cid)] == [_day(days_ago(400))]


@pytest.mark.parametrize("rtype", ["Claim", "ExplanationOfBenefit"])
def test_claim_rows_follow_the_claim_and_the_condition_it_cites(server: AppServer, client: httpx.Client, claims_client: httpx.Client,
                                                                  rtype: str) -> None:
    pid = patient(client, born(40))
    cid = condition(client, pid, [F20_9])
    claim_id = claim(claims_client, pid, codes=[F31_9], references=[cid], rtype=rtype, day=days_ago(20))
    rows = _rows(server, rtype, claim_id)
    assert [(r["code"], r["source_kind"], r["active"], r["created_lo"], r["service_lo"]) for r in rows] == [
        ("F20.9", "claims", True, _day(days_ago(20)), _day(days_ago(20))),
        ("F31.9", "claims", True, _day(days_ago(20)), _day(days_ago(20)))]
    # the cited Condition's coding keeps its Condition.code hash: the value sets match it as a Condition code
    assert rows[0]["h_code"] == token_hashes("Condition", "code", *F20_9)[1]
    assert rows[1]["h_code"] == token_hashes(rtype, "diagnosis", *F31_9)[1]

    cited = client.get(f"/Condition/{cid}").json()
    cited["code"] = {"coding": [{"system": ICD, "code": "F25.0"}]}
    assert client.put(f"/Condition/{cid}", json=cited).status_code == 200
    assert [r["code"] for r in _rows(server, rtype, claim_id)] == ["F25.0", "F31.9"]
    assert client.delete(f"/Condition/{cid}").status_code == 204
    assert [r["code"] for r in _rows(server, rtype, claim_id)] == ["F31.9"]

    body = claims_client.get(f"/{rtype}/{claim_id}").json()
    body.update(status="cancelled", item=[{"sequence": 1, "productOrService": {"text": "visit"},
                                           "servicedDate": days_ago(40)}])
    assert claims_client.put(f"/{rtype}/{claim_id}", json=body).status_code == 200
    rows = _rows(server, rtype, claim_id)  # one row per service date: billablePeriod and the item's
    assert [(r["code"], r["active"], r["service_lo"]) for r in rows] == [
        ("F31.9", False, _day(days_ago(40))), ("F31.9", False, _day(days_ago(20)))]

    assert claims_client.delete(f"/{rtype}/{claim_id}").status_code == 204
    assert _rows(server, rtype, claim_id) == []


def _entries(pid: str) -> list[dict[str, Any]]:
    condition_url = "urn:uuid:00000000-0000-4000-8000-0000000000c1"
    return [
        {"fullUrl": condition_url, "resource": condition_resource(pid, [F20_9]),
         "request": {"method": "POST", "url": "Condition"}},
        {"resource": {"resourceType": "Claim", "status": "active", "use": "claim", "created": days_ago(20),
                      "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                           "code": "professional"}]},
                      "patient": {"reference": f"Patient/{pid}"}, "provider": {"display": "Test provider"},
                      "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                               "code": "normal"}]},
                      "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Test coverage"}}],
                      "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": condition_url}}]},
         "request": {"method": "POST", "url": "Claim"}},
    ]


def _patient_rows(server: AppServer, pid: str) -> list[tuple]:
    a = alignment_diagnoses.c
    with _engine(server).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(a.rtype, a.code).where(a.patient_id == pid)))


def test_transaction_bundle_rows_commit_with_it_and_a_failed_one_leaves_none(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(40))
    committed = [("Claim", "F20.9"), ("Condition", "F20.9")]
    assert refused_then_committed(client, _entries(pid), pid, lambda: _patient_rows(server, pid)) == ([], committed)


def test_the_rebuild_from_the_index_tables_gives_the_rows_kept_at_write_time(
        server: AppServer, client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    cid = condition(client, pid, [F20_9, (SCT, "58214004")], verification="differential")
    condition(claims_client, pid, [F31_9])  # claims-feed evidence
    claim(claims_client, pid, codes=[F31_9], references=[cid])
    claim(claims_client, pid, codes=[F20_9], rtype="ExplanationOfBenefit", items=[
        {"productOrService": {"text": "visit"}, "servicedDate": days_ago(50)}])
    kept = _all_rows(server)
    engine = _engine(server)
    # what the migration asks for: the diagnosis parameters indexed anew, then every row rebuilt
    reindex.request(engine, {"Condition": ["code"], "Claim": ["diagnosis"], "ExplanationOfBenefit": ["diagnosis"]})
    assert reindex.run_requested(engine, [maintain]) > 0
    assert _all_rows(server) == kept
    assert any(row[1] == cid for row in kept)


def test_a_claim_citing_a_lifelong_diagnosis_counts_it_in_its_categories_alone(
        server: AppServer, client: httpx.Client, claims_client: httpx.Client) -> None:
    """The lifelong codes are a property of a coding, not a value set: a claim citing a lifelong diagnosis
    by reference gives evidence of its category, and no `~lifelong` one (the index-table statement did)."""
    pid = patient(client, born(34))
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    cid = condition(client, pid, [F20_9], recorded=months_ago(28))
    claim(claims_client, pid, references=[cid])
    assert set(finding(client, pid).categories) == {"smi", "csnp-mental-health"}
