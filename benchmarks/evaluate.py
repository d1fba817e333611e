"""Full re-evaluation of product alignment (SPEC §8) for a synthetic population on PostgreSQL.

    python -m benchmarks.evaluate [--members 100000] [--runs 3] [--database-url URL] [--keep | --schema NAME]

Generates the population (`planfit synth`, evaluation date 2026-01-01), loads it into a fresh
PostgreSQL schema through the FHIR service in-process (the transaction code of `POST /fhir`, without
HTTP; clinical bundles as a clinical writer, claims bundles as a claims writer), runs ANALYZE as
autovacuum eventually would, then starts a real `planfit serve` process and times
`POST /fhir/$evaluate-alignment` over HTTP. For each run it prints the wall time, members per second
and the server's peak resident memory during the run (VmHWM, reset before each run through
/proc/<pid>/clear_refs), and it checks the status counts against the ground truth. `--schema` reuses a
schema loaded by an earlier `--keep` run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
import orjson
import psycopg

from server.alignment.synth import generate
from server.config import Settings
from server.fhir.bundles import BundleProcessor, parse_bundle
from server.fhir.service import FhirService, WriteContext
from server.store.db import make_engine, migrate
from server.store.resources import Store

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-01-01"
_WRITERS = {"clinical": "urn:planfit:bench-emr", "claims": "urn:planfit:bench-claims-feed"}
_BASE = "http://bench/fhir"


def load(database_url: str, population: Path, analyze) -> int:
    """Every synthetic bundle as one transaction, in-process; returns the entries posted. `analyze`
    runs after the first two bundles of each kind and every 25th: a schema being filled has no planner
    statistics for types it has not seen yet until autovacuum catches up, and the bundles' `ifNoneExist`
    lookups would scan meanwhile."""
    db = make_engine(database_url)
    migrate(db)
    service = FhirService(Store(db), Settings.from_env(database_url=database_url))
    entries = 0
    for kind, source in _WRITERS.items():
        ctx = WriteContext(source=source, source_kind=kind)
        for number, path in enumerate(sorted((population / kind).glob("bundle-*.json")), start=1):
            bundle = orjson.loads(path.read_bytes())
            BundleProcessor(service, ctx, _BASE, None).transaction(parse_bundle(service, bundle, _BASE))
            entries += len(bundle["entry"])
            if number <= 2 or number % 25 == 0:
                analyze()
            print(f"  {kind} {path.name}: {entries} entries", file=sys.stderr, flush=True)
    db.dispose()
    return entries


def _analyze(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("ANALYZE")


def start_server(database_url: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PLANFIT_DATABASE_URL": database_url, "PLANFIT_AUTH": "off",
           "PLANFIT_EVALUATION_DATE": AS_OF, "PLANFIT_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/fhir"
    for _ in range(600):
        try:
            if httpx.get(url + "/metadata", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def statuses(parameters: dict) -> dict[str, int]:
    out = {}
    for p in parameters["parameter"]:
        if p["name"] == "status":
            parts = {x["name"]: x for x in p["part"]}
            out[parts["code"]["valueCode"]] = parts["count"]["valueInteger"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the schema (its name is printed)")
    parser.add_argument("--schema", help="reuse a schema a --keep run loaded (same --members and --seed)")
    args = parser.parse_args(argv)

    dsn = args.database_url
    schema = args.schema or "bench_eval_" + uuid.uuid4().hex[:8]
    sa_url = dsn.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    with tempfile.TemporaryDirectory() as tmp:
        population = Path(tmp) / "population"
        summary = generate(args.members, args.seed, population, as_of=date.fromisoformat(AS_OF))
        members = orjson.loads((population / "ground_truth.json").read_bytes())["members"]
        truth = Counter(m["status"] for m in members.values())
        if not args.schema:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            started = time.perf_counter()
            entries = load(sa_url, population, lambda: _analyze(dsn, schema))
            print(f"loaded {entries} resources in {time.perf_counter() - started:.0f}s (in-process, no HTTP)")
        _analyze(dsn, schema)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            counts = dict(conn.execute("SELECT rtype, count(*) FROM resources GROUP BY rtype ORDER BY 1").fetchall())
    proc, url = start_server(sa_url)
    try:
        print(f"members {summary.members}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for run in range(1, args.runs + 1):
            reset_peak(proc.pid)
            started = time.perf_counter()
            reply = httpx.post(url + "/$evaluate-alignment", timeout=3600)
            seconds = time.perf_counter() - started
            reply.raise_for_status()
            got = statuses(reply.json())
            match = "matches" if got == dict(truth) else f"DIFFERS from {dict(truth)}"
            print(f"run {run}: {seconds:.2f}s, {summary.members / seconds:,.0f} members/s, "
                  f"peak server RSS {peak_rss_mb(proc.pid):.0f} MB; statuses {got} ({match} ground truth)")
    finally:
        proc.terminate()
        proc.wait()
        if not (args.keep or args.schema):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            print(f"schema kept: {schema}")


if __name__ == "__main__":
    main()
