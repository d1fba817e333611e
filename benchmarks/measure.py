"""`$evaluate-measure` for one patient at a time: latency percentiles under concurrent clients.

The `evaluate_measure` stage of `planfit bench`. Standalone, on a schema a run kept (`python -m
benchmarks.evaluate_scale --members 20000 --keep` prints one), it starts the two servers again and measures
only this stage, as often as asked:

    python -m benchmarks.measure --schema bench_1234abcd --database-url postgresql://postgres@127.0.0.1:5432/db
        [--clients 32] [--requests 50] [--repeat 3] [--auth] [--profile DIR]

`--auth` runs the servers with SMART authorization on (the production configuration) and reads with a
Backend Services token of a client registered for the run. Beside the percentiles each run reports the CPU
milliseconds per request of the server processes, of their PostgreSQL backends and of the load generator
itself (its 32 threads share the machine with the servers), and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import psycopg

from benchmarks.command import DEFAULT_DSN
from benchmarks.servers import Server, StageFailed, backend_pids, cpu_seconds, expect, profiled, running, schema_url
from server.auth.commands import load_private_key, request_backend_token, write_key_pair

MEASURE = "product-alignment"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31", "reportType": "subject"}
READER = "bench-reader"
_WARM_UP_EACH = 5  # requests per client in a warm-up round without the schema to count connections by
_WARM_UP_ROUNDS = 4  # at most; with the schema, rounds as long as the timed run stop once one opens no connection
# What an individual report needs (server/measures/operation.py): the report, the Patient, what the finding shows.
READER_SCOPE = " ".join(f"system/{rtype}.rs" for rtype in (
    "MeasureReport", "Patient", "Condition", "Coverage", "Claim", "ExplanationOfBenefit"))


def patient_ids(dsn: str, schema: str, count: int) -> list[str]:
    """A random sample of the stored Patients' ids."""
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        rows = conn.execute("SELECT rid FROM resources WHERE rtype = 'Patient' AND NOT deleted "
                            "ORDER BY random() LIMIT %s", (count,)).fetchall()
    return [row[0] for row in rows]


def _target(server: Server, patient: str) -> str:
    """The request's path and query on the server."""
    query = urlencode({**PERIOD, "subject": f"Patient/{patient}"})
    return f"{urlsplit(server.url).path}/Measure/{MEASURE}/$evaluate-measure?{query}"


class _Usage:
    """CPU seconds of the servers, of their PostgreSQL backends (named by the schema) and of this process;
    the backends themselves (a pool that opens connections under load shows in new ones)."""

    def __init__(self, servers: list[Server], dsn: str, schema: str):
        self.servers, self.dsn, self.schema = servers, dsn, schema

    def backends(self) -> set[int]:
        """The servers' database connections now (their pools', and those of their background threads)."""
        return set(backend_pids(self.dsn, self.schema))

    def now(self) -> dict:
        backends = self.backends()
        mine = os.times()
        return {"servers": sum(cpu_seconds(s.pid) for s in self.servers),
                "backends": sum(cpu_seconds(pid) for pid in backends), "client": mine.user + mine.system,
                "pids": backends}


def _requests(servers: list[Server], patients: list[str], clients: int, requests_each: int,
              headers: Callable[[Server], dict[str, str]]) -> list[float]:
    """`clients` threads, each sending `requests_each` requests back to back over one keep-alive connection,
    spread over the servers: the seconds of each; StageFailed at the first answer other than 200."""
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        server = servers[n % len(servers)]
        address = urlsplit(server.url)
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        mine = []
        try:
            for i in range(requests_each):
                target = _target(server, patients[(n * requests_each + i) % len(patients)])
                start = time.perf_counter()
                conn.request("GET", target, headers=headers(server))
                reply = conn.getresponse()
                body = reply.read()
                mine.append(time.perf_counter() - start)
                if reply.status != 200:
                    failures.append(f"$evaluate-measure: HTTP {reply.status} {body[:200]!r}")
                    return
        finally:
            conn.close()
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise StageFailed(failures[0])
    return times


def _warm_up(servers: list[Server], patients: list[str], clients: int, requests_each: int,
             headers: Callable[[Server], dict[str, str]], usage: _Usage | None) -> tuple[list[float], int]:
    """Rounds of `requests_each` requests per client: one without `usage`, else until a round leaves the
    servers' backends as many as before it (at most `_WARM_UP_ROUNDS`). The seconds of each request, and the
    rounds."""
    times: list[float] = []
    backends = usage.backends() if usage else set()
    for rounds in range(1, _WARM_UP_ROUNDS + 1):
        times += _requests(servers, patients, clients, requests_each, headers)
        if usage is None:
            break
        before, backends = backends, usage.backends()
        if backends <= before:
            break
    return times, rounds


