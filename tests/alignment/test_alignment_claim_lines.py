"""`alignment_claim_lines` (issue 19): the claim-line facts the alignment feature keeps in each write
transaction for the HARP risk factors, read over HTTP-made data from the server's own database. Every
create, update and delete of a claim leaves exactly the rows of its current version (none once cancelled,
undated or deleted); a failed transaction leaves none; the rebuild from the index tables (the backfill: a
reindexing) gives the same rows. `test_alignment_harp_risk.py` shows the evaluation reading them."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, delete, select

from server.alignment.claim_facts import maintain
from server.fhir import reindex
from server.fhir.dates import date_range
from server.store.alignment_schema import alignment_claim_lines
from tests.support.alignment import born, claim, days_ago, patient, refused_then_committed
from tests.support.inprocess import AppServer, claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import unique

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"


def _engine(server: AppServer) -> Engine:
    return server.app.state.store.engine


def _lines(server: AppServer, rid: str) -> list[tuple]:
    """The claim's rows as (rtype, patient_id, code, service_lo, service_hi), sorted."""
    a = alignment_claim_lines.c
    with _engine(server).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(
            select(a.rtype, a.patient_id, a.code, a.service_lo, a.service_hi).where(a.rid == rid)))


def _all(server: AppServer) -> list[tuple]:
    with _engine(server).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(alignment_claim_lines)))


def _item(code: str, day: str, system: str = HCPCS) -> dict[str, Any]:
    return {"productOrService": {"coding": [{"system": system, "code": code}]}, "servicedDate": day}


def test_line_rows_follow_create_update_and_delete(server: AppServer, client: httpx.Client,
                                                  claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    first, last = days_ago(90), days_ago(60)
    rid = claim(claims_client, pid, day=first, end=last, rtype="ExplanationOfBenefit",
                items=[_item("H0040", first), _item("H0040", days_ago(70)), _item("T1017", last)])
    lo, hi = date_range(first)[0], date_range(last)[1]
    assert _lines(server, rid) == [("ExplanationOfBenefit", pid, "H0040", lo, hi),
                                   ("ExplanationOfBenefit", pid, "T1017", lo, hi)]

    body = claims_client.get(f"/ExplanationOfBenefit/{rid}").json()
    body["item"] = [{"sequence": 1, "revenue": {"coding": [{"system": REVENUE, "code": "0114"}]},
                     **_item("99213", first)}]
    body["billablePeriod"] = {"start": first, "end": first}
    assert claims_client.put(f"/ExplanationOfBenefit/{rid}", json=body).status_code == 200
    day = date_range(first)
    assert _lines(server, rid) == [("ExplanationOfBenefit", pid, "0114", *day),
                                   ("ExplanationOfBenefit", pid, "99213", *day)]

    body["status"] = "cancelled"  # not an active claim: no rows
    assert claims_client.put(f"/ExplanationOfBenefit/{rid}", json=body).status_code == 200
    assert _lines(server, rid) == []

    body["status"] = "active"
    assert claims_client.put(f"/ExplanationOfBenefit/{rid}", json=body).status_code == 200
    assert len(_lines(server, rid)) == 2
    assert claims_client.delete(f"/ExplanationOfBenefit/{rid}").status_code == 204
    assert _lines(server, rid) == []


def test_transaction_bundle_rows_commit_with_it_and_a_failed_one_leaves_none(server: AppServer, client: httpx.Client,
                                                                            claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    rid, day = unique("claim"), days_ago(30)
    new = {"resourceType": "Claim", "id": rid, "status": "active", "use": "claim",
           "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
           "patient": {"reference": f"Patient/{pid}"}, "billablePeriod": {"start": day, "end": day}, "created": day,
           "provider": {"display": "Test provider"},
           "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
           "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Test coverage"}}],
           "item": [{"sequence": 1, **_item("H0039", day)}]}
    entries = [{"resource": new, "request": {"method": "PUT", "url": f"Claim/{rid}"}}]
    refused, committed = refused_then_committed(claims_client, entries, pid, lambda: _lines(server, rid))
    assert refused == []
    assert committed == [("Claim", pid, "H0039", *date_range(day))]


def test_the_rebuild_from_the_index_tables_gives_the_rows_kept_at_write_time(server: AppServer, client: httpx.Client,
                                                                             claims_client: httpx.Client) -> None:
    pid = patient(client, born(50))
    claim(claims_client, pid, day=days_ago(40), items=[_item("H0040", days_ago(40)), _item("T1017", days_ago(39))])
    claim(claims_client, pid, day=days_ago(20), rtype="ExplanationOfBenefit", items=[_item("H0040", days_ago(20))])
    claim(claims_client, pid, day=days_ago(10), status="cancelled", items=[_item("H0040", days_ago(10))])
    gone = claim(claims_client, pid, day=days_ago(5), items=[_item("T1017", days_ago(5))])
    assert claims_client.delete(f"/Claim/{gone}").status_code == 204
    kept = _all(server)
    assert len([row for row in kept if row[2] == pid]) == 3
    engine = _engine(server)
    with engine.begin() as conn:  # the state migration 0951 leaves: an empty table
        conn.execute(delete(alignment_claim_lines))
    # what the migration asks for: the claims' service parameter indexed anew, then every row rebuilt
    reindex.request(engine, {"Claim": ["service"], "ExplanationOfBenefit": ["service"]})
    assert reindex.run_requested(engine, [maintain]) > 0
    assert _all(server) == kept
    assert _lines(server, gone) == []
