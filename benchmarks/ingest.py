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
from server.synth import SynthSummary, generate

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
    """Post the bundles as transactions from `clients` threads, each bundle to its feed's server, then wait
    until the findings reflect every write (`$alignment-status`): the rate counts to that moment. Meanwhile
    a monitor samples how far the findings lag behind the writes."""
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

    monitor = LagMonitor(next(iter(servers.values())).url)
    start = time.perf_counter()
    monitor.start()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    posted = time.perf_counter() - start
    bar.close()
    if failures:
        monitor.stop()
        raise StageFailed(failures[0])
    lags = monitor.until_caught_up()
    seconds = time.perf_counter() - start
    count = sum(b.entries for b in bundles)
    return {"resources": count, "bundles": len(bundles), "clients": clients, "seconds": round(seconds, 2),
            "resources_per_s": round(count / seconds), "posted_seconds": round(posted, 2),
            "mode": monitor.mode, **lags}


class LagMonitor:
    """Samples `GET $alignment-status` every `interval` s: when evaluation passes the latest write seen at a
    sample, that write's findings lagged by the time since the sample (to within one interval)."""

    def __init__(self, base: str, interval: float = 0.1):
        self.base = base
        self.interval = interval
        self.mode = "?"
        self.lags: list[float] = []
        self._waiting: list[tuple[float, int]] = []  # (sampled at, latest write then)
        self._stopping = threading.Event()
        self._caught_up = threading.Event()
        self._after = float("inf")  # only a sample asked after this moment may report caught up
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def until_caught_up(self, timeout: float = 3600) -> dict:
        """After the last write: wait until the findings reflect it; the lag figures."""
        self._after = time.perf_counter()
        if not self._caught_up.wait(timeout):
            self.stop()
            raise StageFailed(f"findings did not catch up with the writes within {timeout} s")
        self.stop()
        if self.error:
            raise StageFailed(self.error)
        lags = sorted(self.lags) or [0.0]
        return {"lag_p50_s": round(lags[len(lags) // 2], 2), "lag_max_s": round(lags[-1], 2)}

    def _run(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._stopping.is_set():
                asked = time.perf_counter()
                try:
                    response = expect(http.get(f"{self.base}/$alignment-status"), 200, "GET $alignment-status")
                except (StageFailed, httpx.HTTPError) as exc:
                    self.error = str(exc)
                    self._caught_up.set()
                    return
                now = time.perf_counter()
                status = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                          for p in response.json()["parameter"]}
                self.mode = status["mode"]
                self._waiting.append((now, status["latestWrite"]))
                while self._waiting and self._waiting[0][1] <= status["evaluatedThrough"]:
                    self.lags.append(now - self._waiting.pop(0)[0])
                if status["caughtUp"] and asked >= self._after:
                    self._caught_up.set()
                time.sleep(self.interval)
