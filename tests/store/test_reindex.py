"""Search parameters added after resources were stored get their index rows without a migration
running live code: migrations record reindex requests, the server carries them out at start, and
`planfit reindex` does the same on demand (server/fhir/reindex.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import sqlalchemy as sa

from server.store.db import make_engine
from tests.support.servers import ROOT, RunningServer, unique


def _coverage(plan: str) -> dict:
    return {
        "resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{unique('p')}"},
        "payor": [{"display": "Test plan"}],
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                         "code": "plan"}]}, "value": plan}],
    }


def _found(client: httpx.Client, plan: str) -> int:
    r = client.get("/Coverage", params={"plan": plan, "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def _plan_rows(engine: sa.Engine) -> int:
    from server.fhir.searchparams import param_hash

    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM idx_token WHERE rtype = 'Coverage' AND h_param = :h"),
                            {"h": param_hash("Coverage", "plan")}).scalar_one()


def _reindex(server: RunningServer, *params: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "server.cli", "reindex", *(f"--param={p}" for p in params)]
    env = {**os.environ, "PLANFIT_DATABASE_URL": server.database_url}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_started_server_has_carried_out_the_migrations_requests(server: RunningServer) -> None:
    engine = make_engine(server.database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM reindex_request")).scalar_one() == 0
    finally:
        engine.dispose()


def test_reindex_rebuilds_a_parameters_rows_and_never_doubles_them(server: RunningServer, client: httpx.Client) -> None:
    plan = unique("plan")
    for _ in range(3):
        assert client.post("/Coverage", json=_coverage(plan)).status_code == 201
    assert _found(client, plan) == 3
    engine = make_engine(server.database_url)
    try:
        before = _plan_rows(engine)
        from server.fhir.searchparams import param_hash

        with engine.begin() as conn:  # as a database that stored these before the parameter existed
            conn.execute(sa.text("DELETE FROM idx_token WHERE rtype = 'Coverage' AND h_param = :h"),
                         {"h": param_hash("Coverage", "plan")})
        assert _found(client, plan) == 0

        done = _reindex(server, "Coverage.plan")
        assert done.returncode == 0, done.stderr
        assert "reindexed" in done.stdout
        assert _found(client, plan) == 3
        assert _plan_rows(engine) == before

        again = _reindex(server, "Coverage.plan")
        assert again.returncode == 0, again.stderr
        assert _plan_rows(engine) == before and _found(client, plan) == 3
    finally:
        engine.dispose()


def test_reindex_refuses_unknown_parameters(server: RunningServer) -> None:
    done = _reindex(server, "Coverage.no-such-parameter")
    assert done.returncode == 2
    assert "Coverage.no-such-parameter" in done.stderr
    bad = _reindex(server, "Coverage")
    assert bad.returncode == 2 and "TYPE.CODE" in bad.stderr


def test_planfit_evaluate_carries_out_the_upgrades_requests_before_it_evaluates(server: RunningServer,
                                                                                  client: httpx.Client) -> None:
    """Right after an upgrade, the facts an evaluation reads are still to be filled by the migrations' reindex
    requests. `planfit evaluate` run then (no server started in between) fills them first: a member with an
    active Coverage is not found without one, nor left without a finding (no Patient facts: no member)."""
    from tests.support.alignment import born, coverage, patient

    pid = patient(client, born(40))
    coverage(client, pid, plan="NY-MMC", sopt="211")
    engine = make_engine(server.database_url)
    try:
        with engine.begin() as conn:  # the state migration 0934 leaves: no coverage facts, a request for them
            conn.execute(sa.text("DELETE FROM alignment_coverage_codes WHERE rid IN (SELECT rid FROM alignment_coverages"
                                 " WHERE patient_id = :p)"), {"p": pid})
            conn.execute(sa.text("DELETE FROM alignment_coverages WHERE patient_id = :p"), {"p": pid})
            conn.execute(sa.text("INSERT INTO reindex_request (rtype, code) VALUES ('Coverage', 'beneficiary')"))
            # … and the state migration 0950 leaves: no Patient facts, a request for them
            conn.execute(sa.text("DELETE FROM alignment_member_codes WHERE patient_id = :p"), {"p": pid})
            conn.execute(sa.text("DELETE FROM alignment_members WHERE patient_id = :p"), {"p": pid})
            conn.execute(sa.text("INSERT INTO reindex_request (rtype, code) VALUES ('Patient', 'birthdate')"))
        args = [sys.executable, "-m", "server.cli", "evaluate"]
        env = {**os.environ, "PLANFIT_DATABASE_URL": server.database_url}
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM reindex_request")).scalar_one() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM alignment_coverages WHERE patient_id = :p"),
                                {"p": pid}).scalar_one() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM alignment_members WHERE patient_id = :p"),
                                {"p": pid}).scalar_one() == 1
            status = conn.execute(sa.text("SELECT status FROM findings WHERE patient_id = :p"), {"p": pid}).scalar_one()
        assert status != "not-evaluable"
    finally:
        engine.dispose()
