"""Roster operations on a large attribution list (SPEC §8: each under 2 s at 100,000 members; the roster
page, `$roster-members`, under 500 ms), over HTTP against a server holding the members.

`roster_operations` runs on a populated server (the `rosters` stage of `planfit bench`): it imports a payer
file naming every member into a new draft list, then times each operation once the list is that large.
Standalone, `python -m benchmarks.rosters --members 100000` starts `planfit serve` (PLANFIT_AUTH=off) on a
fresh PostgreSQL schema (or, with `--database-url sqlite`, a fresh SQLite file), posts one Patient per member,
and runs the same measurements; `--profile DIR` records py-spy flame graphs of the servers meanwhile.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import httpx
import orjson
import psycopg

from benchmarks.servers import (Server, StageFailed, backend_pids, cpu_seconds, expect, postgres_schema, profiled,
                                running)

NPI = "http://hl7.org/fhir/sid/us-npi"
ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
BENCH_SYSTEM = "urn:planfit:bench:member"
_PATIENTS_PER_BUNDLE = 2000
_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _parameters(**values: tuple[str, object]) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": n, k: v} for n, (k, v) in values.items()]}


def _payer_file(member_ids: list[str]) -> dict:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["participant_id", "attribution_date", "qualifying_category", "authorization_status",
                     "exclusion_reason"])
    writer.writerows([m, "2026-01-01", "smi", "approved", ""] for m in member_ids)
    return {"contentType": "text/csv", "title": "bench.csv", "data": base64.b64encode(out.getvalue().encode()).decode()}


class _Cpu:
    """CPU seconds (user + system) of the server process and, on PostgreSQL, of the backends serving it
    (named by the schema's application_name): on a shared machine wall time follows the load, CPU less so."""

    def __init__(self, server: Server, database_url: str | None):
        self.pid, self.application = server.pid, None
        if database_url and "application_name=" in database_url:
            self.application = database_url.split("application_name=", 1)[1].split("&", 1)[0]

    def seconds(self) -> float:
        backends = backend_pids(_ADMIN_DSN, self.application) if self.application else []
        return sum(cpu_seconds(pid) for pid in (self.pid, *backends))


class _Waits:
    """What the schema's backends were doing while an operation ran, sampled from pg_stat_activity every
    20 ms: `wait_event_type:wait_event` (a lock, I/O) or `cpu` (running) per active backend, `none` when
    none was running a statement (the server's Python between statements, the client); shares of the
    samples. Tells an operation's waiting from its computing."""

    def __init__(self, application: str | None):
        self.application = application
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        with psycopg.connect(_ADMIN_DSN, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                active = conn.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity "
                                      "WHERE application_name = %s AND state = 'active'", (self.application,)).fetchall()
                self.counts.update(["cpu" if kind is None else f"{kind}:{event}" for kind, event in active] or ["none"])

    def __enter__(self) -> _Waits:
        if self.application is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {k: round(v / total, 2) for k, v in self.counts.most_common(4)} if total else {}


def _timed(figures: dict, name: str, call: Callable[[], httpx.Response], status: int, cpu: _Cpu) -> httpx.Response:
    before = cpu.seconds()
    start = time.perf_counter()
    with _Waits(cpu.application) as waits:
        reply = expect(call(), status, name)
    figures[name] = round(time.perf_counter() - start, 3)
    figures.setdefault("cpu", {})[name] = round(cpu.seconds() - before, 2)
    if waits.counts:
        figures.setdefault("database_waits", {})[name] = waits.shares()
    print(f"{name}: {figures[name]} s, cpu {figures['cpu'][name]} s, load {os.getloadavg()[0]:.1f}"
          + (f", database {waits.shares()}" if waits.counts else ""), file=sys.stderr, flush=True)
    return reply


def _new_list(http: httpx.Client, base: str, name: str) -> str:
    group = {"resourceType": "Group", "meta": {"profile": [ATR + "atr-group"]},
             "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "draft"}],
             "type": "person", "actual": True, "name": name,
             "managingEntity": {"reference": "Organization/bench-clinic"}}
    return expect(http.post(f"{base}/Group", json=group), 201, "POST Group").json()["id"]


def _caught_up(http: httpx.Client, base: str, timeout: float = 1800) -> float:
    """Wait until the deferred alignment evaluation has caught up with every committed write (the members
    just posted): the seconds waited. Timed while the worker still evaluates, the import measured its
    contention with that worker (the same process's CPU, and on SQLite the write lock) more than itself."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        status = expect(http.get(f"{base}/$alignment-status"), 200, "GET $alignment-status").json()
        if {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in status["parameter"]}["caughtUp"]:
            return round(time.perf_counter() - start, 1)
        time.sleep(0.5)
    raise StageFailed(f"the alignment evaluation did not catch up with the writes within {timeout} s")


def roster_operations(server: Server, member_ids: list[str], member_system: str,
                      database_url: str | None = None) -> dict:
    """Seconds per operation on a list of len(member_ids) members; the import's own time too. `cpu`: the CPU
    seconds of each, of the server and (given its PostgreSQL `database_url`) the database backends. Timed
    once the findings have caught up with the writes before (`alignment_wait`: the seconds that took)."""
    cpu = _Cpu(server, database_url)
    base = server.url
    figures: dict = {"members": len(member_ids)}
    with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json"}) as http:
        figures["alignment_wait"] = _caught_up(http, base)
        reviewer = {"resourceType": "Practitioner", "id": "bench-reviewer",
                    "identifier": [{"system": NPI, "value": "1999999999"}]}
        put = http.put(f"{base}/Practitioner/bench-reviewer", json=reviewer)
        if put.status_code not in (200, 201):
            raise StageFailed(f"PUT Practitioner: HTTP {put.status_code} {put.text[:200]}")
        file = _payer_file(member_ids)
        gid = _new_list(http, base, "bench roster")
        body = _parameters(file=("valueAttachment", file), memberIdSystem=("valueUri", member_system))
        _timed(figures, "import", lambda: http.post(f"{base}/Group/{gid}/$roster-import", json=body), 200, cpu)
        _timed(figures, "reimport_same_file", lambda: http.post(f"{base}/Group/{gid}/$roster-import", json=body),
               200, cpu)
        member = ("valueIdentifier", {"system": member_system, "value": member_ids[0]})
        provider = ("valueIdentifier", {"system": NPI, "value": "1999999999"})
        _timed(figures, "member_add", lambda: http.post(f"{base}/Group/{gid}/$member-add", json=_parameters(
            memberId=member, providerNpi=provider, attributionPeriod=("valuePeriod", {"start": "2026-01-01"}))),
               200, cpu)
        decision = _parameters(memberId=member, decision=("valueCode", "active"),
                               reviewer=("valueReference", {"reference": "Practitioner/bench-reviewer"}))
        _timed(figures, "member_decision", lambda: http.post(f"{base}/Group/{gid}/$member-decision", json=decision),
               200, cpu)
        second = ("valueIdentifier", {"system": member_system, "value": member_ids[1]})
        _timed(figures, "member_remove", lambda: http.post(f"{base}/Group/{gid}/$member-remove",
                                                           json=_parameters(memberId=second)), 200, cpu)
        _timed(figures, "roster_page", lambda: http.get(f"{base}/Group/{gid}/$roster-members"), 200, cpu)
        _timed(figures, "roster_page_filtered",
               lambda: http.get(f"{base}/Group/{gid}/$roster-members", params={"decision": "active"}), 200, cpu)
        _timed(figures, "attribution_status", lambda: http.post(f"{base}/Group/{gid}/$attribution-status",
                                                                json=_parameters(memberId=member)), 200, cpu)
        read = _timed(figures, "full_read", lambda: http.get(f"{base}/Group/{gid}"), 200, cpu)
        figures["full_read_members"] = len(orjson.loads(read.content).get("member", []))
        _timed(figures, "reconcile", lambda: http.get(f"{base}/Group/{gid}/$roster-reconcile"), 200, cpu)
        _timed(figures, "confirm", lambda: http.post(f"{base}/Group/{gid}/$confirm-attribution-list"), 201, cpu)
        later = _new_list(http, base, "bench roster, next")
        expect(http.post(f"{base}/Group/{later}/$roster-import", json=body), 200, "import into the second list")
        _timed(figures, "drift", lambda: http.get(f"{base}/Group/{later}/$roster-drift",
                                                  params={"baseline": f"Group/{gid}"}), 200, cpu)
    operations = [k for k in figures if k not in ("members", "full_read_members", "import", "cpu", "alignment_wait",
                                                  "database_waits")]
    figures["slowest_operation"] = max(operations, key=figures.__getitem__)
    figures["slowest_seconds"] = figures[figures["slowest_operation"]]
    # The file attributes each member to no provider; $member-add adds the first one again, for the reviewer.
    if figures["full_read_members"] != len(member_ids) + 1:
        raise StageFailed(f"the list read back {figures['full_read_members']} members, not {len(member_ids) + 1}")
    return figures


def _post_patients(server: Server, count: int) -> list[str]:
    ids = [f"B{n:07d}" for n in range(count)]
    with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json"}) as http:
        for start in range(0, count, _PATIENTS_PER_BUNDLE):
            entries = [{"resource": {"resourceType": "Patient", "identifier": [{"system": BENCH_SYSTEM, "value": i}]},
                        "request": {"method": "POST", "url": "Patient"}} for i in ids[start:start + _PATIENTS_PER_BUNDLE]]
            expect(http.post(server.url, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}),
                   200, "POST bundle")
    return ids


@contextmanager
def _database(url: str, tmp: str) -> Iterator[str]:
    if url == "sqlite":
        yield f"sqlite:///{Path(tmp) / 'rosters.db'}"
        return
    with postgres_schema(url) as schema_url:
        yield schema_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rosters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--database-url", default=_ADMIN_DSN,
                        help="PostgreSQL (a fresh schema is used), or `sqlite` for a fresh SQLite file")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the roster operations")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="planfit-rosters-") as tmp, _database(args.database_url, tmp) as url, \
            running(url, Path(tmp) / "exports", "deferred") as servers:
        server = servers["clinical"]
        started = time.perf_counter()
        ids = _post_patients(server, args.members)
        print(f"posted {len(ids):,} patients in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with profiled({"clinical": server}, args.profile, "rosters"):
            figures = roster_operations(server, ids, BENCH_SYSTEM, url)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
