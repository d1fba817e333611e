"""`alignment_coverages` and `alignment_coverage_codes` (issue 19): the coverage facts the alignment feature
keeps in each write transaction, read over HTTP-made data from the server's own database. Every create,
update and delete of a Coverage leaves exactly the rows of its current version (none unless it is active
and names a Patient); a failed transaction leaves none; the rebuild from the index tables (the backfill: a
reindexing) gives the same rows; the finding reads them."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, select

from server.alignment.coverage_facts import maintain
from server.fhir import reindex
from server.fhir.dates import date_range
from server.store.alignment_schema import alignment_coverage_codes, alignment_coverages
from tests.support.alignment import SOPT, born, coverage, finding, months_ago, patient, refused_then_committed
from tests.support.inprocess import AppServer, claims_server, server  # noqa: F401 (the in-process tier)


def _engine(server: AppServer) -> Engine:
    return server.app.state.store.engine


def _facts(server: AppServer, rid: str) -> tuple[list[dict[str, Any]], list[tuple]]:
    """(the Coverage's row(s), its codes as (param, system, code) sorted)."""
    a, k = alignment_coverages.c, alignment_coverage_codes.c
    with _engine(server).connect() as conn:
        rows = [dict(r) for r in conn.execute(select(alignment_coverages).where(a.rid == rid)).mappings()]
        codes = sorted(tuple(r) for r in conn.execute(select(k.param, k.system, k.code).where(k.rid == rid)))
    return rows, codes


def _all(server: AppServer) -> tuple[list[tuple], list[tuple]]:
    with _engine(server).connect() as conn:
        return (sorted(tuple(r) for r in conn.execute(select(alignment_coverages))),
                sorted(tuple(r) for r in conn.execute(select(alignment_coverage_codes))))


def test_coverage_rows_follow_create_update_and_delete(server: AppServer, client: httpx.Client,
                                                       claims_client: httpx.Client) -> None:
    pid = patient(client, born(40))
    start, end = months_ago(30), months_ago(1)
    cid = coverage(claims_client, pid, plan=" NY-MMC ", sopt="211", dual="02", harp="H1", aid_category=" SSI ",
                   start=start, end=end)
    rows, codes = _facts(server, cid)
    assert rows == [{"rid": cid, "patient_id": pid, "period_lo": date_range(start)[0], "period_hi": date_range(end)[1],
                     "dual_code": "02", "harp_status": "H1", "aid_category": "ssi", "orec": None, "institutional": None}]
    assert [(param, code) for param, _system, code in codes] == [("plan", " NY-MMC "), ("type", "211")]
    assert codes[1][1] == SOPT

    body = claims_client.get(f"/Coverage/{cid}").json()
    body.pop("extension")
    body.pop("period")
    body["type"] = {"coding": [{"system": SOPT, "code": "311"}]}
    assert claims_client.put(f"/Coverage/{cid}", json=body).status_code == 200
    rows, codes = _facts(server, cid)
    assert [(r["period_lo"], r["period_hi"], r["dual_code"], r["harp_status"]) for r in rows] == [(None, None, None, None)]
    assert [c for c in codes if c[0] == "type"] == [("type", SOPT, "311")]

    body["status"] = "cancelled"  # not active: no facts, and the finding sees no coverage
    assert claims_client.put(f"/Coverage/{cid}", json=body).status_code == 200
    assert _facts(server, cid) == ([], [])
    assert finding(client, pid).status == "not-evaluable"

    body["status"] = "active"
    assert claims_client.put(f"/Coverage/{cid}", json=body).status_code == 200
    assert len(_facts(server, cid)[0]) == 1
    assert claims_client.delete(f"/Coverage/{cid}").status_code == 204
    assert _facts(server, cid) == ([], [])


def _entries(pid: str) -> list[dict[str, Any]]:
    new_coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{pid}"},
                    "payor": [{"display": "Test plan"}], "period": {"start": months_ago(6)},
                    "type": {"coding": [{"system": SOPT, "code": "211"}]}}
    return [{"resource": new_coverage, "request": {"method": "POST", "url": "Coverage"}}]


def _patient_rows(server: AppServer, pid: str) -> list[str]:
    a = alignment_coverages.c
    with _engine(server).connect() as conn:
        return list(conn.execute(select(a.patient_id).where(a.patient_id == pid)).scalars())


def test_transaction_bundle_rows_commit_with_it_and_a_failed_one_leaves_none(server: AppServer, client: httpx.Client) -> None:
    pid = patient(client, born(40))
    assert refused_then_committed(client, _entries(pid), pid, lambda: _patient_rows(server, pid)) == ([], [pid])


def test_the_rebuild_from_the_index_tables_gives_the_rows_kept_at_write_time(
        server: AppServer, client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(70))
    coverage(claims_client, pid, plan="NY-MMC", sopt="211", harp="H9", aid_category="SSI")
    coverage(claims_client, pid, sopt="121", dual="02", start=months_ago(20), end=months_ago(2))
    coverage(claims_client, pid, sopt="121", status="cancelled")
    kept = _all(server)
    assert _patient_rows(server, pid) == [pid, pid]  # the cancelled Coverage has none
    engine = _engine(server)
    # what the migration asks for: the beneficiary parameter indexed anew, then every row rebuilt
    reindex.request(engine, {"Coverage": ["beneficiary"]})
    assert reindex.run_requested(engine, [maintain]) > 0
    assert _all(server) == kept
