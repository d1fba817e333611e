"""`alignment_members` and `alignment_member_codes` (issue 19): the Patient facts the alignment feature keeps
in each write transaction, read over HTTP-made data from the server's own database. Every create, update
and delete of a Patient leaves exactly the rows of its current version (none once deleted); a failed
transaction leaves none; the rebuild from the index tables (the backfill: a reindexing) gives the same
rows; the evaluation reads them (a member's State code, address and deletion change the finding)."""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import pytest
from sqlalchemy import Engine, delete, select, text

from server.alignment.patient_facts import maintain
from server.fhir import reindex
from server.fhir.dates import date_range
from server.store.alignment_schema import alignment_member_codes, alignment_members
from tests.support.alignment import HARP_EXT, ICD, born, condition, coverage, finding, patient, refused_then_committed
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.inprocess import AppServer, started_app_server
from tests.support.servers import DATABASES, unique


def _engine(server: AppServer) -> Engine:
    return server.app.state.store.engine


def _facts(server: AppServer, pid: str) -> tuple[list[tuple], list[tuple]]:
    """(the Patient's row(s) as (birth_lo, birth_hi, opwdd), its codes as (param, code) sorted)."""
    m, k = alignment_members.c, alignment_member_codes.c
    with _engine(server).connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(m.birth_lo, m.birth_hi, m.opwdd).where(m.patient_id == pid))]
        codes = sorted(tuple(r) for r in conn.execute(select(k.param, k.code).where(k.patient_id == pid)))
    return rows, codes


def _all(server: AppServer) -> tuple[list[tuple], list[tuple]]:
    with _engine(server).connect() as conn:
        return (sorted(tuple(r) for r in conn.execute(select(alignment_members))),
                sorted(tuple(r) for r in conn.execute(select(alignment_member_codes))))


def test_member_rows_follow_create_update_and_delete(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(40), harp="H9", opwdd=True, state="NY", postal_code="10001-2345")
    body = client.get(f"/Patient/{pid}").json()
    lo, hi = date_range(body["birthDate"])
    assert _facts(server, pid) == ([(lo, hi, True)], [("address-postalcode", "10001-2345"), ("address-state", "ny"),
                                                       ("harp-status", "H9")])

    body["birthDate"] = "1970"  # a year only: the bounds span it
    body.pop("extension")
    body["address"] = [{"state": "NJ"}, {"state": "NY", "postalCode": "12207"}]
    assert client.put(f"/Patient/{pid}", json=body).status_code == 200
    assert _facts(server, pid) == ([(*date_range("1970"), False)], [("address-postalcode", "12207"),
                                                                     ("address-state", "nj"), ("address-state", "ny")])

    body.pop("birthDate")
    body.pop("address")
    assert client.put(f"/Patient/{pid}", json=body).status_code == 200
    assert _facts(server, pid) == ([(None, None, False)], [])

    assert client.delete(f"/Patient/{pid}").status_code == 204
    assert _facts(server, pid) == ([], [])


def test_the_gender_is_kept_for_the_risk_engine(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(70))
    m = alignment_members.c

    def gender() -> list[str | None]:
        with _engine(server).connect() as conn:
            return list(conn.execute(select(m.gender).where(m.patient_id == pid)).scalars())

    assert gender() == [None]
    body = client.get(f"/Patient/{pid}").json()
    for value in ("female", "male"):
        body["gender"] = value
        assert client.put(f"/Patient/{pid}", json=body).status_code == 200
        assert gender() == [value]


def _entries(pid: str) -> list[dict[str, Any]]:
    new_patient = {"resourceType": "Patient", "id": pid, "birthDate": "1980-05-01",
                   "address": [{"state": "NY", "postalCode": "10001"}]}
    return [{"resource": new_patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}}]


def test_transaction_bundle_rows_commit_with_it_and_a_failed_one_leaves_none(server: AppServer,
                                                                            client: httpx.Client) -> None:
    pid = patient(client, born(40))  # the failing entry's target
    new = unique("member")
    refused, committed = refused_then_committed(client, _entries(new), pid, lambda: _facts(server, new))
    assert refused == ([], [])
    assert committed == ([(*date_range("1980-05-01"), False)], [("address-postalcode", "10001"), ("address-state", "ny")])


