"""Keeping the cohorts current: set-based membership deltas inside the alignment evaluation.

`CohortMaintainer.refresh` is an `AlignmentEngine` listener. In the evaluation's own transaction
(after the findings of its members are written, under the evaluation lock) it compares each cohort's
definition with its current members, for the evaluated members only, and in SQL:

* members the definition selects and the table does not hold as current get a row added at the
  next Group version;
* current members the definition no longer selects get that version as `removed_version`.

Only a cohort whose membership changed gets a new Group version: a new header row in
`resources`/`resource_history` (with the txid and lastUpdated the evaluation transaction took as it
began, `AlignmentEngine.begin_evaluation`, so it orders among all writes), its `quantity` the previous
one plus the rows added less the rows removed, and its `member` reference-index rows updated by the
same delta. Version 1 of every header is written at start-up
(`ensure_headers`), with the ordinary index rows of its other parameters, which never change since
only `quantity` and `meta` do; `synchronise` then catches up with findings evaluated without a server.
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from sqlalchemy import BigInteger, Connection, Engine, Executable, Integer, String, bindparam, delete, exists
from sqlalchemy import insert, literal, select, update

from server.alignment.engine import AlignmentEngine
from server.alignment.hooks import VERSION_LU, VERSION_TXID
from server.alignment.facts import EVERYONE, Members
from server.cohorts.definitions import COHORTS, Cohort, cohort_members_select
from server.cohorts.groups import header
from server.fhir import searchparams
from server.store.cohort_schema import cohort_members
from server.store.resources import StagedWrite, Store, WriteTransaction, append_versions
from server.store.txids import retried
from server.store.schema import idx_reference, resources

VERSION = "cohort_version"  # bound at execution: the Group version a refresh would write
MEMBER_PARAM = searchparams.param_hash("Group", "member")
_version = bindparam(VERSION, type_=Integer)


class CohortMaintainer:
    def __init__(self, store: Store):
        self.store = store

    def follow(self, engine: AlignmentEngine) -> None:
        """`refresh` runs inside every evaluation of `engine` (a POST_EVALUATION hook), so the engine keeps
        the cohort table's statistics fresh with its own."""
        engine.statistics_tables.append(cohort_members.name)

    def ensure_headers(self) -> None:
        """Write version 1 (no members) of every cohort Group not stored yet; safe from many processes
        at once, as their claims on the Group ids make them take turns."""
        def work(tx: WriteTransaction) -> None:
            stored = tx.current(("Group", c.id) for c in COHORTS)
            for cohort in COHORTS:
                if ("Group", cohort.id) not in stored:
                    group = header(cohort, 1, tx.now_us, 0)
                    tx.stage(StagedWrite("Group", cohort.id, 1, "POST", orjson.dumps(group),
                                         searchparams.index_rows(group), existed=False))

        self.store.write(work)

    def synchronise(self, db: Engine) -> None:
        """Bring every cohort up to date with the findings as they are (after an upgrade, or an
        evaluation run without a server), under the evaluation lock."""
        def attempt() -> None:
            with db.begin() as conn:
                self.refresh(conn, EVERYONE, AlignmentEngine.begin_evaluation(conn))

        retried(attempt)

    def refresh(self, conn: Connection, members: Members, params: dict[str, object]) -> None:
        """`AlignmentEngine` listener: update the cohorts for the evaluated members."""
        headers = {row.rid: row for row in conn.execute(
            select(resources.c.rid, resources.c.version, resources.c.content)
            .where(resources.c.rtype == "Group", resources.c.rid.in_([c.id for c in COHORTS])))}
        changed: list[tuple[Cohort, int, int]] = []
        hash_joins = members.everyone and conn.dialect.name == "postgresql"
        if hash_joins:
            # Statistics lag behind a full evaluation that just rewrote the findings (or a first sync):
            # estimating a few rows, PostgreSQL would nest-loop two 100,000-row sides. Hash joins are
            # linear whatever the estimates.
            conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        for cohort in COHORTS:
            current = headers.get(cohort.id)
            if current is None:  # headers are written at start-up; never a version 0
                continue
            bound = {**params, VERSION: current.version + 1}
            add, leave = _delta(cohort.id, members)
            added, removed = conn.execute(add, bound).rowcount, conn.execute(leave, bound).rowcount
            if added or removed:
                quantity = orjson.loads(current.content)["quantity"] + added - removed
                changed.append((cohort, current.version + 1, quantity))
        if hash_joins:
            conn.exec_driver_sql("RESET enable_nestloop")
        if changed:
            self._write_versions(conn, changed, (params[VERSION_TXID], params[VERSION_LU]))

    def _write_versions(self, conn: Connection, changed: list[tuple[Cohort, int, int]],
                        stamp: tuple[int, int]) -> None:
        """New header versions of the changed cohorts, in one write of the store's log."""
        by_id = {cohort.id: (cohort, quantity) for cohort, _version, quantity in changed}

        def render(rid: str, version: int, now: int) -> bytes:
            cohort, quantity = by_id[rid]
            return orjson.dumps(header(cohort, version, now, quantity))

        append_versions(conn, "Group", [(cohort.id, version) for cohort, version, _ in changed], render, stamp)
        for cohort, version, _quantity in changed:
            for statement in _member_index(cohort.id):
                conn.execute(statement, {VERSION: version})


@lru_cache(maxsize=None)
def _delta(cohort_id: str, members: Members) -> tuple[Executable, Executable]:
    """(INSERT the joiners, UPDATE the leavers) of one cohort among `members`; built once per scope."""
    m = cohort_members.c
    joining = cohort_members_select(cohort_id, members).subquery("target")
    # The correlated lookups name one patient each: restricting them to `members` as well would only
    # stop PostgreSQL from answering them with one primary-key probe per row.
    current = cohort_members.alias("held")
    is_current = exists().where(current.c.cohort_id == cohort_id, current.c.patient_id == joining.c.patient_id,
                                current.c.removed_version.is_(None))
    target = cohort_members_select(cohort_id)
    add = insert(cohort_members).from_select(
        ["cohort_id", "patient_id", "added_version"],
        select(literal(cohort_id, String), joining.c.patient_id, _version)
        .where(~is_current),
    ).execution_options(preserve_rowcount=True)  # SQLAlchemy keeps an INSERT's row count only when asked
    selected = target.selected_columns[0].element  # the findings column behind the `patient_id` label
    leave = (
        update(cohort_members)
        .where(m.cohort_id == cohort_id, m.removed_version.is_(None), *members.where(m.patient_id),
               ~exists(target.where(selected == m.patient_id)))
        .values(removed_version=_version)
    )
    return add, leave


@lru_cache(maxsize=None)
def _member_index(cohort_id: str) -> tuple[Executable, Executable]:
    """Keep `Group?member=` equal to the version's `member.entity`: un-index the members the previous
    version showed as dropped, index the members this version added."""
    m, x = cohort_members.c, idx_reference.c
    dropped_before = select(m.patient_id).where(m.cohort_id == cohort_id, m.removed_version == _version - 1)
    unindex = delete(idx_reference).where(x.rtype == "Group", x.rid == cohort_id, x.h_param == MEMBER_PARAM,
                                          x.target_type == "Patient", x.target_id.in_(dropped_before))
    index = insert(idx_reference).from_select(
        ["rtype", "rid", "h_param", "target_type", "target_id", "target_url"],
        select(literal("Group", String), literal(cohort_id, String), literal(MEMBER_PARAM, BigInteger),
               literal("Patient", String), m.patient_id, literal(None, String))
        .where(m.cohort_id == cohort_id, m.added_version == _version),
    )
    return unindex, index
