"""Post units concurrently with a progress bar, record finished ones, report rejections.

The state file is append-only NDJSON, one line per finished unit (`{"url": FHIR base, "key": unit key}`),
flushed as each unit finishes: a run killed at any point loses at most the units in flight, and the
next run against the same URL skips every unit listed. Rejected units are not recorded, so they are
tried again next time. Rejections go to stderr and, one JSON object per line with the OperationOutcome,
to the rejects file.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

import orjson
from tqdm import tqdm

from server.bulk.client import BulkClient
from server.loader.inputs import BadInput, Unit
from server.loader.post import Outcome, Rejection, Retry, diagnostics, local_outcome, post


@dataclass
class LoadReport:
    units: int = 0
    skipped: int = 0
    resources: int = 0
    rejected_units: int = 0
    rejected_entries: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rejected_units == 0 and self.rejected_entries == 0

    def text(self) -> str:
        rate = self.resources / self.seconds if self.seconds else 0.0
        line = (f"loaded {self.resources} resources in {self.units} requests in {self.seconds:.1f}s "
                f"({rate:.0f} resources/s); {self.skipped} skipped as already loaded; {self.retries} retries")
        if not self.ok:
            line += f"; REJECTED: {self.rejected_units} requests, {self.rejected_entries} batch entries"
        return line


def finished_keys(state: Path, fhir_base: str) -> set[str]:
    """Keys of the units already loaded into this FHIR base (a torn last line is ignored)."""
    if not state.is_file():
        return set()
    keys = set()
    for line in state.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if row.get("url") == fhir_base:
            keys.add(row["key"])
    return keys


class Loader:
    def __init__(self, client: BulkClient, fhir_base: str, *, state: Path, rejects: Path,
                 concurrency: int = 4, retry: Retry = Retry(), desc: str = "load"):
        self.client = client
        self.fhir_base = fhir_base.rstrip("/")
        self.state = state
        self.rejects = rejects
        self.concurrency = max(1, concurrency)
        self.retry = retry
        self.desc = desc
        self._rejects_file: IO[bytes] | None = None

    def run(self, units: list[Unit], bad: Sequence[BadInput] = ()) -> LoadReport:
        started = time.perf_counter()
        report = LoadReport()
        for problem in bad:
            self._reject(report, str(problem).split(":", 1)[0], Rejection(0, local_outcome(str(problem))))
        done = finished_keys(self.state, self.fhir_base)
        todo = [u for u in units if u.key not in done]
        report.skipped = len(units) - len(todo)
        try:
            with self.state.open("ab") as state, \
                    tqdm(total=sum(u.entries for u in todo), unit=" resources", unit_scale=True,
                         desc=self.desc, smoothing=0.05, mininterval=0.5) as bar:
                self._post_all(todo, report, state, bar)
        finally:
            if self._rejects_file:
                self._rejects_file.close()
                self._rejects_file = None
        report.seconds = time.perf_counter() - started
        return report

    def _post_all(self, todo: list[Unit], report: LoadReport, state: IO[bytes], bar: tqdm) -> None:
        pending: dict[Future[Outcome], Unit] = {}
        queue = iter(todo)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="planfit-load") as pool:
            try:
                while True:
                    # A few units ahead of the threads, never the whole input in memory.
                    for unit in queue:
                        pending[pool.submit(self._post, unit)] = unit
                        if len(pending) >= 2 * self.concurrency:
                            break
                    if not pending:
                        return
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self._finish(pending.pop(future), future.result(), report, state, bar)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _post(self, unit: Unit) -> Outcome:
        return post(self.client, self.fhir_base, unit.body(), self.retry)

    def _finish(self, unit: Unit, outcome: Outcome, report: LoadReport, state: IO[bytes], bar: tqdm) -> None:
        report.retries += outcome.retries
        if not outcome.ok:
            for rejection in outcome.rejections:
                self._reject(report, unit.label, rejection)
            return
        report.units += 1
        report.resources += unit.entries - len(outcome.rejections)
        for rejection in outcome.rejections:
            self._reject(report, unit.label, rejection)
        state.write(orjson.dumps({"url": self.fhir_base, "key": unit.key}) + b"\n")
        state.flush()
        bar.update(unit.entries)

    def _reject(self, report: LoadReport, label: str, rejection: Rejection) -> None:
        if rejection.entry is None:
            report.rejected_units += 1
        else:
            report.rejected_entries += 1
        where = label if rejection.entry is None else f"{label} entry {rejection.entry}"
        tqdm.write(f"rejected ({rejection.status or 'no answer'}): {where}: {diagnostics(rejection.outcome)}",
                   file=sys.stderr)
        if self._rejects_file is None:
            self._rejects_file = self.rejects.open("ab")
        self._rejects_file.write(orjson.dumps({"input": label, "entry": rejection.entry, "status": rejection.status,
                                               "outcome": rejection.outcome}) + b"\n")
        self._rejects_file.flush()
