"""First ingest figure: transaction bundles of ~500 entries over HTTP into PostgreSQL.

    python -m benchmarks.ingest [--database-url URL] [--rounds N] [--clients 2]

Starts a real `planfit serve` process on a fresh PostgreSQL schema, posts the shared Synthea bundles
(merged into ~500-entry transactions, fresh urn:uuids each round) from concurrent clients, and prints
resources/s next to the floor: orjson parse + COPY of the same resources into a bare table.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "testdata" / "synthea-r4"


def merged_bundles(target: int = 500) -> list[list[dict]]:
    """Synthea patient bundles merged into transactions of about `target` entries."""
    out: list[list[dict]] = []
    current: list[dict] = []
    seen: set[str] = set()  # Synthea repeats shared Organizations/Practitioners across patients
    for path in sorted(SYNTHEA.glob("*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            if entry["fullUrl"] not in seen:
                seen.add(entry["fullUrl"])
                current.append(entry)
        if len(current) >= target:
            seen = set()
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def fresh_round(entries: list[dict]) -> bytes:
    """The same content with new urn:uuids, so every round creates new resources."""
    text = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).decode()
    for entry in entries:
        old = entry["fullUrl"]
        text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
    return text.encode()


def floor_rate(dsn: str, payloads: list[bytes]) -> float:
    """orjson parse + COPY into a bare table: the physical floor for the same resources."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute("CREATE UNLOGGED TABLE bench_floor (id text, content bytea)")
        start = time.perf_counter()
        count = 0
        with conn.cursor() as cur:
            with cur.copy("COPY bench_floor (id, content) FROM STDIN") as copy:
                for payload in payloads:
                    for entry in orjson.loads(payload)["entry"]:
                        copy.write_row((entry["fullUrl"], orjson.dumps(entry["resource"])))
                        count += 1
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE bench_floor")
    return count / elapsed


def start_server(database_url: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The benchmark measures ingest, not SMART: the measured server runs without authorization.
    env = {**os.environ, "PLANFIT_DATABASE_URL": database_url, "PLANFIT_AUTH": "off"}
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


def ingest_rate(url: str, payloads: list[bytes], clients: int) -> float:
    queue = list(payloads)
    lock = threading.Lock()
    counts = [0]

    def worker() -> None:
        with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json"}) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    payload = queue.pop()
                r = c.post(url, content=payload)
                r.raise_for_status()
                with lock:
                    counts[0] += len(r.json()["entry"])

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0] / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args(argv)

    schema = "bench_" + uuid.uuid4().hex[:8]
    dsn = args.database_url
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sa_url = dsn.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    groups = merged_bundles()
    payloads = [fresh_round(g) for _ in range(args.rounds) for g in groups]
    resources = sum(len(orjson.loads(p)["entry"]) for p in payloads)
    proc, url = start_server(sa_url)
    try:
        warm = [fresh_round(groups[0])]
        ingest_rate(url, warm, 1)
        rate = ingest_rate(url, payloads, args.clients)
        floor = floor_rate(dsn, payloads)
    finally:
        proc.terminate()
        proc.wait()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"resources posted      {resources}")
    print(f"bundles               {len(payloads)} (~{resources // len(payloads)} entries each)")
    print(f"ingest over HTTP      {rate:,.0f} resources/s ({args.clients} clients)")
    print(f"floor (orjson + COPY) {floor:,.0f} resources/s")
    print(f"ratio to floor        {rate / floor:.3f}")


if __name__ == "__main__":
    main()
