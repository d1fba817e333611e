"""What each ingested resource costs in CPU (issue 19, "less per resource"): the synthetic population posted over
HTTP to two `planfit serve` processes (one per feed kind) on a fresh PostgreSQL schema, as `planfit bench` does,
with the CPU seconds of the server processes and of the schema's database backends (both read from /proc, so
for a PostgreSQL on this machine) per 1,000 resources. On a loaded machine the wall rate swings with the other
work; the CPU seconds do not, so two versions of the code compare by these:

    python -m benchmarks.ingest_cpu --members 3000 --runs 2
    PYTHONPATH=<other checkout> python -m benchmarks.ingest_cpu --members 3000 --runs 2

The ingest counts until the deferred alignment evaluation caught up, so its CPU is in the servers' and the
backends' figures too. A backend that ended during the run takes its CPU with it (the pool keeps them open);
the figures name how many backends were read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import ingest
from benchmarks.command import DEFAULT_DSN
from benchmarks.servers import (
    backend_pids,
    cpu_seconds,
    postgres_schema,
    profiled,
    running,
    schema_of,
)


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def measure(dsn: str, population: ingest.Population, work: Path, run: int, profile: Path | None) -> dict:
    """One ingest of the population on a fresh schema: res/s and CPU seconds per 1,000 resources."""
    with postgres_schema(dsn) as url, running(url, work / f"exports-{run}", "deferred") as servers:
        application = schema_of(url)
        server_pids = [server.pid for server in servers.values()]
        servers_before = sum(cpu_seconds(pid) for pid in server_pids)
        backends_before = _cpu_by_pid(backend_pids(dsn, application))
        load_before = os.getloadavg()[0]
        with profiled(servers, profile, f"ingest-{run}"):
            written = ingest.ingest(servers, population.bundles, 2, f"ingest, run {run}")
        backends_after = _cpu_by_pid(backend_pids(dsn, application))
        servers_cpu = sum(cpu_seconds(pid) for pid in server_pids) - servers_before
    backends_cpu = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    per_thousand = 1000 / written["resources"]
    return {"run": run, "resources_per_s": written["resources_per_s"], "seconds": written["seconds"],
            "servers_cpu_per_1000": round(servers_cpu * per_thousand, 3),
            "backends_cpu_per_1000": round(backends_cpu * per_thousand, 3),
            "backends": len(backends_after), "load_before": round(load_before, 1),
            "load_after": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--database-url", default=DEFAULT_DSN)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the servers into DIR")
    args = parser.parse_args(argv)
    dsn = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with tempfile.TemporaryDirectory(prefix="planfit-ingest-cpu-") as tmp:
        work = Path(tmp)
        population = ingest.synthesize(args.members, work / "population")
        print(f"{args.members} members, {population.resources:,} resources in {len(population.bundles)} bundles")
        print("| run | res/s | s | servers CPU-s / 1,000 res | backends CPU-s / 1,000 res | backends | load |")
        print("|---|---|---|---|---|---|---|")
        for run in range(1, args.runs + 1):
            r = measure(dsn, population, work, run, args.profile)
            print(f"| {r['run']} | {r['resources_per_s']:,} | {r['seconds']} | {r['servers_cpu_per_1000']} "
                  f"| {r['backends_cpu_per_1000']} | {r['backends']} | {r['load_before']}–{r['load_after']} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
