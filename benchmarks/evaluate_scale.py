"""The full re-evaluation on one loaded PostgreSQL schema, for comparing two versions of the code on the same
data (issue 19: the write-time diagnosis facts):

    python -m benchmarks.evaluate_scale --members 20000 --keep          # load, evaluate; prints the schema
    PYTHONPATH=<other checkout> python -m benchmarks.evaluate_scale --schema bench_1234abcd   # evaluate again

The servers run the code of the checkout this module is imported from. Each run prints the ingest figures
(when it loads), the start-up time of the servers (a newer version migrates and backfills there), the full
re-evaluation's figures, the load average beside each, and the EXPLAIN ANALYZE of the evidence statement.
With `--stages`, each statement of the full evaluation again, one at a time in a transaction rolled back,
without parallel workers: its seconds and the CPU seconds of the database backend that ran it (read from
/proc, so only for a PostgreSQL on this machine), the figures that say where the time goes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psycopg
from sqlalchemy import create_engine, text

from benchmarks import evaluate, ingest
from benchmarks.command import DEFAULT_DSN
from benchmarks.servers import analyze, cpu_seconds, running, schema_url


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def stored_population(dsn: str, schema: str) -> tuple[int, dict[str, int]]:
    """A kept schema's members and the statuses its findings hold from the previous run: the run must give
    the same (`matches_ground_truth` then compares with that run, which compared with the ground truth)."""
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        members = conn.execute("SELECT count(*) FROM resources WHERE rtype = 'Patient' AND deleted IS FALSE").fetchone()
        statuses = dict(conn.execute("SELECT status, count(*) FROM findings GROUP BY status ORDER BY status").fetchall())
    return members[0], statuses


def _statement_name(statement: object) -> str:
    target = getattr(statement, "table", None)
    target = getattr(statement, "element", None) if target is None else target
    return f"{type(statement).__name__} {getattr(target, 'name', '')}"


def stage_timings(url: str) -> list[dict]:
    """Each statement of a full evaluation, timed alone (see the module docstring); rolled back."""
    from datetime import date

    from server.alignment.codes import install_codes
    from server.alignment.engine import AlignmentEngine, EngineConfig
    from server.alignment.facts import EVERYONE
    from server.alignment.mappings import load_mappings
    from server.alignment.rules import EVALUATED_AT

    engine = create_engine(url)
    evaluation = AlignmentEngine(engine, load_mappings(), EngineConfig(evaluation_date=date.fromisoformat(ingest.AS_OF)))
    stages = []
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            evaluation.lock(conn)
            AlignmentEngine._plan_for_everyone(conn)
            conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))  # the backend's CPU is the statement's
            install_codes(conn, evaluation.codes_key, evaluation._code_rows)
            for statement in evaluation._build(evaluation.window(), EVERYONE):
                cpu, started = cpu_seconds(pid), time.perf_counter()
                conn.execute(statement, {EVALUATED_AT: time.time_ns() // 1000})
                stages.append({"statement": _statement_name(statement), "seconds": round(time.perf_counter() - started, 2),
                               "cpu_seconds": round(cpu_seconds(pid) - cpu, 2)})
            conn.rollback()
    finally:
        engine.dispose()
    return stages


def explain_evidence(url: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the evidence statement for every member, in a rolled-back transaction,
    with the planner settings of a full evaluation (`AlignmentEngine._plan_for_everyone`)."""
    from server.alignment.engine import AlignmentEngine, EngineConfig
    from server.alignment.facts import EVERYONE, evidence_select
    from server.alignment.index_keys import IndexKeys
    from server.alignment.mappings import load_mappings
    from server.alignment.codes import code_rows, codes_key
    from server.alignment.window import EvaluationWindow
    from datetime import date

    mappings = load_mappings()
    window = EvaluationWindow(date.fromisoformat(ingest.AS_OF), EngineConfig().lookback_months)
    key = codes_key(code_rows(mappings))
    try:
        statement = evidence_select(window, key, EVERYONE)
    except TypeError:  # the version that pivots the index tables takes their keys first
        statement = evidence_select(IndexKeys.resolve(), window, key, EVERYONE)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            AlignmentEngine._plan_for_everyone(conn)
            sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
            lines = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
            conn.rollback()
    finally:
        engine.dispose()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--database-url", default=DEFAULT_DSN)
    parser.add_argument("--schema", help="a schema kept by --keep: evaluate it again, no load")
    parser.add_argument("--keep", action="store_true", help="keep the loaded schema (its name is printed)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent ingest clients (default 2)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--stages", action="store_true", help="also time each statement alone (see above)")
    args = parser.parse_args(argv)
    dsn = args.database_url
    schema = args.schema or "bench_" + os.urandom(4).hex()
    url = schema_url(dsn, schema)
    figures: dict = {"schema": schema}
    with tempfile.TemporaryDirectory(prefix="planfit-evaluate-") as tmp:
        work = Path(tmp)
        population = None
        if args.schema is None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            population = ingest.synthesize(args.members, work / "population")
        started = time.perf_counter()
        try:
            with running(url, work / "exports", "deferred") as servers:
                figures["start_seconds"] = round(time.perf_counter() - started, 2)
                figures["start_load"] = _load()
                if population is not None:
                    figures["ingest"] = ingest.ingest(servers, population.bundles, args.clients, "ingest")
                    figures["ingest_load"] = _load()
                analyze(dsn, schema)
                if population is None:
                    members, truth = stored_population(dsn, schema)
                else:
                    members, truth = population.summary.members, population.summary.statuses
                figures["evaluate"] = evaluate.full_evaluation(servers["clinical"], members, truth)
                figures["evaluate_load"] = _load()
            figures["explain_evidence"] = explain_evidence(url)
            figures["explain_load"] = _load()
            if args.stages:
                figures["stages"] = stage_timings(url)
                figures["stages_load"] = _load()
        finally:
            if not args.keep and args.schema is None:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print(f"schema {schema}{' kept' if args.keep else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
