"""Scale-out on one PostgreSQL (issue 19 item 6): the same population ingested and read by servers of 1, 2 and
4 worker processes each (`planfit serve --workers N`), every run on a fresh schema.

For each N it prints the ingest rate (2 × N concurrent clients posting transaction bundles, until the findings
caught up) and the `$evaluate-measure` throughput and latency (8 × N clients, single-subject reports). The
processes hold no state, so reads scale with cores; writes run side by side (no lock held through a write
transaction, `server/store/resources.py`), so ingest scales until the database's cores or the claims two
writers share bound it.

    python -m benchmarks.scale_out --members 5000 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import ingest, measure
from benchmarks.servers import analyze, postgres_schema, running, schema_of

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_REQUESTS_EACH = 40


def measure_workers(dsn: str, population: ingest.Population, workers: int, work: Path) -> dict:
    """Ingest and read figures of servers with `workers` processes each, on a fresh schema."""
    with postgres_schema(dsn) as url, running(url, work / f"exports-{workers}", "deferred", workers) as servers:
        load_before = os.getloadavg()[0]
        written = ingest.ingest(servers, population.bundles, 2 * workers, f"ingest, {workers} worker(s)")
        analyze(dsn, schema_of(url))
        patients = measure.patient_ids(dsn, schema_of(url), 2000)
        read = measure.latency(list(servers.values()), patients, 8 * workers, _REQUESTS_EACH)
    return {"workers": workers, "processes": workers * len(servers), "load_before": round(load_before, 1),
            "ingest": written, "evaluate_measure": read}


def table(rows: list[dict], cpus: int) -> str:
    lines = [f"servers: one per feed kind (clinical, claims), each `planfit serve --workers N`; {cpus} CPU(s)",
             "| workers per server | processes | ingest res/s | ingest clients | $evaluate-measure req/s "
             "| p50 ms | p99 ms | read clients | load before |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, m = r["ingest"], r["evaluate_measure"]
        lines.append(f"| {r['workers']} | {r['processes']} | {w['resources_per_s']:,} | {w['clients']} "
                     f"| {m['requests_per_s']:,} | {m['p50_ms']} | {m['p99_ms']} | {m['clients']} | {r['load_before']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts per server")
    parser.add_argument("--database-url", default=DEFAULT_DSN)
    args = parser.parse_args(argv)
    dsn = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="planfit-scale-") as tmp:
        work = Path(tmp)
        print(f"generating {args.members} members …", file=sys.stderr, flush=True)
        population = ingest.synthesize(args.members, work / "population")
        rows = [measure_workers(dsn, population, n, work) for n in counts]
    print(f"{args.members} members, {population.resources:,} resources in {len(population.bundles)} bundles")
    print(table(rows, len(os.sched_getaffinity(0))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
