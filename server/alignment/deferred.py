"""Deferred mode (`PLANFIT_ALIGNMENT_MODE=deferred`): findings follow writes from a worker thread.

A write's response returns as soon as it commits; the commit only wakes this process's worker, which
drains every write still awaiting evaluation (`AlignmentEngine.drain`), many bundles per evaluation
transaction. Under a steady feed that costs far less per member than one evaluation per request, and
the request no longer waits for it. The worker also wakes every `poll_seconds` on its own, so writes
of another process that died before its worker reached them are evaluated within that time.

Every process's worker drains the same database; the evaluation lock orders them, and each batch is
read after the lock is taken, so no two workers evaluate the same write. Clients see how far
evaluation has come through `GET /fhir/$alignment-status`, or ask a read to wait for it with the
`X-PlanFit-Consistency: aligned` header (`server/fhir/consistency.py`).
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path

from server.alignment.engine import AlignmentEngine
from server.alignment.index_keys import READ_TYPES
from server.fhir.types import WriteContext, Written

log = logging.getLogger("planfit.alignment")


def raised_at(exc: BaseException) -> str:
    """`module.py:line` of the innermost frame that raised `exc`: enough to find a bug, no data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"


class DeferredEvaluation:
    def __init__(self, engine: AlignmentEngine, poll_seconds: float = 1.0, retry_seconds: float = 1.0):
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def on_commit(self, written: list[Written], _ctx: WriteContext) -> None:
        """`FhirService.after_commit` listener: only wakes the worker."""
        if any(w.rtype in READ_TYPES for w in written):
            self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="planfit-alignment", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress and stop; what still awaits is drained by the next worker."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                self.engine.drain(self._stopping)
            except Exception as exc:  # the database went away, a deadlock victim…: try again shortly
                # The type and where it was raised only: exception text can carry identifiers.
                log.error("deferred alignment evaluation failed (%s at %s); retrying", type(exc).__name__,
                          raised_at(exc))
                self._stopping.wait(self.retry_seconds)
