"""Applying a validated payer file to a draft roster, set-based.

Every row is kept in `roster_file_rows` as the payer stated it (unknown participant ids too: the
reconciliation lists them), loaded in one COPY (PostgreSQL) or executemany (SQLite) together with the
hashes its member id has in the token index and its attributed provider, and written with its patient
resolved through the token index (a member id on `Patient.identifier`, else on one `Coverage.identifier`
whose beneficiary is the patient), each within the caller's reach. Then the first row of each member
(patient and provider) makes it a member, with its latest Coverage: all inserted by one statement into a
list without members; otherwise through a temporary table that also says whether the member is listed
already, those members updated from their row and the others inserted.
No statement runs per member. The loaded rows are analysed before they are joined with the members
(`store.statistics.analyze_written`): at 30,000 rows the insert otherwise took 194 s on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import (BigInteger, Column, Connection, MetaData, Select, Table, and_, case, exists, func, insert,
                        literal, not_, null, select, update)

from server.fhir.errors import FhirError
from server.fhir.searchparams import param_hash
from server.rosters.members import Resolver
from server.rosters.payer_file import PayerFile
from server.store.hashing import h64_of
from server.store.resources import bulk_insert
from server.store.roster_schema import roster_file_rows, roster_members
from server.store.schema import idx_reference, idx_token, resources
from server.store.search import clause_sql
from server.store.statistics import analyze_written, plan_locally
from server.store.temporary import materialized

m, f = roster_members.c, roster_file_rows.c
r, t, x = resources.c, idx_token.c, idx_reference.c
# A file's rows as stated (`patient_id`: the patient a row names by reference), before their patients are
# resolved; private to the connection.
_STAGE = Table("roster_import_file", MetaData(),
               *(Column(c.name, c.type) for c in roster_file_rows.c if c.name != "import_id"),
               prefixes=["TEMPORARY"])
# Quoted: AUTHORIZATION is a reserved word of PostgreSQL.
_STAGE_COLUMNS = tuple('"authorization"' if c.name == "authorization" else c.name for c in _STAGE.c)


@dataclass(frozen=True)
class Imported:
    rows: int
    added: int
    updated: int
    unknown: int


def import_rows(conn: Connection, resolve: Resolver, group_id: str, import_id: int, payer: PayerFile,
                member_system: str | None, stamp: dict) -> Imported:
    """`import_id`: the file's `roster_imports` row; `stamp`: who imports the file and when (the rows'
    changed_by / changed_us)."""
    # Planned on the estimates of a temporary table without statistics, the resolving INSERT crossed the JIT
    # threshold and spent 0.25 s of its 0.92 s compiling (100,000 rows); the window that keeps each member's
    # first row spilled 10 MB to disk at the default work_mem. The ANALYZEs below sample 3,000 rows instead of
    # 30,000: the next statements need row counts and the join columns' spread, not fine histograms, and at
    # the default each cost 0.10–0.17 s of CPU after a 100,000-row file.
    plan_locally(conn, jit="off", work_mem="64MB", default_statistics_target="10")
    _load_file_rows(conn, resolve, import_id, payer, member_system)
    # The rows are joined with the members and the Coverage references next, and by the roster's reports
    # after: planned on the statistics of before the load (an empty table), the Coverage join nest-looped
    # over the file's rows for minutes at 100,000 members.
    analyze_written(conn, roster_file_rows.name)
    in_file = f.import_id == import_id
    # Ordered as the (group_id, patient_id) index is, so the planner walks it: an EXISTS, for a new list that
    # the statistics size as an average one, scanned the whole table (0.3–0.4 s of CPU at 1.3 million rows).
    if conn.execute(select(m.patient_id).where(m.group_id == group_id).order_by(m.patient_id).limit(1)).first():
        added, updated = _merge_members(conn, resolve, group_id, import_id, member_system, stamp)
    else:  # a list without members yet: every member of the file is new
        rows = _first_rows_covered(resolve, import_id, conn.dialect.name).subquery()
        conn.execute(_new_members(resolve, group_id, rows, member_system, stamp))
        added, updated = conn.execute(select(func.count()).where(m.group_id == group_id)).scalar_one(), 0
    unknown = conn.execute(select(func.count()).where(in_file, f.patient_id.is_(None))).scalar_one()
    # The roster's next reports (reconciliation, drift) join the members as they now are. Without this they
    # planned on the statistics of before the import.
    analyze_written(conn, roster_members.name)
    return Imported(payer.row_count, added, updated, unknown)


def _load_file_rows(conn: Connection, resolve: Resolver, import_id: int, payer: PayerFile,
                    member_system: str | None) -> None:
    """The file's rows as stated, loaded through the driver into a temporary table (COPY on PostgreSQL),
    then written to `roster_file_rows` by one INSERT … SELECT that resolves each row's patient on the way:
    loaded first and resolved by an UPDATE, every row was written twice (100,000 rows, SQLite: 0.5 s of CPU
    for the UPDATE)."""
    columns = payer.columns
    providers = _providers(resolve, payer)
    # A member named by reference (an ATR Group) has its patient, and no member id to look up.
    ids = columns.participant_id
    if any(columns.patient_ref):
        ids = [None if ref else i for i, ref in zip(ids, columns.patient_ref)]
    patients = [ref.split("/", 1)[1] if ref else None for ref in columns.patient_ref]
    _STAGE.drop(conn, checkfirst=True)  # left by an earlier failure on this pooled connection
    _STAGE.create(conn)
    bulk_insert(conn, _STAGE.name, _STAGE_COLUMNS, zip(
        columns.row_no, columns.participant_id, patients, columns.attribution_date, columns.category,
        columns.authorization, columns.exclusion, _hashes("Patient", member_system, ids),
        _hashes("Coverage", member_system, ids), providers, columns.provider_npi))
    s = _STAGE.c
    stated = [s.participant_id, s.attribution_date, s.category, s.authorization, s.exclusion, s.h_patient,
              s.h_coverage, s.provider_ref, s.provider_npi]
    rows = select(literal(import_id), s.row_no, _patient(resolve, s, member_system is not None),
                  *stated)
    conn.execute(insert(roster_file_rows).from_select(["import_id", "row_no", "patient_id",
                                                       *(c.name for c in stated)], rows))
    _STAGE.drop(conn)


def _same_member(group_id: str, row):
    """The roster's member row for a file row: same patient and attributed provider."""
    return and_(m.group_id == group_id, m.patient_id == row.patient_id,
                func.coalesce(m.provider_ref, "") == func.coalesce(row.provider_ref, ""))


