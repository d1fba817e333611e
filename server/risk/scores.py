"""CMS-HCC risk scores per member and payment year, set-based (SPEC §10, §8).

One evaluation (a payment year, every member or a list of them) is one transaction under the
alignment lock, five statements over whole member sets, none per member:

1. `risk_dx`: the member's diagnoses that some configured model maps to a CC, dated in the diagnosis
   year (the calendar year before the payment year) or the year before it (`prior`, for historic
   gaps), from the alignment engine's own evidence query (`facts.evidence_select`: Conditions and
   Claim/ExplanationOfBenefit diagnoses, withdrawn ones left out, each with its source kind), matched
   through hash rows of every spelling of those codes (`model.code_rows`);
2. `risk_member`: Medicare members only (an active coverage whose line of business is Medicare or
   dual, read by `facts.coverage_select`), with age on 1 February of the payment year, sex, dual
   status, OREC, new-enrollee, disabled, originally-disabled and long-term-institutional flags and
   the model segment (community by dual status and age, `ins_`, `ne_`), resolved into the
   coefficient name of their demographic cell;
3. `risk_cc` per model version and basis (`claims`: adjudicated claims diagnoses; `all`: claims,
   pending claims and clinical; `prior`: adjudicated claims of the year before): the diagnoses mapped to CCs after the age/sex edits, a CC that
   needs a companion dropped without it, and hierarchies marked (`superseded`);
4. `risk_score`: the sum of the coefficients of the demographic cell and demographic interactions, of
   each unsuperseded HCC, of the disease interactions that hold and of the HCC-count variable, all
   looked up by name in
   `risk_model_coefficient` (a missing name adds nothing, exactly as the model software).

The rules follow hccinfhir 0.4.0's `calculate_raf` (model_demographics, model_edits,
model_hierarchies, model_interactions, model_coefficients), which tests check member by member.
Entitlement facts come from the member's Medicare Coverage (read 2026-12-03):
* OREC, the original reason for entitlement (0 OASI, 1 DIB, 2 ESRD, 3 DIB and ESRD;
  https://bluebutton.cms.gov/resources/variables/orec), from the Blue Button Coverage extension of
  that URL. Without it, as the CCW derives it when no entitlement record exists
  (ccwdata.org data dictionary, OREC.TXT): '0' at 65 or over, '1' under 65. `disabled` = under 65
  and OREC not 0; originally disabled = OREC 1 and 65 or over (CMS SAS: DISABL, ORIGDS).
* Long-term institutional (90 days or more in an institution: the LTI flag CMS sends on the Monthly
  Membership Report), from the PlanFit Coverage extension `long-term-institutional` (valueBoolean).
  Continuing enrollees with it use the institutional segment (`ins_`) with its ORIGDS and LTIMCAID
  terms; new enrollees stay in the new-enrollee model, which has no institutional segment.
A new enrollee is a member whose earliest active Medicare coverage started after 1 January of the
diagnosis year (fewer than 12 months of Medicare in it). Where PlanFit differs from hccinfhir 0.4.0:
hccinfhir never adds INS_ORIGDS (a variable of CMS's institutional segment) and scores an institutional
new enrollee with an `INS_` prefix on a new-enrollee cell (no such coefficient); tests name both.
ESRD members (OREC 2 or 3) are scored as hccinfhir scores them with the CMS-HCC model; CMS pays them
with the separate ESRD model, which PlanFit does not configure (mappings/README.md).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from time import time_ns
from typing import Any, Iterator

from sqlalchemy import BigInteger, Connection, Engine, Integer, bindparam, case, cast, delete, extract, func, insert, literal, select, text

from server.alignment.engine import AlignmentEngine
from server.alignment.facts import (
    COVERAGE_COLUMNS,
    EVIDENCE_COLUMNS,
    EVERYONE,
    MEMBER_IDS,
    Members,
    coverage_select,
    evidence_select,
    flag,
    lobs_with,
)
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import Mappings
from server.alignment.window import EvaluationWindow, today_utc
from server.fhir import searchparams
from server.fhir.dates import date_range
from server.risk.model import RiskModel, PaymentYear
from server.risk.schema import APART, STORED, MemberTables
from server.store.resources import chunks
from server.store.alignment_schema import alignment_coverages, alignment_members
from server.store.schema import idx_token
from server.store.statistics import plan_locally

RUN = "risk_run"
ESRD_OREC = ("2", "3")  # OREC 2 = ESRD, 3 = DIB and ESRD (https://bluebutton.cms.gov/resources/variables/orec)
# ExplanationOfBenefit.outcome (R4 RemittanceOutcome) of a claim received but not fully adjudicated:
# `queued` (processing has not begun), `partial` (some of the adjudication done). Its diagnoses are RA
# evidence "received by the payer and in the process of being evaluated": `pending` (Da Vinci RA 2.1
# CodeSystem evidence-status, input/fsh/CS-CodeSystems.fsh, read 2026-12-03); they count from all
# sources but not as claims until adjudicated.
PENDING_OUTCOMES = ("queued", "partial")
# An age/sex edit that applies to the member `m` (hccinfhir model_edits.py).
EDIT_APPLIES = ("(e.edit_type = 'sex' AND e.sex = m.sex) OR (e.edit_type IN ('age', 'mce_age') AND "
                "((e.age_max IS NOT NULL AND m.age <= e.age_max) OR (e.age_min IS NOT NULL AND m.age >= e.age_min)))")
# hccinfhir constants.py (from the ResDAC dual status code table, domain.md §2.1): full and partial duals.
FULL_DUAL = ("02", "04", "08")
PARTIAL_DUAL = ("01", "03", "05", "06")
ANY_DUAL = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10")  # hccinfhir MCAID flag
NE_DUAL = ("01", "02", "03", "04", "05", "06", "08")  # hccinfhir new-enrollee MCAID flag
# CMS-HCC age/sex cells (hccinfhir model_demographics.py): (upper age bound inclusive, suffix).
CELLS = ((34, "0_34"), (44, "35_44"), (54, "45_54"), (59, "55_59"), (64, "60_64"), (69, "65_69"), (74, "70_74"),
         (79, "75_79"), (84, "80_84"), (89, "85_89"), (94, "90_94"))
NE_CELLS = ((34, "0_34"), (44, "35_44"), (54, "45_54"), (59, "55_59"), (63, "60_64"), (65, "65"), (66, "66"),
            (67, "67"), (68, "68"), (69, "69"), (74, "70_74"), (79, "75_79"), (84, "80_84"), (89, "85_89"),
            (94, "90_94"))


@dataclass(frozen=True)
class CalendarWindow(EvaluationWindow):
    """A window of whole calendar years ending 31 December of `as_of.year`, for the evidence query."""

    first_year: int = 0

    @property
    def lookback_start(self) -> date:
        return date(self.first_year, 1, 1)


def diagnosis_year(payment_year: int) -> int:
    return payment_year - 1


def payment_year_for(period_end: date) -> int:
    """The payment year a clinical evaluation period feeds: the one after the year it ends in."""
    return period_end.year + 1


def _day_us(day: date) -> int:
    return date_range(day.isoformat())[0]


def _age_on(dialect: str, birth_us: Any, day: date) -> Any:
    """Whole years from a birth instant (epoch microseconds) to `day`; the day's values are bound."""
    if dialect == "postgresql":
        born = func.timezone("UTC", func.to_timestamp(birth_us // 1_000_000))
        born_year, born_day = cast(extract("year", born), Integer), func.to_char(born, "MM-DD")
    else:
        born = func.datetime(birth_us // 1_000_000, "unixepoch")
        born_year, born_day = cast(func.strftime("%Y", born), Integer), func.strftime("%m-%d", born)
    return literal(day.year) - born_year - case((born_day > day.strftime("%m-%d"), 1), else_=0)


def _band(age: Any, cells: tuple[tuple[int, str], ...], *before: tuple[Any, str]) -> Any:
    return case(*before, *((age <= upper, suffix) for upper, suffix in cells), else_="95_gt")


class RiskEngine:
    """Evaluates risk scores into the `risk_*` tables; `AlignmentEngine` supplies the index keys, the
    mappings (lines of business, dual status codes) and the evaluation lock."""

    def __init__(self, alignment: AlignmentEngine, model: RiskModel, codes_key: int):
        self.alignment = alignment
        self.model = model
        self.codes_key = codes_key
        self.keys: IndexKeys = alignment.keys
        self._listed = Members.listed(alignment.db.dialect.name)
        self._built: dict[tuple[str, int, Members, MemberTables, date], list[Any]] = {}
        self._built_lock = threading.Lock()  # requests score in worker threads

    @property
    def db(self) -> Engine:
        return self.alignment.db

    @property
    def mappings(self) -> Mappings:
        return self.alignment.mappings

    def current_payment_year(self) -> int:
        return payment_year_for(self.alignment.window().as_of)

    def payment_year(self, year: int) -> PaymentYear | None:
        return self.model.year(year)

    # -- entry points ------------------------------------------------------------------------------

    def evaluate(self, payment_year: int, patient_ids: list[str] | None = None) -> int:
        """Score every member (None) or the listed ones for a configured payment year; returns how many
        members were scored (Medicare members with a birth date and a sex of male or female)."""
        py = self.model.years[payment_year]
        members = EVERYONE if patient_ids is None else self._listed
        batches = [None] if patient_ids is None else list(chunks(sorted(set(patient_ids)), 5000))
        scored = 0
        for batch in batches:
            params: dict[str, Any] = {RUN: time_ns() // 1000, "year": payment_year}
            if batch is not None:
                params[MEMBER_IDS] = batch
            with self.db.begin() as conn:
                AlignmentEngine.lock(conn)
                self._postgres_plan(conn, members)
                for statement in self._statements(conn.dialect.name, py, members, STORED):
                    conn.execute(statement, params)
                m = STORED.member.c
                scored += conn.execute(select(func.count()).select_from(STORED.member).where(
                    m.payment_year == payment_year, m.run == params[RUN])).scalar_one()
        return scored

    @contextmanager
    def scored_apart(self, payment_year: int, patient_ids: list[str]) -> Iterator[tuple[Connection, MemberTables]]:
        """A connection on which the listed members are scored "as of now" into its own temporary copies of
        the member tables (`APART`), and those copies, whose rows vanish at the end: the same statements, but
        no shared table is written, so on SQLite such a read takes no write lock and runs beside writers
        (WAL). On PostgreSQL it still waits for evaluations holding the lock, as a consistent read must."""
        with self.db.connect() as conn:
            _make_apart(conn)
            with conn.begin() as scoring:
                postgres = conn.dialect.name == "postgresql"
                if postgres:
                    AlignmentEngine.shared_lock(conn)
                # Nothing the transaction writes outlives it: its commit need not wait for the WAL flush.
                self._postgres_plan(conn, self._listed, synchronous_commit="off")
                params = {RUN: time_ns() // 1000, "year": payment_year, MEMBER_IDS: sorted(set(patient_ids))}
                member, *rest = self._statements(conn.dialect.name, self.model.years[payment_year], self._listed, APART)
                if conn.execute(member, params).first():  # else no one is scored (not Medicare, no birth date or sex)
                    for statement in rest:
                        conn.execute(statement, params)
                try:
                    yield conn, APART
                finally:
                    # Empty again for the connection's next user. PostgreSQL: the commit truncates the copies
                    # in place (ON COMMIT DELETE ROWS), where a rollback would leave their rows as dead tuples
                    # that nothing vacuums (no autovacuum of temporary tables). SQLite: the rollback removes them.
                    scoring.commit() if postgres else scoring.rollback()

    @staticmethod
    def _postgres_plan(conn: Connection, members: Members, **settings: str) -> None:
        """As the alignment engine: hash joins for everyone, custom plans for a member list. No JIT: the
        cross joins (a member × the model versions × the bases) can only nest-loop, so with nested loops
        disabled their cost estimate passes every JIT threshold, and compiling each statement with inlining and
        optimisation took 3-4 s of the 4 s a statement took at 20,000 members (EXPLAIN ANALYZE, 2026-12-03)."""
        if members is EVERYONE:
            plan_locally(conn, jit="off", enable_nestloop="off", **settings)
        else:
            plan_locally(conn, jit="off", plan_cache_mode="force_custom_plan", **settings)

    # -- statements ----------------------------------------------------------------------------------

    def _statements(self, dialect: str, py: PaymentYear, members: Members, tables: MemberTables) -> list[Any]:
        """Built once per dialect, payment year, member scope, tables and day (the demographic cell's date may
        be today): building them costs more than running them for one member, which `$alignment` does."""
        key = (dialect, py.year, members, tables, today_utc())
        with self._built_lock:
            if key not in self._built:
                if any(day != key[3] for *_, day in self._built):
                    self._built.clear()  # a new day: yesterday's statements are never used again
                self._built[key] = self._build(dialect, py, members, tables)
            return self._built[key]

    def _build(self, dialect: str, py: PaymentYear, members: Members, tables: MemberTables) -> list[Any]:
        """The year's statements; the text ones take the year (`year`) and the run (`RUN`) as bound values.
        The members' old rows are deleted first. The `APART` copies are empty, so there the demographic
        statement comes first instead (`risk_dx` does not read it), for `scored_apart` to stop when it
        scores no one."""
        year = py.year
        dx, member = self._dx_statement(year, members, tables), self._member_statement(dialect, year, members, tables)
        scores = [*self._cc_statements(tables), self._score_statement(tables)]
        if tables is APART:
            return [member.returning(tables.member.c.patient_id), dx, *scores]
        deletes = [delete(t).where(t.c.payment_year == year, *members.where(t.c.patient_id)) for t in tables]
        return [*deletes, dx, member, *scores]

    def _dx_statement(self, year: int, members: Members, tables: MemberTables) -> Any:
        window = CalendarWindow(as_of=date(diagnosis_year(year), 12, 31), lookback_months=24,
                                first_year=diagnosis_year(year) - 1)
        found = dict(zip(EVIDENCE_COLUMNS, evidence_select(window, self.codes_key, members).subquery("found").c))
        dx_start = _day_us(date(diagnosis_year(year), 1, 1))
        outcome = (select(idx_token.c.rid).where(
            idx_token.c.rtype == "ExplanationOfBenefit", idx_token.c.rid == found["resource_id"],
            idx_token.c.h_param == searchparams.param_hash("ExplanationOfBenefit", "outcome"),
            idx_token.c.code.in_(PENDING_OUTCOMES)).exists())
        query = select(
            found["patient_id"], literal(year), found["category"], found["resource_type"], found["resource_id"],
            found["code"], found["date_lo"], found["source_kind"], flag(found["date_lo"] < dx_start),
            flag((found["resource_type"] == "ExplanationOfBenefit") & outcome),
        ).where(found["source_kind"].in_(("claims", "clinical")))
        columns = ["patient_id", "payment_year", "icd", "resource_type", "resource_id", "code", "date_lo",
                   "source_kind", "prior", "pending"]
        return insert(tables.dx).from_select(columns, query)

    def _member_statement(self, dialect: str, year: int, members: Members, tables: MemberTables) -> Any:
        """Medicare members and their demographic cell, as of the end of the diagnosis year (or today,
        if earlier): coverage, with OREC and the institutional flag, and the Patient's birth date and gender,
        all from the facts kept at write time (`alignment_coverages`, `alignment_members`). Every value is
        bound; only the dialect's date functions differ."""
        end = date(diagnosis_year(year), 12, 31)
        as_of = min(end, today_utc())
        window = EvaluationWindow(as_of, 0)
        coverage = dict(zip(COVERAGE_COLUMNS, coverage_select(self.mappings, self.keys, window, members)
                            .subquery("coverage").c))
        medicare = (select(coverage["patient_id"].label("patient_id"), coverage["coverage_id"].label("rid"),
                           coverage["dual_code"].label("dual_code"), coverage["period_lo"].label("period_lo"))
                    .where(coverage["line_of_business"].in_(lobs_with("medicare"))).cte("medicare"))
        entitlement = alignment_coverages  # OREC and the institutional flag, kept at write time
        enrolled = (
            select(medicare.c.patient_id, func.max(medicare.c.dual_code).label("dual_code"),
                   func.min(func.coalesce(medicare.c.period_lo, 0)).label("started"),
                   func.max(entitlement.c.orec).label("orec"),
                   func.max(entitlement.c.institutional).label("institutional"))
            .select_from(medicare.outerjoin(entitlement, entitlement.c.rid == medicare.c.rid))
            .group_by(medicare.c.patient_id)
            .cte("enrolled")
        )
        # Birth date and gender from the Patient facts kept at write time (`alignment_members`), one narrow row
        # per member. Materialised (PostgreSQL 12+, SQLite 3.35+): inlined, each of the many uses of `age` below
        # re-ran the birth-date lookup per member (EXPLAIN ANALYZE 2026-12-03).
        patient = alignment_members.c
        born = (select(enrolled, patient.birth_lo.label("birth_us"), patient.gender)
                .select_from(enrolled.join(alignment_members, patient.patient_id == enrolled.c.patient_id))
                .cte("born").prefix_with("MATERIALIZED"))
        aged = select(born, _age_on(dialect, born.c.birth_us, date(year, 2, 1)).label("age")).where(
            born.c.birth_us.is_not(None), born.c.gender.in_(("male", "female"))).cte("aged").prefix_with("MATERIALIZED")
        # OREC as entitled (Coverage extension), else as the CCW derives it without an entitlement record.
        orec = select(aged, func.coalesce(aged.c.orec, case((aged.c.age < 65, "1"), else_="0")).label("reason"),
                      (aged.c.started > _day_us(date(diagnosis_year(year), 1, 1))).label("new")).subquery("m")
        age, new_enrollee = orec.c.age, orec.c.new
        disabled = (age < 65) & (orec.c.reason != "0")
        orig_disabled = (orec.c.reason == "1") & (age >= 65)
        esrd = orec.c.reason.in_(ESRD_OREC)
        institutional = orec.c.institutional == "true"
        sex = case((orec.c.gender == "male", "m"), else_="f")
        dual = case((orec.c.dual_code.in_(FULL_DUAL), "cf"), (orec.c.dual_code.in_(PARTIAL_DUAL), "cp"), else_="cn")
        segment = case((new_enrollee, "ne_"), (institutional, "ins_"),
                       else_=dual + case((age >= 65, "a_"), else_="d_"))
        ne_cell = ("ne_" + case((orec.c.dual_code.in_(NE_DUAL), "mcaid_"), else_="nmcaid_")
                   + case((orig_disabled, "origdis_ne"), else_="norigdis_ne") + sex
                   + _band(age, NE_CELLS, (age == 64, case((orec.c.reason == "0", "65"), else_="60_64"))))
        cell = case((new_enrollee & ~esrd, ne_cell), else_=segment + sex + _band(age, CELLS))
        query = select(
            orec.c.patient_id, literal(year), bindparam(RUN, type_=BigInteger), age,
            case((orec.c.gender == "male", "1"), else_="2"), orec.c.dual_code, segment, cell, flag(disabled),
            flag(new_enrollee), flag(orec.c.dual_code.in_(ANY_DUAL)), orec.c.reason, flag(orig_disabled),
            flag(institutional & ~new_enrollee),
        )
        columns = ["patient_id", "payment_year", "run", "age", "sex", "dual_code", "segment", "cell", "disabled",
                   "new_enrollee", "medicaid", "orec", "orig_disabled", "institutional"]
        return insert(tables.member).from_select(columns, query)

    def _cc_statements(self, tables: MemberTables) -> list[Any]:
        """CCs per version and basis: mapped, edited, companion rule, hierarchies. The model tables hold
        only the payment year's configured versions, so no version list is needed."""
        mapped = (
            "INSERT INTO {cc} (patient_id, payment_year, version, basis, cc, superseded) "
            "SELECT DISTINCT d.patient_id, :year, x.version, b.basis, "
            "CASE WHEN e.action = 'override' THEN e.cc_override ELSE x.cc END, (1 = 0) "
            "FROM {dx} d "
            "JOIN {member} m ON m.patient_id = d.patient_id AND m.payment_year = :year AND m.run = :risk_run "
            "JOIN (SELECT 'claims' AS basis, 0 AS want_prior, 1 AS claims_only UNION ALL SELECT 'all', 0, 0 "
            "UNION ALL SELECT 'prior', 1, 1) b ON (CASE WHEN d.prior THEN 1 ELSE 0 END) = b.want_prior "
            "AND (b.claims_only = 0 OR (d.source_kind = 'claims' AND NOT d.pending)) "
            "JOIN risk_model_dx x ON x.payment_year = :year AND x.icd = d.icd "
            "LEFT JOIN risk_model_edit e ON e.payment_year = :year AND e.version = x.version AND e.icd = d.icd "
            "AND ({edit_applies}) "
            "WHERE d.payment_year = :year AND (e.action IS NULL OR e.action <> 'invalid')"
        )
        companion = (
            "DELETE FROM {cc} WHERE payment_year = :year AND EXISTS (SELECT 1 FROM risk_model_requires r "
            "WHERE r.payment_year = :year AND r.version = {cc}.version AND r.cc = {cc}.cc) "
            "AND NOT EXISTS (SELECT 1 FROM risk_model_requires r JOIN {cc} o ON o.cc = r.requires "
            "WHERE r.payment_year = :year AND r.version = {cc}.version AND r.cc = {cc}.cc "
            "AND o.patient_id = {cc}.patient_id AND o.payment_year = {cc}.payment_year "
            "AND o.version = {cc}.version AND o.basis = {cc}.basis) "
            "AND patient_id IN (SELECT m.patient_id FROM {member} m WHERE m.payment_year = :year AND m.run = :risk_run)"
        )
        hierarchy = (
            "UPDATE {cc} SET superseded = (1 = 1) WHERE payment_year = :year "
            "AND patient_id IN (SELECT m.patient_id FROM {member} m WHERE m.payment_year = :year AND m.run = :risk_run) "
            "AND EXISTS (SELECT 1 FROM risk_model_hierarchy h JOIN {cc} o ON o.cc = h.parent "
            "WHERE h.payment_year = :year AND h.version = {cc}.version AND h.child = {cc}.cc "
            "AND o.patient_id = {cc}.patient_id AND o.payment_year = {cc}.payment_year "
            "AND o.version = {cc}.version AND o.basis = {cc}.basis)"
        )
        return [_text(sql, tables) for sql in (mapped, companion, hierarchy)]

    @staticmethod
    def _score_statement(tables: MemberTables) -> Any:
        """Σ coefficients of the member's terms: the demographic cell and demographic interactions
        (originally disabled; institutional: ORIGDS, LTIMCAID), each unsuperseded HCC, the disease
        interactions that hold, the HCC count. A name the model lacks adds nothing."""
        return _text(
            "INSERT INTO {score} (patient_id, payment_year, version, basis, score, demographic) "
            "WITH mv AS (SELECT m.patient_id, m.sex, m.segment, m.cell, m.disabled, m.medicaid, m.orig_disabled, "
            "m.institutional, v.version, b.basis FROM {member} m "
            "CROSS JOIN (SELECT DISTINCT version FROM risk_model_coefficient WHERE payment_year = :year) v "
            "CROSS JOIN (SELECT 'claims' AS basis UNION ALL SELECT 'all' UNION ALL SELECT 'prior') b "
            "WHERE m.payment_year = :year AND m.run = :risk_run), "
            "cc AS (SELECT c.patient_id, c.version, c.basis, c.cc FROM {cc} c "
            "JOIN {member} m ON m.patient_id = c.patient_id AND m.payment_year = :year AND m.run = :risk_run "
            "WHERE c.payment_year = :year AND NOT c.superseded), "
            "grp AS (SELECT DISTINCT cc.patient_id, cc.version, cc.basis, g.grp FROM cc "
            "JOIN risk_model_group g ON g.payment_year = :year AND g.version = cc.version AND g.cc = cc.cc), "
            "cnt AS (SELECT patient_id, version, basis, COUNT(*) AS n FROM cc GROUP BY patient_id, version, basis), "
            "terms AS ("
            "SELECT mv.patient_id, mv.version, mv.basis, mv.cell AS name, 1 AS demo FROM mv "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || CASE WHEN mv.sex = '1' "
            "THEN 'originallydisabled_male' ELSE 'originallydisabled_female' END, 1 FROM mv WHERE mv.orig_disabled "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || 'origds', 1 FROM mv "
            "WHERE mv.orig_disabled AND mv.institutional "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || 'ltimcaid', 1 FROM mv "
            "WHERE mv.institutional AND mv.medicaid "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || 'hcc' || cc.cc, 0 FROM mv "
            "JOIN cc ON cc.patient_id = mv.patient_id AND cc.version = mv.version AND cc.basis = mv.basis "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || i.name, 0 FROM mv "
            "JOIN risk_model_interaction i ON i.payment_year = :year AND i.version = mv.version "
            "JOIN grp a ON a.patient_id = mv.patient_id AND a.version = mv.version AND a.basis = mv.basis "
            "AND a.grp = i.group_a "
            "LEFT JOIN grp b ON b.patient_id = mv.patient_id AND b.version = mv.version AND b.basis = mv.basis "
            "AND b.grp = i.group_b "
            "WHERE (i.group_b IS NULL OR b.grp IS NOT NULL) AND (NOT i.disabled OR mv.disabled) "
            "UNION ALL SELECT mv.patient_id, mv.version, mv.basis, mv.segment || "
            "CASE WHEN cnt.n >= 10 THEN 'd10p' ELSE 'd' || CAST(cnt.n AS VARCHAR(4)) END, 0 FROM mv "
            "JOIN cnt ON cnt.patient_id = mv.patient_id AND cnt.version = mv.version AND cnt.basis = mv.basis) "
            "SELECT t.patient_id, :year, t.version, t.basis, COALESCE(SUM(c.value), 0), "
            "COALESCE(SUM(CASE WHEN t.demo = 1 THEN c.value END), 0) FROM terms t "
            "LEFT JOIN risk_model_coefficient c ON c.payment_year = :year AND c.version = t.version "
            "AND c.name = t.name GROUP BY t.patient_id, t.version, t.basis",
            tables,
        )


def _text(sql: str, tables: MemberTables) -> Any:
    """A text statement naming the member tables as `{dx}`, `{member}`, `{cc}` and `{score}` (and the age/sex
    edit condition as `{edit_applies}`), on `tables`."""
    return text(sql.format(edit_applies=EDIT_APPLIES, **{name: t.name for name, t in tables._asdict().items()}))


def _make_apart(conn: Connection) -> None:
    """The connection's `APART` copies of the member tables, made once per database connection (its pool
    record's `info` remembers them): made per read, their catalog rows were written and rolled back at each
    `$alignment` (PostgreSQL), and the schema change made SQLite prepare every statement of the connection
    again (3.5 of the 4.4 ms the demographic statement took for one member)."""
    if conn.info.get(_APART_MADE):
        return
    on_commit = " ON COMMIT DELETE ROWS" if conn.dialect.name == "postgresql" else ""
    with conn.begin():
        for table, copy in zip(STORED, APART):
            conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {copy.name}{on_commit} "
                              f"AS SELECT * FROM {table.name} WHERE 1 = 0"))
    conn.info[_APART_MADE] = True


_APART_MADE = "planfit_risk_apart"