def test_the_rebuild_from_the_index_tables_gives_the_rows_kept_at_write_time(server: AppServer,
                                                                             client: httpx.Client) -> None:
    patient(client, born(70), harp="H7", state="NY", postal_code="10001")
    other = patient(client, born(30), opwdd=True)
    body = client.get(f"/Patient/{other}").json()
    assert client.put(f"/Patient/{other}", json={**body, "gender": "female"}).status_code == 200
    gone = patient(client, born(50), state="CA")
    assert client.delete(f"/Patient/{gone}").status_code == 204
    kept = _all(server)
    engine = _engine(server)
    with engine.begin() as conn:  # the state migration 0950 leaves: empty tables
        conn.execute(delete(alignment_member_codes))
        conn.execute(delete(alignment_members))
    # what the migrations ask for: the birthdate (0950) and gender (0951) parameters indexed anew, then every
    # row rebuilt
    reindex.request(engine, {"Patient": ["birthdate", "gender"]})
    assert reindex.run_requested(engine, [maintain]) > 0
    assert _all(server) == kept
    assert _facts(server, gone) == ([], [])


def test_the_evaluation_reads_the_members_codes_and_rows(client: httpx.Client, claims_client: httpx.Client) -> None:
    """A mainstream adult with schizophrenia: a HARP referral candidate until the State's code on the
    Patient confirms (H9) or excludes (H7) them; deleted, the member has no finding."""
    pid = patient(client, born(40), state="NY")
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    condition(client, pid, [(ICD, "F20.9")])
    f = finding(client, pid)
    assert (f.status, f.recommended) == ("misaligned", "ny-harp")
    assert "state-determination-pending" in f.reasons

    body = client.get(f"/Patient/{pid}").json()
    for code, reason in (("H9", "state-identified"), ("H7", "state-excluded")):
        body["extension"] = [{"url": HARP_EXT, "valueCode": code}]
        assert client.put(f"/Patient/{pid}", json=body).status_code == 200
        assert reason in finding(client, pid).reasons
    assert finding(client, pid).recommended == "ny-mmc"

    assert client.delete(f"/Patient/{pid}").status_code == 204
    assert client.get(f"/Patient/{pid}/$alignment").status_code in (404, 410)


@pytest.fixture(params=DATABASES)
def own_server(request, tmp_path_factory, backend_client_keys) -> Iterator[AppServer]:
    """A server on a database of its own: whatever analyzed its tables, this test did."""
    yield from started_app_server(request.param, tmp_path_factory, backend_client_keys)


def _analyzed(engine: Engine, table: str) -> bool:
    """Whether `table` has planner statistics from an ANALYZE the server ran (not autovacuum's)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return bool(conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar()
                        and conn.execute(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}).scalar())
        return bool(conn.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                      "WHERE schemaname = current_schema() AND relname = :t"), {"t": table}).scalar())


def test_the_address_rows_the_facts_read_are_analyzed_once_grown(own_server: AppServer) -> None:
    """Every write of Patients reads their address rows in `idx_string` (the codes above). Left without
    statistics, PostgreSQL planned that read as a scan of every Patient's address rows, once per write, and
    the 1,000,000-member ingest slowed as the table grew (2026-12-05). So a load that grew it gets it
    analyzed, as the tables evaluations read are, before the next evaluation."""
    entries = [{"resource": {"resourceType": "Patient", "name": [{"family": f"Family{i}", "given": ["Given"]}],
                             "identifier": [{"system": "urn:test:alignment", "value": unique("member")}],
                             "address": [{"city": "Albany", "state": "NY", "postalCode": f"{12000 + i}"}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(400)]
    engine = _engine(own_server)
    with own_server.http(own_server.auth) as client:
        assert not _analyzed(engine, "idx_string")
        r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, timeout=120)
        assert r.status_code == 200, r.text[:500]
        deadline = time.monotonic() + 30
        while not _analyzed(engine, "idx_string"):  # PostgreSQL counts the rows changed with a delay
            assert time.monotonic() < deadline, "the Patients' string index rows were never analyzed"
            patient(client, born(50), state="NY")  # a write: its evaluation first analyzes what grew
            time.sleep(0.3)
