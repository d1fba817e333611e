"""The synthetic population as transaction bundles, the floor (orjson + COPY), and ingest over HTTP."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import orjson
import psycopg
from tqdm import tqdm

from benchmarks.servers import AS_OF, KINDS, Server, StageFailed, expect
from server.alignment.synth import SynthSummary, generate

# Members per synthetic bundle: about 3.5 clinical and 3 claims entries each, so bundles of ~500 entries.
MEMBERS_PER_BUNDLE = 150


@dataclass(frozen=True)
class Bundle:
    kind: str  # clinical | claims: which feed sends it
    path: Path
    entries: int


@dataclass(frozen=True)
class Population:
    summary: SynthSummary
    bundles: list[Bundle]  # clinical and claims bundles alternating, as two feeds would send them

    @property
    def resources(self) -> int:
        return sum(b.entries for b in self.bundles)

    def share(self, fraction: float) -> list[Bundle]:
        """The first `fraction` of the bundles (at least one of each kind), in posting order."""
        return self.bundles[: max(len(KINDS), round(len(self.bundles) * fraction))]


def synthesize(members: int, out: Path) -> Population:
    summary = generate(members, 1, out, bundle_size=MEMBERS_PER_BUNDLE, as_of=date.fromisoformat(AS_OF))
    by_kind = {kind: sorted((out / kind).glob("bundle-*.json")) for kind in KINDS}
    bundles = []
    for number in range(max(len(paths) for paths in by_kind.values())):
        for kind, paths in by_kind.items():
            if number < len(paths):
                entries = len(orjson.loads(paths[number].read_bytes())["entry"])
                bundles.append(Bundle(kind, paths[number], entries))
    return Population(summary, bundles)


def floor_rate(dsn: str, bundles: list[Bundle]) -> dict:
    """orjson parse of each bundle and COPY of its resources into a bare (logged, index-free) table."""
    table = "planfit_bench_floor"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id text, content bytea)")
        try:
            count = 0
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY {table} (id, content) FROM STDIN") as copy:
                for bundle in bundles:
                    for entry in orjson.loads(bundle.path.read_bytes())["entry"]:
                        copy.write_row((entry["fullUrl"], orjson.dumps(entry["resource"])))
                        count += 1
            seconds = time.perf_counter() - start
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return {"resources": count, "seconds": round(seconds, 2), "resources_per_s": round(count / seconds)}


def ingest(servers: dict[str, Server], bundles: list[Bundle], clients: int, label: str) -> dict:
    """Post the bundles as transactions from `clients` threads, each bundle to its feed's server."""
    queue = list(reversed(bundles))
    lock = threading.Lock()
    failures: list[str] = []
    bar = tqdm(total=sum(b.entries for b in bundles), unit="res", desc=label, leave=False, smoothing=0.05)

    def worker() -> None:
        with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json"}) as http:
            while not failures:
                with lock:
                    if not queue:
                        return
                    bundle = queue.pop()
                try:
                    expect(http.post(servers[bundle.kind].url, content=bundle.path.read_bytes()), 200,
                           f"POST {bundle.kind} {bundle.path.name}")
                except (StageFailed, httpx.HTTPError) as exc:
                    failures.append(str(exc))
                    return
                bar.update(bundle.entries)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    bar.close()
    if failures:
        raise StageFailed(failures[0])
    count = sum(b.entries for b in bundles)
    return {"resources": count, "bundles": len(bundles), "clients": clients, "seconds": round(seconds, 2),
            "resources_per_s": round(count / seconds)}
