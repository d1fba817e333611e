"""Background threads that run export jobs, started and stopped with the application.

Every server process runs `PLANFIT_EXPORT_WORKERS` of them. They poll the job table (and are
woken at once by a kick-off in their own process), so a job is picked up by whichever process is
free, and one whose process died is picked up by another once its lease runs out. Between jobs
they also delete expired and cancelled jobs with their files.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from pathlib import Path

from server.bulk import jobs
from server.bulk.members import GroupMembership
from server.bulk.runner import now_us, run_job
from server.config import Settings
from server.store.resources import Store

log = logging.getLogger("planfit.bulk")
_IDLE_SECONDS = 1.0


class ExportWorkers:
    def __init__(self, store: Store, settings: Settings, groups: GroupMembership):
        self.store = store
        self.settings = settings
        self.groups = groups
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        Path(self.settings.export_dir).mkdir(parents=True, exist_ok=True)
        for number in range(self.settings.export_workers):
            thread = threading.Thread(target=self._loop, name=f"export-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop taking jobs; a job being run is abandoned to its lease (another process resumes it)."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        # One owner id per thread: a lease names exactly one runner.
        owner = uuid.uuid4().hex[:16]
        settings = self.settings
        while not self._stop.is_set():
            try:
                job = jobs.claim(
                    self.store.engine, owner, now_us(), settings.export_lease_seconds * 1_000_000,
                    settings.export_max_attempts, settings.export_ttl_seconds * 1_000_000,
                )
                if job is not None:
                    run_job(self.store, settings, self.groups, job, owner)
                    continue
                self._reap()
            except Exception as exc:  # the database may be briefly unreachable; try again later
                log.warning("export worker: %s", type(exc).__name__)
            self._wake.wait(_IDLE_SECONDS)
            self._wake.clear()

    def _reap(self) -> None:
        """Delete expired and cancelled jobs and their files."""
        now = now_us()
        export_dir = Path(self.settings.export_dir)
        with self.store.engine.begin() as conn:
            doomed = jobs.reapable(conn, now)
        for job_id in doomed:
            shutil.rmtree(export_dir / job_id, ignore_errors=True)
            with self.store.engine.begin() as conn:
                jobs.forget(conn, job_id)
