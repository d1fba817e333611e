"""Group/$export throughput for a cohort Group of 100,000 members on PostgreSQL.

    python -m benchmarks.export [--members 100000] [--database-url URL] [--keep]

Generates the synthetic population (`server.alignment.synth`), loads it into a fresh PostgreSQL
schema through the FHIR service in-process (the same transaction code as `POST /fhir`, without
HTTP), stores one Group naming every Patient, then starts a real `planfit serve` process and runs
`GET /fhir/Group/[id]/$export` over HTTP: kick-off, polling, manifest. The figure is resources
exported per second from kick-off to the manifest (snapshot, queries, NDJSON files on disk).

It prints that next to a floor measured in the same run: PostgreSQL's own
`COPY (SELECT content …) TO STDOUT` of exactly the exported rows, written to a file.
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
from pathlib import Path

import httpx
import orjson
import psycopg
from sqlalchemy import select

from server.alignment.synth import generate
from server.bulk.kickoff import GROUP_TYPES
from server.config import Settings
from server.fhir.bundles import BundleProcessor, parse_bundle
from server.fhir.service import FhirService, WriteContext
from server.store.db import make_engine, migrate
from server.store.resources import Store
from server.store.schema import resources

ROOT = Path(__file__).resolve().parents[1]
_KINDS = {"clinical": "urn:planfit:bench-emr", "claims": "urn:planfit:bench-claims"}


def load_population(service: FhirService, synth_dir: Path, analyze) -> int:
    """Post every synthetic bundle as a transaction, in-process; returns the entries posted.

    `analyze` runs between bundles: a freshly filled schema has no planner statistics yet (autovacuum
    lags behind a bulk load), and the bundles' `ifNoneExist` lookups would otherwise scan.
    """
    entries = 0
    for kind, source in _KINDS.items():
        ctx = WriteContext(source=source, source_kind=kind)
        for path in sorted((synth_dir / kind).glob("bundle-*.json")):
            bundle = orjson.loads(path.read_bytes())
            entries += len(bundle["entry"])
            BundleProcessor(service, ctx, "http://bench/fhir", None).transaction(parse_bundle(service, bundle, "http://bench/fhir"))
            analyze()
    return entries


def analyzer(dsn: str, schema: str):
    def analyze() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in ("resources", "idx_token", "idx_reference", "idx_string", "idx_date"):
                conn.execute(f'ANALYZE "{schema}".{table}')

    return analyze


def create_group(service: FhirService, store: Store) -> str:
    """One Group whose members are every stored Patient."""
    with store.engine.connect() as conn:
        patient_ids = list(conn.execute(select(resources.c.rid).where(resources.c.rtype == "Patient")).scalars())
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "name": "benchmark cohort",
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids],
    }
    reply = service.create("Group", group, WriteContext(source="urn:planfit:bench"), "http://bench/fhir", None, None)
    return orjson.loads(reply.body)["id"]


def start_server(database_url: str, export_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PLANFIT_DATABASE_URL": database_url, "PLANFIT_AUTH": "off", "PLANFIT_EXPORT_DIR": str(export_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/fhir"
    for _ in range(300):
        try:
            if httpx.get(url + "/metadata", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def timed_export(url: str, group_id: str) -> tuple[float, dict]:
    """Seconds from kick-off to the manifest, polling every 50 ms so the end is seen at once (the
    429s this earns while the job runs do not apply to a finished job)."""
    with httpx.Client(timeout=600) as http:
        start = time.perf_counter()
        kick = http.get(f"{url}/Group/{group_id}/$export", headers={"Prefer": "respond-async"})
        kick.raise_for_status()
        status_url = kick.headers["Content-Location"]
        while True:
            r = http.get(status_url)
            if r.status_code == 200:
                return time.perf_counter() - start, r.json()
            if r.status_code not in (202, 429):
                raise SystemExit(f"export failed: {r.status_code} {r.text}")
            time.sleep(0.05)


def floor_seconds(dsn: str, schema: str, out: Path) -> tuple[float, int]:
    """COPY of the exported types' rows straight out of PostgreSQL into a file: (seconds, rows).

    The Group names every Patient, so these are exactly the rows the export writes, without any
    membership join: a lower bound for reading them out of the database.
    """
    types = ", ".join(f"'{t}'" for t in (*GROUP_TYPES,))
    sql = f"COPY (SELECT content FROM resources WHERE rtype IN ({types}) AND deleted = false) TO STDOUT"
    with psycopg.connect(dsn, autocommit=True, options=f"-csearch_path={schema}") as conn, open(out, "wb") as f:
        start = time.perf_counter()
        with conn.cursor().copy(sql) as copy:
            for chunk in copy:
                f.write(chunk)
        seconds = time.perf_counter() - start
    with open(out, "rb") as f:
        rows = sum(1 for _ in f)
    return seconds, rows


def populate(dsn: str, schema: str, sa_url: str, members: int, work: Path) -> str:
    """A fresh schema with the synthetic population and its Group; returns the Group id."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    generate(members, 1, work / "synth")
    engine = make_engine(sa_url)
    migrate(engine)
    store = Store(engine)
    service = FhirService(store, Settings.from_env(database_url=sa_url))
    analyze = analyzer(dsn, schema)
    entries = load_population(service, work / "synth", analyze)
    group_id = create_group(service, store)
    engine.dispose()
    analyze()
    print(f"loaded {entries} entries for {members} members in {time.perf_counter() - started:.0f} s", flush=True)
    return group_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=3, help="timed exports (the best is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the schema (to rerun exports with --reuse)")
    parser.add_argument("--reuse", nargs=2, metavar=("SCHEMA", "GROUP"), help="export from a kept schema")
    args = parser.parse_args(argv)

    dsn = args.database_url
    schema = args.reuse[0] if args.reuse else "bench_export_" + uuid.uuid4().hex[:8]
    sa_url = dsn.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    work = Path(tempfile.mkdtemp(prefix="planfit-bench-export-"))
    try:
        if args.reuse:
            group_id = args.reuse[1]
        else:
            group_id = populate(dsn, schema, sa_url, args.members, work)
            print(f"schema {schema}, Group/{group_id}", flush=True)

        proc, url = start_server(sa_url, work / "exports")
        try:
            runs = [timed_export(url, group_id) for _ in range(args.rounds)]
        finally:
            proc.terminate()
            proc.wait()
        seconds, manifest = min(runs, key=lambda run: run[0])
        exported = sum(item["count"] for item in manifest["output"])
        floor, floor_rows = floor_seconds(dsn, schema, work / "floor.ndjson")
        rate, floor_rate = exported / seconds, floor_rows / floor
        print(f"Group/$export: {exported} resources in {len(manifest['output'])} files in {seconds:.2f} s "
              f"= {rate:,.0f} resources/s (runs: {', '.join(f'{s:.2f}' for s, _ in runs)} s)")
        print(f"floor (COPY of the {floor_rows} rows of those types to a file): {floor:.2f} s = "
              f"{floor_rate:,.0f} resources/s; ratio {rate / floor_rate:.2f}")
    finally:
        if not (args.keep or args.reuse):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
