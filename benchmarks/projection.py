"""Claims-based alignment projection (SPEC §8, §13: ≥ 10,000 beneficiaries/s, set-based).

`projection_stage` runs on a populated server (the `projection` stage of `planfit bench`): it puts the six
synthetic practices, loads `--members` beneficiaries' claim lines and beneficiary file
(`$alignment-projection-load`) and projects them (`$alignment-projection`, which also writes the three
ATR Groups), over HTTP; it checks the aligned counts against the synthetic ground truth.

Standalone, `python -m benchmarks.projection --beneficiaries 100000 --database-url URL` times the
set-based statement alone (`server/projection/engine.py: project`) on a fresh PostgreSQL schema (or a
SQLite file) and checks every beneficiary's alignment against the ground truth.
"""

from __future__ import annotations

import argparse
import time

import httpx
from sqlalchemy import create_engine, insert, select

from benchmarks.servers import Server, expect, peak_rss_mb, postgres_schema, reset_peak
from server.projection import engine
from server.synth import projection as synth
from server.projection.inputs import parse_beneficiaries, parse_claims, replace_inputs
from server.projection.rules import load_rules
from server.projection.schema import TABLES, projection_results, projection_runs

SEED = 2323
YEAR = 2026
TIN = "urn:oid:2.16.840.1.113883.4.4"


def _aligned_counts(expected: dict) -> tuple[int, int]:
    inside = sum(1 for v in expected.values() if v and v[0] in synth.PARTICIPANT_TINS)
    outside = sum(1 for v in expected.values() if v and v[0] in synth.OUTSIDE_TINS)
    return inside, outside


def projection_stage(server: Server, beneficiaries: int) -> dict:
    files = synth.generate(beneficiaries, SEED, YEAR)
    with httpx.Client(base_url=server.url, timeout=3600) as http:
        for tin in (*synth.PARTICIPANT_TINS, *synth.OUTSIDE_TINS):
            expect(http.put(f"Organization/bench-{tin}", json={"resourceType": "Organization", "id": f"bench-{tin}",
                                                               "identifier": [{"system": TIN, "value": tin}]}),
                   201, "PUT Organization")
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "aco", "valueString": "bench"}, {"name": "claims", "valueString": files["claims"]},
            {"name": "beneficiaries", "valueString": files["beneficiaries"]}]}
        start = time.perf_counter()
        expect(http.post("Group/$alignment-projection-load", json=body), 200, "POST $alignment-projection-load")
        loaded = time.perf_counter() - start
        reset_peak(server.pid)
        start = time.perf_counter()
        reply = expect(http.post("Group/$alignment-projection", json={"resourceType": "Parameters", "parameter": [
            {"name": "aco", "valueString": "bench"}, {"name": "performanceYear", "valueString": str(YEAR)},
            *({"name": "participant", "valueReference": {"reference": f"Organization/bench-{t}"}}
              for t in synth.PARTICIPANT_TINS)]}), 200, "POST $alignment-projection")
        seconds = time.perf_counter() - start
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
              for p in reply.json()["parameter"] if "part" not in p}
    inside, outside = _aligned_counts(files["expected"])
    return {"beneficiaries": beneficiaries, "load_seconds": round(loaded, 2), "seconds": round(seconds, 2),
            "beneficiaries_per_s": round(beneficiaries / seconds),
            "matches_ground_truth": (values["alignedByClaims"] + values["alignedVoluntarily"], values["alignedOutside"])
            == (inside, outside),
            "peak_rss_mb": round(peak_rss_mb(server.pid))}


def statement_only(database_url: str, beneficiaries: int) -> dict:
    """The set-based projection statement alone, on a fresh database, checked beneficiary by beneficiary."""
    files = synth.generate(beneficiaries, SEED, YEAR)
    rules = load_rules()
    db = create_engine(database_url)
    with db.begin() as conn:
        for table in TABLES:
            table.create(conn)
        replace_inputs(conn, "bench", parse_claims(files["claims"], "bench"),
                       parse_beneficiaries(files["beneficiaries"], "bench"))
    with db.begin() as conn:
        period = rules.period(YEAR)
        run_id = conn.execute(insert(projection_runs).values(
            aco="bench", performance_year=YEAR, participants=",".join(synth.PARTICIPANT_TINS), period_start=period.start,
            period_end=period.end, created_us=0).returning(projection_runs.c.run_id)).scalar_one()
        start = time.perf_counter()
        engine.project(conn, rules, engine.Run(run_id, None, "bench", YEAR, period, synth.PARTICIPANT_TINS))
        seconds = time.perf_counter() - start
        r = projection_results.c
        got = {p: (t, n, b) for p, t, n, b in conn.execute(select(r.patient_id, r.tin, r.npi, r.basis))}
    db.dispose()
    claims = files["claims"].count("\n") - 1
    return {"beneficiaries": beneficiaries, "claim_lines": claims, "seconds": round(seconds, 2),
            "beneficiaries_per_s": round(beneficiaries / seconds),
            "matches_ground_truth": got == {p: v for p, v in files["expected"].items() if v}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beneficiaries", type=int, default=100_000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if args.database_url.startswith("sqlite"):
        print(statement_only(args.database_url, args.beneficiaries))
        return
    with postgres_schema(args.database_url) as url:
        print(statement_only(url, args.beneficiaries))


if __name__ == "__main__":
    main()