def _known(resolve: Resolver, rtype: str, rid):
    """`rid` is a current resource of `rtype` within the caller's search reach."""
    clauses = [clause_sql(c, rtype) for c in resolve.ctx.access.clauses(rtype, "s")]
    return exists().where(r.rtype == rtype, r.rid == rid, r.deleted.is_(False), *clauses)


def _reachable(resolve: Resolver, rtype: str, rid) -> list:
    """What keeps an indexed `rid` within the caller's search reach: nothing for an unconfined caller (the
    index holds current resources only), else its scopes' clauses."""
    return [_known(resolve, rtype, rid)] if resolve.ctx.access.clauses(rtype, "s") else []


def _patient(resolve: Resolver, row, with_system: bool):
    """The patient of a file row: the one Patient carrying the member id, else the beneficiary of the one
    Coverage carrying it; a row naming its patient by reference keeps it only when that patient is in reach."""
    column = t.h_sys_value if with_system else t.h_value

    def only(rtype: str, hashed) -> object:
        """The one resource of `rtype` whose identifier hash is `hashed` (NULL when none or several)."""
        found = select(func.min(t.rid)).where(t.rtype == rtype, column == hashed,
                                              *_reachable(resolve, rtype, t.rid))
        # Correlated with the file row however deep it is nested: within the beneficiary's sub-select,
        # auto-correlation left the row's table in its FROM, and the Coverage was looked up for all rows at once.
        # One resource: its least and greatest id agree (no rows: both NULL, no match). count(DISTINCT) sorted
        # each member's index rows to count them.
        return found.having(func.min(t.rid) == func.max(t.rid)).correlate_except(idx_token).scalar_subquery()

    beneficiary = select(x.target_id).where(
        x.rtype == "Coverage", x.rid == only("Coverage", row.h_coverage),
        x.h_param == param_hash("Coverage", "beneficiary"), x.target_type == "Patient",
        *_reachable(resolve, "Patient", x.target_id)).limit(1).scalar_subquery()
    by_reference = case((_known(resolve, "Patient", row.patient_id), row.patient_id))
    return case((row.h_patient.is_(None), by_reference), else_=func.coalesce(only("Patient", row.h_patient), beneficiary))


