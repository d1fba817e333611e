"""Member facts (SPEC §4.2, graded by §4.3) as set-based SQL over the facts kept at write time: coverage
(`alignment_coverages` and its codes, see `coverage_facts.py`) and diagnoses (`alignment_diagnoses`, see
`diagnoses.py`).

Three INSERT … SELECT statements, each for a set of members (every member, or the ids touched by a
write), fill the first stages of a finding:

* `finding_coverage`: the member's active coverages — `current` when the period holds the evaluation
  date, else ended in the last months (read for the D-SNP deeming period) — with the product they name
  (plan class alias, else SOPT alias), their line of business (the product's, else the SOPT table's), the
  dual status code and level, the period, the NY HARP status code and the Medicaid aid category;
* `finding_evidence`: every diagnosis in a value set: Conditions (clinical, claims or patient-reported
  evidence by the source-kind tag the server stamped from the writer), and Claim / ExplanationOfBenefit
  diagnoses, coded or by `diagnosisReference` (always claims evidence), dated inside the lookback window
  (or a lifelong problem-list entry from before it), with refuted / entered-in-error Conditions and those
  inactive since before the window left out; each graded `qualifying` or `suspect` with its lifelong flag
  and last-affirmed date;
* `finding_categories`: per member and value set, which source kinds gave qualifying evidence, and
  whether it is a non-claims diagnosis. Suspect evidence (patient-reported too) is recorded but never
  makes a category (SPEC §4.3, §6).

Codes are matched through `alignment_codes` (see `codes.py`); mapping tables (plan aliases, SOPT
codes, dual status codes) become CASE expressions generated from `mappings/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql

from server.alignment.codes import LIFELONG
from server.alignment.index_keys import CLAIM_TYPES, IndexKeys
from server.alignment.mappings import LOB_PROGRAMS, Mappings
from server.alignment.window import EvaluationWindow
from server.store.alignment_schema import (
    alignment_codes,
    alignment_coverage_codes,
    alignment_coverages,
    alignment_diagnoses,
    alignment_members,
    finding_evidence,
)

MEMBER_IDS = "member_ids"
QUALIFYING, SUSPECT = "qualifying", "suspect"  # evidence grades (SPEC §4.3)


@dataclass(frozen=True)
class Members:
    """Which members a statement covers: every member, or the Patient ids bound at execution as
    `MEMBER_IDS`. Statements depend only on which of the two, so they are built once and reused.

    On PostgreSQL the ids travel as one array (`= ANY(:ids)`): the statement text then never changes,
    so the driver prepares it and PostgreSQL stops re-planning these large statements, which otherwise
    costs more than running them for a bundle's members."""

    everyone: bool
    as_array: bool = False

    @classmethod
    def listed(cls, dialect: str) -> Members:
        return cls(everyone=False, as_array=dialect == "postgresql")

    def where(self, column: Any) -> list[ColumnElement[bool]]:
        if self.everyone:
            return []
        if self.as_array:
            return [column == any_(bindparam(MEMBER_IDS, type_=postgresql.ARRAY(String)))]
        return [column.in_(bindparam(MEMBER_IDS, expanding=True))]

    def among(self, rid: Any, subjects: Any) -> list[ColumnElement[bool]]:
        """Restrict index rows to the subjects' resources when only some members are evaluated. For every
        member there is nothing to restrict: scanning the parameter's rows and joining afterwards is the
        cheaper plan, and planners cannot estimate a semi-join against a CTE well enough to find it."""
        return [] if self.everyone else [rid.in_(select(subjects.c.rid))]

    @property
    def patients(self) -> Members:
        """The scope for columns holding Patient ids (not finding keys)."""
        return self


EVERYONE = Members(everyone=True)


