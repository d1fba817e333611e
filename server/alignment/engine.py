"""The alignment engine: evaluates a set of members into the findings tables, inside the database.

An evaluation is one transaction of set-based statements, the same for every member set:

1. take the evaluation lock (`alignment_lock` row): evaluations never interleave, and every statement
   after it sees all writes committed before, so the last evaluation of a member reflects its data;
2. delete the members' previous findings;
3. INSERT … SELECT the stages: active coverages, diagnosis evidence, categories (`facts.py`), then each
   member's decisions (facts row and per-product eligibility) into a temporary table, from which the
   findings rows and the eligible products are derived (`rules.py`): the facts are aggregated once.

No member data passes through Python, so memory does not grow with the population. A full run
(`evaluate_all`) covers every member in one pass per stage; the after-commit path
(`evaluate_touched`) covers the members a write touched, in chunks of `member_chunk` ids.

Kept current in one of two modes (`EngineConfig.mode`). In deferred mode a worker thread (`deferred.py`)
calls `drain`, which evaluates every write still awaiting evaluation, many write transactions at a
time. In sync mode (the default) `on_commit` is registered on `FhirService.after_commit`, which runs after
the write committed and before the HTTP response is built, so a client that got its response can read
findings that include its write. A failure there surfaces as a 500 on that request while the write
itself stays committed; re-posting is safe (conditional creates) and re-evaluates.

Nothing is lost when a process dies between a commit and its evaluation: once the evaluation committed,
the write's transaction is recorded as evaluated (`touched.py`, progress), and `recover` evaluates the
members of every write left unrecorded: at start-up (`prepare`), and from the after-commit path of any
process once such a write is `recover_after_seconds` old (its own process is then presumed dead).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from time import monotonic, perf_counter, time_ns
from typing import Callable, Iterable

from sqlalchemy import Connection, Engine, Executable, Select, Table, delete, exists, func, insert, select, update
from sqlalchemy.schema import CreateTable, DropTable

from server.alignment.codes import code_rows, codes_key, install_codes
from server.alignment.facts import (
    CATEGORY_COLUMNS,
    COVERAGE_COLUMNS,
    EVERYONE,
    EVIDENCE_COLUMNS,
    MEMBER_IDS,
    MemberDays,
    Members,
    categories_select,
    coverage_select,
    evidence_select,
)
from server.alignment.index_keys import READ_TYPES, IndexKeys
from server.alignment.mappings import Mappings
from server.alignment.member_facts import PLAN_COLUMNS, plans_select
from server.alignment.rules import (
    EVALUATED_AT,
    FINDING_COLUMNS,
    PRODUCT_COLUMNS,
    decisions_table,
    findings_select,
    products_select,
    rules_version,
)
from server.alignment.touched import (
    advance_watermark,
    awaiting_batch,
    evaluated_through,
    pending_writes,
    record_evaluated,
    record_txids,
    touched_members,
    watermark_to_counter,
)
from server.alignment.window import EvaluationWindow, RowWindow, WindowParameters, today_utc
from server.alignment.hooks import EVALUATED, POST_EVALUATION, VERSION_LU, VERSION_TXID
from server.fhir.features import Hooks
from server.fhir.types import WriteContext, Written
from server.store.alignment_schema import (
    FINDING_TABLES,
    AlignmentRules,
    alignment_claim_lines,
    alignment_coverage_codes,
    alignment_coverages,
    alignment_diagnoses,
    alignment_evaluated,
    alignment_lock,
    alignment_member_codes,
    alignment_members,
    alignment_rules,
    finding_categories,
    finding_coverage,
    finding_evidence,
    finding_plans,
    finding_products,
    findings,
)
from server.store.resources import bulk_insert, chunks
from server.store.txids import begin_versions, retried
from server.store.schema import idx_date, idx_reference, idx_string, idx_token, resource_history, resources
from server.store.statistics import analyze_grown, analyze_written, plan_locally

log = logging.getLogger("planfit.alignment")
# What evaluations and the write-time facts read and rewrite, whose planner statistics they depend on. The
# Patient facts read `idx_string`: never analyzed, it was planned as a scan of every Patient's address rows in
# each write of Patients, and the 1,000,000-member ingest slowed as it grew (2026-12-05).
EVALUATION_TABLES = tuple(t.name for t in (resources, resource_history, idx_token, idx_date, idx_reference, idx_string,
                                           alignment_diagnoses, alignment_coverages, alignment_coverage_codes,
                                           alignment_members, alignment_member_codes, alignment_claim_lines,
                                           alignment_evaluated,
                                           *FINDING_TABLES))
Stage = tuple[Table, tuple[str, ...], Select]  # the table a stage fills, its columns, the SELECT filling them


MODES = ("sync", "deferred")


@dataclass(frozen=True)
class EngineConfig:
    lookback_months: int = 24
    evaluation_date: date | None = None  # None: today (UTC) at each evaluation
    member_chunk: int = 1000
    recover_after_seconds: float = 30.0
    mode: str = "sync"  # sync: before the write's response; deferred: by a worker thread after it
    drain_transactions: int = 20  # write transactions per deferred evaluation transaction

    @classmethod
    def parse(cls, lookback_months: int, evaluation_date: str, mode: str = "sync") -> "EngineConfig":
        """From the settings' text; a ValueError names the setting that is wrong."""
        if lookback_months < 1:
            raise ValueError("PLANFIT_LOOKBACK_MONTHS must be at least 1")
        if mode not in MODES:
            raise ValueError(f"PLANFIT_ALIGNMENT_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        try:
            fixed = date.fromisoformat(evaluation_date) if evaluation_date else None
        except ValueError:
            message = f"PLANFIT_EVALUATION_DATE must be a date like 2026-01-01, got {evaluation_date!r}"
            raise ValueError(message) from None
        return cls(lookback_months=lookback_months, evaluation_date=fixed, mode=mode)


@dataclass(frozen=True)
class RunSummary:
    """What a full run did: how many members it evaluated, by status, as of when, how long."""

    members: int
    statuses: dict[str, int]
    as_of: date
    lookback_start: date
    seconds: float


class AlignmentEngine:
    def __init__(self, db: Engine, mappings: Mappings, config: EngineConfig, hooks: Hooks | None = None):
        self.db = db
        self.hooks = hooks or Hooks()  # POST_EVALUATION and EVALUATED implementations (`hooks.py`)
        self.mappings = mappings
        self.config = config
        self.keys = IndexKeys.resolve()
        self._code_rows = code_rows(mappings)
        self.codes_key = codes_key(self._code_rows)
        self.rules_version = rules_version(mappings, self.codes_key)
        self._codes_installed = False
        self._listed = Members.listed(db.dialect.name)
        self._statements: dict[tuple[EvaluationWindow, Members], tuple[Executable, ...]] = {}
        self._statements_lock = threading.Lock()  # requests evaluate in worker threads
        self._row_probe: WindowParameters | None = None  # the bounds `evaluate_on_days` makes columns
        self.statistics_tables = list(EVALUATION_TABLES)  # a listener adds the tables it reads
        self._next_recovery = 0.0  # monotonic time of this process's next look for unevaluated writes

    def window(self) -> EvaluationWindow:
        return EvaluationWindow(self.config.evaluation_date or today_utc(), self.config.lookback_months)

    def prepare(self) -> None:
        """At start-up, not in the first request: install this mapping version's code rows; re-evaluate
        every member when the stored findings were made by other rules or mappings (an upgrade from v1:
        the cohort Groups then show the drift as new versions); else evaluate the writes whose evaluation
        never ran."""
        with self.db.begin() as conn:
            self.lock(conn)
            install_codes(conn, self.codes_key, self._code_rows)
            stored = conn.execute(select(alignment_rules.c.version).where(alignment_rules.c.id == 1)).scalar()
            # A database without members has nothing to re-evaluate (a new one, not an upgrade).
            members = conn.execute(select(exists().where(resources.c.rtype == "Patient"))).scalar()
        self._codes_installed = True
        if stored != self.rules_version:
            if members:
                log.warning("findings were made by other rules (%s): re-evaluating every member", stored or "none")
                self.evaluate_all()
            self.record_rules_version()
        self.recover()

    def use_mappings(self, mappings: Mappings) -> bool:
        """Evaluate with another catalogue from now on (the stored InsurancePlans, `plans.py`; its value sets
        must be these): True when that changes the rules version, and the caller must then re-evaluate."""
        version = rules_version(mappings, self.codes_key)
        with self._statements_lock:
            changed = version != self.rules_version
            self.mappings, self.rules_version = mappings, version
            self._statements.clear()
        return changed

    def record_rules_version(self) -> None:
        """Record that the stored findings are those of this process's rules version."""
        with self.db.begin() as conn:
            self.lock(conn)
            conn.execute(delete(alignment_rules))
            conn.execute(insert(alignment_rules).values(AlignmentRules(id=1, version=self.rules_version).model_dump()))

    # -- entry points ------------------------------------------------------------------------------

    def on_commit(self, written: list[Written], _ctx: WriteContext) -> None:
        """`FhirService.after_commit` listener: re-evaluate the members the write touched, then record the
        write as evaluated; now and then, also evaluate writes another (dead) process left behind."""
        with self.db.connect() as conn:
            members = touched_members(conn, self.keys, written)
        self.evaluate_touched(members)
        self._record(written)
        if monotonic() >= self._next_recovery:
            self.recover(self.config.recover_after_seconds)

    def evaluate_touched(self, patient_ids: Iterable[str]) -> None:
        ids = sorted(set(patient_ids))
        if not ids:
            return
        started = perf_counter()
        self._refresh_statistics()
        for chunk in chunks(ids, self.config.member_chunk):
            self._evaluate(self._listed, {MEMBER_IDS: chunk})
        self._observe("incremental", perf_counter() - started)

    def recover(self, grace_seconds: float = 0.0) -> int:
        """Evaluate the members of writes committed over `grace_seconds` ago and never evaluated, then move
        the watermark up; returns how many such resource versions there were."""
        self._next_recovery = monotonic() + self.config.recover_after_seconds
        limit = self.config.member_chunk * 100
        with self.db.connect() as conn:
            written = pending_writes(conn, time_ns() // 1000 - int(grace_seconds * 1_000_000), limit)
            members = touched_members(conn, self.keys, written) if len(written) <= limit else set()
        if len(written) > limit:  # e.g. rows loaded around the server: one full run is cheaper
            log.warning("over %d written resource versions were never evaluated: evaluating every member", limit)
            self.evaluate_all()
        elif written:
            log.warning("evaluating %d written resource versions whose evaluation never ran", len(written))
            self.evaluate_touched(members)
            self._record(written)
        with self.db.begin() as conn:
            self.lock(conn)
            advance_watermark(conn)
        return len(written)

    def drain(self, stopping: threading.Event | None = None) -> int:
        """Evaluate the members of every committed write not yet evaluated, oldest first, a batch of whole
        write transactions per evaluation transaction, each recorded as evaluated in that same
        transaction; returns how many resource versions. The deferred mode's worker calls this, and
        stops between batches once `stopping` is set."""
        done, started = 0, perf_counter()
        while stopping is None or not stopping.is_set():
            latest, through = self.progress()
            if through >= latest:  # a read, so an idle worker's poll takes no lock
                break
            self._refresh_statistics()
            window = self.window()

            def batch() -> tuple[list[Written], list[str]]:
                with self.db.begin() as conn:
                    # Before reading what awaits: a concurrent drain has recorded its batch.
                    bound = {**self.begin_evaluation(conn), EVALUATED_AT: time_ns() // 1000}
                    written, txids = awaiting_batch(conn, self.config.drain_transactions)
                    members = sorted(touched_members(conn, self.keys, written)) if written else []
                    for chunk in chunks(members, self.config.member_chunk):
                        self._run(conn, window, self._listed, {**bound, MEMBER_IDS: chunk})
                    if members:  # once for the batch, last
                        self._notify(conn, self._listed, {**bound, MEMBER_IDS: members})
                    record_txids(conn, txids)
                    advance_watermark(conn)
                    return written, members

            written, members = retried(batch)
            if members:  # `_run` installed this process's codes, and they committed with the batch
                self._codes_installed = True
            if not written:
                break
            done += len(written)
        if done:
            self._observe("incremental", perf_counter() - started)
        return done

    def _refresh_statistics(self) -> None:
        """ANALYZE the tables evaluations read that grew since their last ANALYZE (one cheap query when
        none did): while a population is loaded, plans made from stale statistics take minutes."""
        analyze_grown(self.db, self.statistics_tables)

    def progress(self) -> tuple[int, int]:
        """(latest committed write, txid through which every write is evaluated)."""
        with self.db.connect() as conn:
            return evaluated_through(conn)

    def _record(self, written: list[Written]) -> None:
        if any(w.rtype in READ_TYPES for w in written):
            with self.db.begin() as conn:
                record_evaluated(conn, written)

    def evaluate_all(self) -> RunSummary:
        started = perf_counter()
        self._refresh_statistics()
        window = self._evaluate(EVERYONE, {}, watermark_to_counter)
        with self.db.connect() as conn:
            statuses = dict(conn.execute(select(findings.c.status, func.count()).group_by(findings.c.status)).all())
        summary = RunSummary(sum(statuses.values()), dict(sorted(statuses.items())), window.as_of,
                             window.lookback_start, perf_counter() - started)
        self._observe("full", summary.seconds)
        return summary

    def _observe(self, kind: str, seconds: float) -> None:
        for observe in self.hooks.of(EVALUATED):
            observe(kind, seconds)

    def evaluate_on_days(self, conn: Connection, member_days: Iterable[tuple[str, date]]) -> Table:
        """Evaluate (member, date) pairs, each as of its date, into the findings tables, in the caller's
        transaction, which must roll back afterwards: the finding a member had on a date, from the evidence
        dated on or before it (the history of findings is computed, not kept). One pass of the evaluation's
        statements for every pair (`RowWindow`); a pair's rows are keyed `member_key`, which is no Patient
        id (`@n`: ids have no `@`). Returns the pairs table (member_key, patient_id, as_of) to join the
        findings to. Listeners are not told."""
        pairs = sorted(set(member_days))
        self.lock(conn)
        if conn.dialect.name == "postgresql":
            self._plan_for_everyone(conn)
        if not self._codes_installed:
            install_codes(conn, self.codes_key, self._code_rows)
        with self._statements_lock:
            if self._row_probe is None:  # which bounds the statements read, to make them columns
                self._row_probe = WindowParameters(self.config.lookback_months)
                self._build(self._row_probe, EVERYONE)
        window = RowWindow(self._row_probe, (day for _pid, day in pairs))
        for table in (window.pairs, window.dates):
            table.create(conn)
        if pairs:
            conn.execute(insert(window.dates), window.date_rows())
            # COPY (PostgreSQL): the driver's executemany sends a statement per pair (0.4 s CPU at 9,293 pairs).
            bulk_insert(conn, window.pairs.name, ("member_key", "patient_id", "as_of"),
                        ((f"@{n}", pid, day.isoformat()) for n, (pid, day) in enumerate(pairs)))
        for table in (window.pairs, window.dates):
            analyze_written(conn, table.name)
        params = {EVALUATED_AT: time_ns() // 1000}
        for statement in self._build(window, MemberDays(everyone=True, keys=window.pairs.c.member_key)):
            conn.execute(statement, params)
        return window.pairs

    @staticmethod
    def _plan_for_everyone(conn: Connection) -> None:
        """Row estimates of the grouped index-table CTEs are far off, and a nested-loop plan over them runs
        for many minutes on 100,000 members; hash joins take seconds. Disabling nested loops adds its
        penalty to the plan's cost, which then passes the JIT thresholds: compiling these statements' CASE
        expressions took 19 s of a 20 s statement (EXPLAIN ANALYZE, 9,293 member-days), so no JIT."""
        plan_locally(conn, enable_nestloop="off", jit="off")

    @staticmethod
    def _plan_per_execution(conn: Connection) -> None:
        """The driver prepares these statements; a generic plan, made once per connection for any member
        list and from the statistics of that moment, can take minutes where a plan for this list and
        today's table sizes takes a second."""
        plan_locally(conn, plan_cache_mode="force_custom_plan")

    # -- the evaluation ------------------------------------------------------------------------------

    def _evaluate(self, members: Members, params: dict[str, object],
                  prologue: Callable[[Connection], None] | None = None) -> EvaluationWindow:
        """One transaction; `prologue` runs right after the lock, before the statements read any data."""
        window = self.window()

        def attempt() -> None:
            with self.db.begin() as conn:
                bound = {**params, **self.begin_evaluation(conn)}
                if prologue is not None:
                    prologue(conn)
                bound[EVALUATED_AT] = time_ns() // 1000
                self._run(conn, window, members, bound)
                self._notify(conn, members, bound)

        retried(attempt)  # a listener's versions may meet a later-started evaluation's (`WriteConflict`)
        self._codes_installed = True
        return window

    def _run(self, conn: Connection, window: EvaluationWindow, members: Members, params: dict[str, object]) -> None:
        """The evaluation's statements, in the caller's transaction, which holds the lock; `params` bind
        the members (if listed) and EVALUATED_AT."""
        if conn.dialect.name == "postgresql":
            if members is EVERYONE:
                self._plan_for_everyone(conn)
            else:
                self._plan_per_execution(conn)
        if not self._codes_installed:
            install_codes(conn, self.codes_key, self._code_rows)
        for statement in self._statements_for(window, members):
            conn.execute(statement, params)

    def _notify(self, conn: Connection, members: Members, params: dict[str, object]) -> None:
        """The listeners, after the findings of these members are written, in the same transaction."""
        for listener in self.hooks.of(POST_EVALUATION):
            listener(conn, members, params)

    def _statements_for(self, window: EvaluationWindow, members: Members) -> tuple[Executable, ...]:
        """The evaluation's statements, built once per evaluation date and member scope: building these
        expression trees costs more than running them for a few members."""
        key = (window, members)
        with self._statements_lock:
            if key not in self._statements:
                if any(cached != window for cached, _ in self._statements):
                    self._statements.clear()  # a new day: yesterday's bounds are never used again
                self._statements[key] = self._build(window, members)
            return self._statements[key]

    def _build(self, window: EvaluationWindow, members: Members) -> tuple[Executable, ...]:
        m, k = self.mappings, self.keys
        decided, decisions = decisions_table(m, k, window, members)
        # Member-days (`evaluate_on_days`) are new keys, read for their findings alone: nothing to delete,
        # and no plans or products (the worklist's and the finding page's).
        days = isinstance(members, MemberDays)
        stages: tuple[Stage | None, ...] = (
            (finding_coverage, COVERAGE_COLUMNS, coverage_select(m, k, window, members)),
            None if days else (finding_plans, PLAN_COLUMNS, plans_select(members)),
            (finding_evidence, EVIDENCE_COLUMNS, evidence_select(window, self.codes_key, members)),
            (finding_categories, CATEGORY_COLUMNS, categories_select(m.non_claims_valuesets, members)),
            (decided, tuple(c.name for c in decided.c), decisions),
            (findings, FINDING_COLUMNS, findings_select(m, window, decided)),
            None if days else (finding_products, PRODUCT_COLUMNS, products_select(m, window, decided)),
        )
        deletes = () if days else tuple(delete(table).where(*members.where(table.c.patient_id)) for table in FINDING_TABLES)
        fills = tuple(insert(table).from_select(list(columns), query) for table, columns, query in filter(None, stages))
        # The decisions table lives for the evaluation's statements only (and is gone on a rollback too).
        return (*deletes, CreateTable(decided), *fills, DropTable(decided))

    @staticmethod
    def begin_evaluation(conn: Connection) -> dict[str, int]:
        """First statements of an evaluation transaction: its listeners may write versions to the store's
        log (the cohort Groups), so it starts as every such writer does (`begin_versions`), then takes the
        evaluation lock. Returns the stamp as statement parameters (VERSION_TXID, VERSION_LU)."""
        txid, lu = begin_versions(conn)
        AlignmentEngine.lock(conn)
        return {VERSION_TXID: txid, VERSION_LU: lu}

    @staticmethod
    def lock(conn: Connection) -> None:
        """First statement of every evaluation: a write, so SQLite takes its write lock at once too."""
        conn.execute(update(alignment_lock).where(alignment_lock.c.id == 1)
                     .values(evaluations=alignment_lock.c.evaluations + 1))

    @staticmethod
    def shared_lock(conn: Connection) -> None:
        """The lock for a read that evaluates into its own transaction and rolls it back: on PostgreSQL it
        waits for evaluations that hold `lock` and holds them off, but not other such reads (which write
        rows no one else sees); SQLite has one writer at a time anyway."""
        if conn.dialect.name == "postgresql":
            conn.execute(select(alignment_lock.c.id).where(alignment_lock.c.id == 1).with_for_update(read=True))
        else:
            AlignmentEngine.lock(conn)