def latency(servers: list[Server], patients: list[str], clients: int, requests_each: int,
            dsn: str | None = None, schema: str | None = None, tokens: dict[str, str] | None = None) -> dict:
    """`clients` threads, each sending `requests_each` requests back to back, spread over the servers; p50,
    p95, p99 and max of them. Warm-up rounds of the same clients come first: the servers' connection
    pools grow to the clients' concurrency there, a new database backend for each connection (the slowest
    warm-up request: `warm_up_max_ms`). Given the schema's `dsn`, each round is as long as the timed run and
    they go on until one opens no connection (`warm_up_rounds`; one round of 5 requests per client grew the
    pools only part of the way, and the timed requests then opened the rest, about 7 connections a process,
    each a new backend the waiting request paid for), so the figures are of a server whose pools hold what
    this load needs, as any server that has served it before; and the CPU milliseconds per request of the servers,
    their backends and the client too. `tokens`: each server's access token by its kind (a token names the
    server that issued it).

    The threads use the standard library's `http.client`, not httpx: the load generator shares the machine's
    cores with the servers, and httpx spent 1.0-1.3 ms of CPU per request here, http.client 0.25 ms (a
    sequential client against one server, 2026-12-04), CPU the servers' latency then waited for."""
    def headers(server: Server) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[server.kind]}"} if tokens else {}

    usage = _Usage(servers, dsn, schema) if dsn and schema else None
    warm_up, rounds = _warm_up(servers, patients[::-1], clients, requests_each if usage else _WARM_UP_EACH,
                               headers, usage)
    before = usage.now() if usage else {}
    start = time.perf_counter()
    times = _requests(servers, patients, clients, requests_each, headers)
    seconds = time.perf_counter() - start
    after = usage.now() if usage else {}
    cuts = statistics.quantiles(times, n=100)
    figures = {"clients": clients, "requests": len(times), "servers": len(servers),
               "p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
               "p99_ms": round(cuts[98] * 1000, 1), "max_ms": round(max(times) * 1000, 1),
               "warm_up_max_ms": round(max(warm_up) * 1000, 1), "warm_up_rounds": rounds,
               "requests_per_s": round(len(times) / seconds), "load_1min": round(os.getloadavg()[0], 2)}
    if usage:
        figures["cpu_ms_per_request"] = {part: round((after[part] - before[part]) * 1000 / len(times), 2)
                                         for part in ("servers", "backends", "client")}
        # The servers' backends that were not there before the timed requests. pg_stat_database's session
        # count, which this was, also counted every other client of the database.
        figures["sessions_opened"] = len(after["pids"] - before["pids"])
    return figures


def _reader(work: Path) -> tuple[Path, object, str]:
    """A Backend Services client allowed the reads of an individual report: its clients file, key and kid."""
    pem, jwks, kid = write_key_pair(work / READER, "ES384")
    clients = {"clients": [{"id": READER, "jwks": orjson.loads(jwks.read_bytes()), "scope": READER_SCOPE}]}
    path = work / "clients.json"
    path.write_bytes(orjson.dumps(clients))
    return path, load_private_key(pem.read_bytes()), kid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", required=True, help="a loaded schema kept by an earlier run")
    parser.add_argument("--database-url", default=DEFAULT_DSN)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the stage on the same servers")
    parser.add_argument("--auth", action="store_true", help="SMART authorization on, a Backend Services token")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the servers")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    dsn = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    runs = []
    with tempfile.TemporaryDirectory(prefix="planfit-measure-") as tmp:
        work = Path(tmp)
        clients_file, key, kid = _reader(work) if args.auth else (None, None, "")
        with running(schema_url(dsn, args.schema), work / "exports", "deferred", clients_file=clients_file) as servers:
            tokens = None
            if key is not None:
                with httpx.Client(timeout=30) as client:
                    tokens = {kind: expect(request_backend_token(client, server.url.removesuffix("/fhir"), READER, key,
                                                                 kid, READER_SCOPE), 200, "token").json()["access_token"]
                              for kind, server in servers.items()}
            patients = patient_ids(dsn, args.schema, 2000)
            for run in range(args.repeat):
                with profiled(servers, args.profile, f"evaluate-measure-{run + 1}"):
                    figures = latency(list(servers.values()), patients, args.clients, args.requests,
                                      dsn, args.schema, tokens)
                figures["authorization"] = "on" if args.auth else "off"
                print(orjson.dumps(figures).decode(), flush=True)
                runs.append(figures)
    if args.json:
        args.json.write_bytes(orjson.dumps(runs, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