@dataclass(frozen=True)
class MemberDays(Members):
    """The (member, date) pairs of a `RowWindow` evaluation: the finding tables' rows are keyed by pair
    (`member_key`), a member's own resources are read as for every member and paired by the window."""

    keys: Any = None  # the pairs' key column

    def where(self, column: Any) -> list[ColumnElement[bool]]:
        return [column.in_(select(self.keys))]

    @property
    def patients(self) -> Members:
        return EVERYONE


def flag(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """A boolean column value from a condition, on both dialects (SQLite has no boolean type)."""
    return case((condition, true()), else_=false())


def member_exists(patient_id: Any) -> ColumnElement[bool]:
    """Facts only for stored, non-deleted Patients (references may dangle): those with a row in the narrow
    `alignment_members` (`patient_facts.py`), not the wide `resources` table."""
    return exists().where(alignment_members.c.patient_id == patient_id)


def pivot(table: Any, name: str, rtype: str, subjects: Any, members: Members,
           columns: dict[str, tuple[int, Any]], per_subject: bool = False, sparse: bool = False) -> CTE:
    """One row per resource from its index rows of a few parameters: `columns` maps each output column
    to (h_param, an aggregate over that parameter's rows). One scan and a GROUP BY, instead of one join
    per parameter: the plan stays a hash aggregate however many rows there are. With `per_subject`, one
    row per resource and subject row (`patient_id`): for aggregates that read the subject's bounds.
    `sparse`: the subjects are a minority of the type's resources, so only their rows are aggregated, for
    every member too."""
    params = sorted({h for h, _ in columns.values()})
    keys = [table.c.rid, subjects.c.patient_id] if per_subject else [table.c.rid]
    query = select(*keys, *(aggregate.label(label) for label, (_h, aggregate) in columns.items()))
    if per_subject:
        query = query.select_from(table.join(subjects, subjects.c.rid == table.c.rid))
    return (
        query.where(table.c.rtype == rtype, table.c.h_param.in_(params),
                    *([table.c.rid.in_(select(subjects.c.rid))] if sparse else members.among(table.c.rid, subjects)))
        .group_by(*keys)
        .cte(name)
    )


def param_value(h_param: int, condition: ColumnElement[bool] | None, value: Any, table: Any) -> ColumnElement[Any]:
    """`value` for the rows of one parameter (and condition), NULL for the others."""
    test = table.c.h_param == h_param if condition is None else and_(table.c.h_param == h_param, condition)
    return case((test, value), else_=None)


# -- coverage ------------------------------------------------------------------------------------------


def _plan_priority(mappings: Mappings, code: Any) -> ColumnElement[Any]:
    """Priority of the product a plan class value names (code or alias, trimmed, any case)."""
    value = func.lower(func.trim(code))
    return case(
        *((value.in_([a.strip().lower() for a in (p.code, *p.plan_aliases)]), p.priority) for p in mappings.products),
        else_=None,
    )


def _sopt_priority(mappings: Mappings, code: Any) -> ColumnElement[Any]:
    """Priority of the product a SOPT code names (exact match on the products' SOPT aliases)."""
    whens = [(code.in_(p.sopt_aliases), p.priority) for p in mappings.products if p.sopt_aliases]
    return case(*whens, else_=None) if whens else literal(None)


def _sopt_lob(mappings: Mappings, code: Any) -> ColumnElement[Any]:
    """Line of business of a SOPT code from the `sopt.codes` table; NULL for codes it does not list."""
    by_lob: dict[str, list[str]] = {}
    for row in mappings.sopt.values():
        by_lob.setdefault(row.line_of_business, []).append(row.code)
    return case(*((code.in_(sorted(codes)), lob) for lob, codes in sorted(by_lob.items())), else_=None)


def product_for_priority(mappings: Mappings, priority: Any) -> ColumnElement[Any]:
    return case(*((priority == p.priority, p.code) for p in mappings.products), else_=None)


def priority_of(mappings: Mappings, product: Any) -> ColumnElement[Any]:
    return case(*((product == p.code, p.priority) for p in mappings.products), else_=None)


def dual_level(mappings: Mappings, code: Any) -> ColumnElement[Any]:
    """'full' / 'partial' for a CMS dual status code; NULL for codes without a level."""
    levels: dict[str, list[str]] = {}
    for row in mappings.dual_status_codes.values():
        if row.level != "none":
            levels.setdefault(row.level, []).append(row.code)
    return case(*((code.in_(sorted(codes)), level) for level, codes in sorted(levels.items())), else_=None)


COVERAGE_COLUMNS = ("patient_id", "coverage_id", "product", "line_of_business", "dual_code", "dual_level",
                    "current", "period_lo", "period_hi", "harp_status", "aid_category")
PLAN, TYPE = "plan", "type"  # `alignment_coverage_codes.param`: a plan class value, a type coding


def coverage_select(mappings: Mappings, _keys: IndexKeys, window: EvaluationWindow, members: Members) -> Select:
    """Rows of `finding_coverage` (COVERAGE_COLUMNS), one per active coverage: `current` when its period
    holds the evaluation date, else a record that ended in the last `dual_history_months` (read for
    month-by-month dual status and the deadline of the deeming period, SPEC §4.3). Several plan classes or
    SOPT codings on one coverage resolve to the highest-priority product they name.

    Read from the coverage facts kept at write time (`alignment_coverages` and its codes, see
    `coverage_facts.py`), which hold the raw codes: the mappings give them their meaning here. `_keys` is
    unused since (the index tables are not read); the risk engine still passes it."""
    a = alignment_coverages.alias("coverages")
    own = [member_exists(a.c.patient_id), *members.patients.where(a.c.patient_id)]
    source, patient, window, own = own_rows(a, "coverages", [], own, window)
    k, listed = alignment_coverage_codes.c, alignment_coverages.alias("listed_coverages")
    sopt = and_(k.param == TYPE, k.system == mappings.sopt_system)
    codes = (
        select(k.rid,
               func.max(case((k.param == PLAN, _plan_priority(mappings, k.code)), else_=None)).label("plan_priority"),
               func.max(case((sopt, _sopt_priority(mappings, k.code)), else_=None)).label("sopt_priority"),
               func.max(case((sopt, _sopt_lob(mappings, k.code)), else_=None)).label("sopt_lob"))
        .where(*([] if members.everyone else [k.rid.in_(select(listed.c.rid).where(*members.patients.where(listed.c.patient_id)))]))
        .group_by(k.rid)
        .subquery("coverage_codes")
    )
    priority = func.coalesce(codes.c.plan_priority, codes.c.sopt_priority)
    product_lob = case(*((priority == p.priority, p.line_of_business) for p in mappings.products), else_=None)
    history_start = window.months_back_us(mappings.dual_history_months)
    no_period = a.c.period_lo.is_(None)
    return (
        select(
            patient,
            a.c.rid,
            product_for_priority(mappings, priority),
            func.coalesce(product_lob, codes.c.sopt_lob),
            a.c.dual_code,
            dual_level(mappings, a.c.dual_code),
            flag(or_(no_period, a.c.period_hi >= window.as_of_lo_us)),
            a.c.period_lo,
            a.c.period_hi,
            a.c.harp_status,
            a.c.aid_category,
        )
        .select_from(source.outerjoin(codes, codes.c.rid == a.c.rid))
        .where(*own, or_(no_period, and_(a.c.period_lo <= window.as_of_hi_us, a.c.period_hi >= history_start)))
    )


def lobs_with(program: str) -> list[str]:
    """Lines of business that give the member this program (`dual` gives Medicare and Medicaid)."""
    return sorted(lob for lob, programs in LOB_PROGRAMS.items() if program in programs)


# -- diagnosis evidence ------------------------------------------------------------------------------


def _in_window(date_lo: Any, window: EvaluationWindow) -> ColumnElement[bool]:
    return date_lo.between(window.start_us, window.as_of_hi_us)


def later_of(a: Any, b: Any) -> ColumnElement[Any]:
    """The later of two nullable values (SQL's two-argument max/greatest differ in how they treat NULL)."""
    return case((a.is_(None), b), (b.is_(None), a), (a >= b, a), else_=b)


def own_rows(table: Any, name: str, match: list[ColumnElement[bool]], own: list[ColumnElement[bool]],
              window: EvaluationWindow) -> tuple[Any, Any, EvaluationWindow, list]:
    """The members' rows of a table kept at write time (keyed `rid`, `patient_id`): (what to select from,
    the member column, the window bounds of the rows, the conditions left to apply). `match` selects the
    table's rows of one kind, `own` the members' among them. With a `RowWindow` once per (member, date)
    pair, keyed by the pair and carrying its bounds."""
    if not window.per_row:
        return table, table.c.patient_id, window, [*match, *own]
    rows = select(table.c.rid, table.c.patient_id).distinct().where(*match, *own)
    subjects = window.subjects(rows, table.c.patient_id).cte(f"{name}_pairs")
    joined = table.join(subjects, and_(*match, table.c.rid == subjects.c.rid))
    return joined, subjects.c.patient_id, window.on(subjects), []


def _diagnoses(name: str, rtype: str, window: EvaluationWindow, members: Members) -> tuple[Any, Any, Any, EvaluationWindow, list]:
    """The members' rows of `alignment_diagnoses` of one type: (the table alias, what to select from, the
    member column, the window bounds of the rows, the conditions)."""
    a = alignment_diagnoses.alias(name)
    own = [member_exists(a.c.patient_id), *members.patients.where(a.c.patient_id)]
    return a, *own_rows(a, name, [a.c.rtype == rtype], own, window)


def _valueset_codes(name: str, a: Any, codes_key: int) -> tuple[Any, ColumnElement[bool]]:
    c = alignment_codes.alias(f"{name}_codes")
    return c, and_(c.c.h_code == a.c.h_code, c.c.codes_key == codes_key, c.c.valueset != LIFELONG)


def _condition_evidence(window: EvaluationWindow, codes_key: int, members: Members) -> Select:
    """Conditions coded in a value set, dated (recordedDate, else onset) in the window, not withdrawn, and
    graded (SPEC §4.3): uncertain verification, an inactive/resolved status outside a lifelong code, or a
    patient's own report make *suspect* evidence. An active, confirmed lifelong problem-list entry counts
    even when recorded before the window; its last-affirmed date is the latest of recorded, onset, the
    `assertedDate` extension and the period of the Encounter it cites (kept in `alignment_diagnoses`)."""
    a, source, patient, window, own = _diagnoses("conditions", "Condition", window, members)
    c, in_valueset = _valueset_codes("condition", a, codes_key)
    life = alignment_codes.alias("condition_lifelong")
    date_lo = func.coalesce(a.c.recorded_lo, a.c.onset_lo)
    lifelong = life.c.h_code.is_not(None)
    inactive, uncertain = a.c.inactive == true(), a.c.uncertain == true()
    abated_before = and_(inactive, a.c.abated_hi.is_not(None), a.c.abated_hi < window.start_us)
    persists = and_(lifelong, not_(inactive), not_(uncertain), a.c.problem_list == true(), date_lo < window.start_us)
    suspect = or_(uncertain, a.c.reported == true(), and_(inactive, not_(lifelong)))
    return (
        select(
            patient,
            c.c.valueset.label("category"),
            literal("Condition").label("resource_type"),
            a.c.rid.label("resource_id"),
            a.c.system,
            a.c.code,
            date_lo.label("date_lo"),
            a.c.source_kind,
            case((suspect, literal(SUSPECT)), else_=literal(QUALIFYING)).label("grade"),
            flag(lifelong).label("lifelong"),
            a.c.affirmed_lo,
        )
        .select_from(source.join(c, in_valueset)
                     .outerjoin(life, and_(life.c.h_code == a.c.h_code, life.c.codes_key == codes_key,
                                           life.c.valueset == LIFELONG)))
        .where(*own, or_(_in_window(date_lo, window), persists), a.c.withdrawn == false(), not_(abated_before))
    )


def _claim_evidence(rtype: str, window: EvaluationWindow, codes_key: int, members: Members) -> Select:
    """Active Claim / ExplanationOfBenefit diagnoses in a value set, dated in the window.

    Coded diagnoses match the claim's own `diagnosis` codings; diagnoses by `diagnosisReference` match
    the cited Condition's codes but keep the claim's date and status: the claim is the evidence. A claim
    is dated by its earliest service date in the window (any service date outside it does not count),
    else by `created`: a row per service date here, the earliest kept by `evidence_select`'s grouping,
    and no last-affirmed date of its own (it is that date)."""
    a, source, patient, window, own = _diagnoses(f"{rtype.lower()}s", rtype, window, members)
    c, in_valueset = _valueset_codes(rtype.lower(), a, codes_key)
    date_lo = func.coalesce(a.c.service_lo, a.c.created_lo)  # a claim with service dates has no null one
    return (
        select(
            patient,
            c.c.valueset.label("category"),
            literal(rtype).label("resource_type"),
            a.c.rid.label("resource_id"),
            a.c.system,
            a.c.code,
            date_lo.label("date_lo"),
            a.c.source_kind,
            literal(QUALIFYING).label("grade"),
            false().label("lifelong"),
            null().label("affirmed_lo"),
        )
        .select_from(source.join(c, in_valueset))
        .where(*own, a.c.active == true(), _in_window(date_lo, window))
    )


EVIDENCE_COLUMNS = ("patient_id", "category", "resource_type", "resource_id", "system", "code", "date_lo",
                    "source_kind", "grade", "lifelong", "affirmed_lo")


def evidence_select(window: EvaluationWindow, codes_key: int, members: Members) -> Select:
    """Rows of `finding_evidence`, one per (member, value set, resource, coding, source kind, grade), read
    from `alignment_diagnoses` (kept at write time, `diagnoses.py`): the earliest date of the coding in the
    window, and its latest last-affirmed date (a claim's: its date)."""
    parts = [_condition_evidence(window, codes_key, members),
             *(_claim_evidence(rtype, window, codes_key, members) for rtype in CLAIM_TYPES)]
    found = union_all(*parts).subquery("evidence")
    aggregated = {"date_lo": func.min(found.c.date_lo),
                  "affirmed_lo": func.coalesce(func.max(found.c.affirmed_lo), func.min(found.c.date_lo))}
    group = [found.c[name] for name in EVIDENCE_COLUMNS if name not in aggregated]
    return select(*(aggregated.get(name, found.c[name]) for name in EVIDENCE_COLUMNS)).group_by(*group)


# -- categories ---------------------------------------------------------------------------------------


def _has(kind: str) -> ColumnElement[Any]:
    return func.max(case((finding_evidence.c.source_kind == kind, 1), else_=0))


CATEGORY_COLUMNS = ("patient_id", "category", "clinical", "claims", "non_claims")


def categories_select(non_claims_valuesets: Iterable[str], members: Members) -> Select:
    """Rows of `finding_categories` (CATEGORY_COLUMNS) from the members' qualifying evidence: suspect
    evidence (patient-reported included) is shown on the finding but never makes a category."""
    e = finding_evidence.c
    clinical, claims = _has("clinical"), _has("claims")
    return (
        select(
            e.patient_id,
            e.category,
            flag(clinical == 1),
            flag(claims == 1),
            flag(and_(clinical == 1, claims == 0, e.category.in_(list(non_claims_valuesets)))),
        )
        .where(e.grade == QUALIFYING, *members.where(e.patient_id))
        .group_by(e.patient_id, e.category)
    )

