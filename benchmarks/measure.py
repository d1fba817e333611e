"""`$evaluate-measure` for one patient at a time: latency percentiles under concurrent clients."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import psycopg

from benchmarks.servers import Server, StageFailed, expect

MEASURE = "product-alignment"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31", "reportType": "subject"}


def patient_ids(dsn: str, schema: str, count: int) -> list[str]:
    """A random sample of the stored Patients' ids."""
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        rows = conn.execute("SELECT rid FROM resources WHERE rtype = 'Patient' AND NOT deleted "
                            "ORDER BY random() LIMIT %s", (count,)).fetchall()
    return [row[0] for row in rows]


def _url(server: Server, patient: str) -> tuple[str, dict]:
    return f"{server.url}/Measure/{MEASURE}/$evaluate-measure", {**PERIOD, "subject": f"Patient/{patient}"}


def latency(servers: list[Server], patients: list[str], clients: int, requests_each: int) -> dict:
    """`clients` threads, each sending `requests_each` requests back to back, spread over the servers;
    one untimed request first checks that the operation answers at all."""
    with httpx.Client(timeout=60) as http:
        url, params = _url(servers[0], patients[0])
        expect(http.get(url, params=params), 200, f"GET Measure/{MEASURE}/$evaluate-measure")
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        server = servers[n % len(servers)]
        mine = []
        with httpx.Client(timeout=60) as http:
            for i in range(requests_each):
                url, params = _url(server, patients[(n * requests_each + i) % len(patients)])
                start = time.perf_counter()
                reply = http.get(url, params=params)
                mine.append(time.perf_counter() - start)
                if reply.status_code != 200:
                    failures.append(f"$evaluate-measure: HTTP {reply.status_code} {reply.text[:200]}")
                    return
        with lock:
            times.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if failures:
        raise StageFailed(failures[0])
    cuts = statistics.quantiles(times, n=100)
    return {"clients": clients, "requests": len(times), "servers": len(servers),
            "p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1),
            "requests_per_s": round(len(times) / seconds)}