def _merge_members(conn: Connection, resolve: Resolver, group_id: str, import_id: int, member_system: str | None,
                   stamp: dict) -> tuple[int, int]:
    """Members already listed (same patient and provider) updated from their row, the others inserted: (added,
    updated). Whether each is listed is decided before any member row is written, in a temporary table: an
    anti-join against the table being inserted into walks the new index entries once per row."""
    ranked = _first_rows_covered(resolve, import_id, conn.dialect.name).subquery()
    listed = exists().where(_same_member(group_id, ranked.c)).label("listed")
    with materialized(conn, "roster_import_rows", select(ranked, listed)) as rows:
        values = _member_values(resolve, rows.c, member_system, stamp)
        updated = conn.execute(update(roster_members).where(rows.c.listed, _same_member(group_id, rows.c))
                               .values(inactive=False, change_type="changed", **values)).rowcount
        conn.execute(_new_members(resolve, group_id, rows, member_system, stamp, not_(rows.c.listed)))
        added = conn.execute(select(func.count()).where(not_(rows.c.listed))).scalar_one()
    return added, updated


def _new_members(resolve: Resolver, group_id: str, rows, member_system: str | None, stamp: dict, *where):
    """The INSERT of a new member per row of `rows` (file rows)."""
    values = _member_values(resolve, rows.c, member_system, stamp)
    new = select(literal(group_id), literal(False), literal("new"), rows.c.provider_ref, *values.values()).where(*where)
    return insert(roster_members).from_select(["group_id", "inactive", "change_type", "provider_ref", *values], new)


def _first_rows_covered(resolve: Resolver, import_id: int, dialect: str) -> Select:
    """The file's resolved rows, one per (patient, provider): a member listed twice is added once, from its
    first row; each with the member's latest Coverage (`coverage_id`). PostgreSQL ranks each key's rows with
    a window, which hands the rows on in patient order (the members' index is then written in order; SQLite's
    `min(row_no)` semi-join, hashed there, wrote it in random order: 0.49 → 1.05 s of CPU at 100,000 members), and
    joins the file's patients with the Coverage references at once (members INSERT 0.88–0.94 → 0.66–0.69 s
    of CPU). SQLite keeps the rows whose number is their key's least (the window's sort of the wide rows cost
    0.46 s of CPU for the statement, this 0.29 s) and probes the Coverage per member, faster there (the join
    cost 0.15 s more CPU per 20,000 members)."""
    in_file = f.import_id == import_id
    if dialect == "sqlite":
        other = roster_file_rows.alias("same_key")
        firsts = (select(func.min(other.c.row_no))
                  .where(other.c.import_id == import_id, other.c.patient_id.is_not(None))
                  .group_by(other.c.patient_id, func.coalesce(other.c.provider_ref, "")))
        return select(roster_file_rows, _latest_coverage(resolve, f).label("coverage_id")).where(
            in_file, f.patient_id.is_not(None), f.row_no.in_(firsts))
    first = func.row_number().over(partition_by=(f.patient_id, func.coalesce(f.provider_ref, "")), order_by=f.row_no)
    ranked = select(roster_file_rows, first.label("n")).where(in_file, f.patient_id.is_not(None)).subquery()
    stated = [c for c in ranked.c if c.name != "n"]
    latest = _latest_coverages(resolve, select(f.patient_id).where(in_file))
    return (select(*stated, latest.c.coverage_id)
            .outerjoin_from(ranked, latest, latest.c.patient_id == ranked.c.patient_id).where(ranked.c.n == 1))


def _member_values(resolve: Resolver, row, member_system: str | None, stamp: dict) -> dict:
    """What a member row takes from its file row (a member named by reference has no member id), and the
    member's latest Coverage."""
    by_id = row.h_patient.is_not(None)
    return {
        "patient_id": row.patient_id,
        "member_system": case((by_id, literal(member_system)), else_=null()) if member_system else null(),
        "member_value": case((by_id, row.participant_id), else_=null()),
        "provider_npi": row.provider_npi,
        "period_start": row.attribution_date,
        "stated_authorization": row.authorization,
        "stated_category": row.category,
        "stated_exclusion": row.exclusion,
        "changed_by": literal(stamp["changed_by"]),
        "changed_us": literal(stamp["changed_us"], BigInteger),
        "coverage_id": row.coverage_id,
    }


def _latest_coverage(resolve: Resolver, row):
    """The member's most recently written Coverage within the caller's reach, probed per member. No condition
    on the reference's rtype (the parameter hash names Coverage): it would let the planner scan every
    Coverage reference per member instead of probing the target index."""
    return (select(x.rid).join(resources, and_(r.rtype == x.rtype, r.rid == x.rid))
            .where(x.target_id == row.patient_id, x.target_type == "Patient",
                   x.h_param == param_hash("Coverage", "beneficiary"), r.deleted.is_(False),
                   *_reachable(resolve, "Coverage", x.rid))
            .order_by(r.lu.desc(), x.rid).limit(1).scalar_subquery())


def _latest_coverages(resolve: Resolver, patients: Select):
    """Per patient of `patients`, the most recently written Coverage naming them as beneficiary within the
    caller's reach (`patient_id`, `coverage_id`): one join the planner sizes, not a probe per member (a
    correlated sub-select, probing the target index, cost 0.22 s of CPU for 100,000 members without any
    Coverage)."""
    newest = func.row_number().over(partition_by=x.target_id, order_by=(r.lu.desc(), x.rid))
    ranked = (select(x.target_id.label("patient_id"), x.rid.label("coverage_id"), newest.label("n"))
              .join(resources, and_(r.rtype == x.rtype, r.rid == x.rid))
              .where(x.target_id.in_(patients), x.target_type == "Patient", x.rtype == "Coverage",
                     x.h_param == param_hash("Coverage", "beneficiary"), r.deleted.is_(False),
                     *_reachable(resolve, "Coverage", x.rid))
              .subquery())
    return select(ranked.c.patient_id, ranked.c.coverage_id).where(ranked.c.n == 1).subquery()


def _hashes(rtype: str, member_system: str | None, ids: Sequence[str | None]) -> list[int | None]:
    """The token-index hashes of the member ids as `rtype` identifiers (None for a row without one)."""
    hashed = h64_of(rtype, "identifier", *([member_system] if member_system else []))
    return [None if i is None else hashed(i) for i in ids]


def _providers(resolve: Resolver, payer: PayerFile) -> Sequence[str | None]:
    """Each row's attributed provider reference; an NPI or reference that names no provider refuses the file."""
    npis, references = payer.columns.provider_npi, payer.columns.provider_ref
    if not any(npis) and not any(references):
        return npis  # all None
    by_npi = resolve.providers_by_npi(sorted({n for n in npis if n}))
    by_reference = {ref: resolve.provider(ref) for ref in {r for r in references if r}}
    for row_no, npi in zip(payer.columns.row_no, npis):
        if npi is not None and npi not in by_npi:
            raise FhirError.of(422, "not-found", f"Attribution file refused, nothing imported: row {row_no}, "
                                                 "field provider_npi: the NPI names no provider known to the server",
                               f"row[{row_no}].provider_npi")
    return [by_npi[npi] if npi is not None else by_reference.get(ref) for npi, ref in zip(npis, references)]
