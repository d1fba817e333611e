"""Member facts (SPEC §4.2, graded by §4.3) as set-based SQL over the search-index tables.

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
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql

from server.alignment.codes import LIFELONG
from server.alignment.index_keys import (
    INACTIVE_CLINICAL,
    PROBLEM_LIST,
    SUSPECT_VERIFICATION,
    WITHDRAWN_VERIFICATION,
    ClaimKeys,
    IndexKeys,
)
from server.alignment.mappings import LOB_PROGRAMS, Mappings
from server.alignment.window import EvaluationWindow
from server.fhir.context import PATIENT_REPORTED
from server.fhir.versions import SOURCE_KIND_SYSTEM
from server.store.alignment_schema import alignment_codes, finding_evidence
from server.store.schema import idx_date, idx_reference, idx_token, resources

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

    def not_leading(self, column: Any) -> Any:
        """`column` for a listed evaluation on SQLite, as an expression no index can be searched by.

        SQLite plans without table statistics and prefers an index led by an equality (the rtype of
        ix_reference_res, the h_param of ix_token_param_code): a scan of every row of the type or the
        parameter, per evaluation of a few members. With the term disqualified it reads the members'
        rows by their ids instead ("disqualifying WHERE clause terms" in the SQLite query optimizer
        overview, sqlite.org/optoverview.html, read 2026-12-03)."""
        if self.everyone or self.as_array:
            return column
        return column.concat("") if isinstance(column.type, String) else column + 0

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


def _member_exists(patient_id: Any) -> ColumnElement[bool]:
    """Facts only for stored, non-deleted Patients (references may dangle)."""
    p = resources.c
    return exists().where(p.rtype == "Patient", p.rid == patient_id, p.deleted.is_(False))


def _subjects(name: str, rtype: str, h_param: int, members: Members, window: EvaluationWindow) -> CTE:
    """(rid, patient_id) of the resources of one type whose reference parameter names a member (with a
    `RowWindow`, once per pair of the member, keyed by the pair and carrying its bounds).

    Every fact query starts here, so a listed evaluation touches only its members' resources."""
    x = idx_reference.c
    return window.subjects(  # the member ids' IN list read through ix_reference_target
        select(x.rid, x.target_id.label("patient_id"))
        .where(members.not_leading(x.rtype) == rtype, x.h_param == h_param, x.target_type == "Patient", _member_exists(x.target_id),
               *members.patients.where(x.target_id)), x.target_id
    ).cte(name)


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


def _when(h_param: int, condition: ColumnElement[bool] | None, value: Any, table: Any) -> ColumnElement[Any]:
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


def coverage_select(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Select:
    """Rows of `finding_coverage` (COVERAGE_COLUMNS), one per active coverage: `current` when its period
    holds the evaluation date, else a record that ended in the last `dual_history_months` (read for
    month-by-month dual status and the deeming period, SPEC §4.3). Several plan classes or SOPT codings
    on one coverage resolve to the highest-priority product they name."""
    coverages = _subjects("coverages", "Coverage", keys.coverage_beneficiary, members, window)
    window = window.on(coverages)
    t, d = idx_token, idx_date
    sopt = t.c.system == mappings.sopt_system
    plan, sopt_type, dual = keys.coverage_plan, keys.coverage_type, keys.coverage_dual_status
    tokens = pivot(t, "coverage_tokens", "Coverage", coverages, members, {
        "active": (keys.coverage_status, func.max(_when(keys.coverage_status, t.c.code == "active", 1, t))),
        "plan_priority": (plan, func.max(_when(plan, None, _plan_priority(mappings, t.c.code), t))),
        "sopt_priority": (sopt_type, func.max(_when(sopt_type, sopt, _sopt_priority(mappings, t.c.code), t))),
        "sopt_lob": (sopt_type, func.max(_when(sopt_type, sopt, _sopt_lob(mappings, t.c.code), t))),
        "dual_code": (dual, func.max(_when(dual, None, t.c.code, t))),
        "harp_status": (keys.coverage_harp_status, func.max(_when(keys.coverage_harp_status, None, t.c.code, t))),
        "aid_category": (keys.coverage_aid_category, func.max(_when(  # as rates.json spells it: trimmed, lower case
            keys.coverage_aid_category, None, func.lower(func.trim(t.c.code)), t))),
    })
    period = pivot(d, "coverage_period", "Coverage", coverages, members, {
        "lo": (keys.coverage_period, func.min(d.c.lo)),
        "hi": (keys.coverage_period, func.max(d.c.hi)),
    })
    priority = func.coalesce(tokens.c.plan_priority, tokens.c.sopt_priority)
    product_lob = case(*((priority == p.priority, p.line_of_business) for p in mappings.products), else_=None)
    history_start = window.months_back_us(mappings.dual_history_months)
    current = or_(period.c.rid.is_(None), period.c.hi >= window.as_of_lo_us)
    return (
        select(
            coverages.c.patient_id,
            coverages.c.rid,
            product_for_priority(mappings, priority),
            func.coalesce(product_lob, tokens.c.sopt_lob),
            tokens.c.dual_code,
            dual_level(mappings, tokens.c.dual_code),
            flag(current),
            period.c.lo,
            period.c.hi,
            tokens.c.harp_status,
            tokens.c.aid_category,
        )

        .select_from(coverages.join(tokens, tokens.c.rid == coverages.c.rid)
                     .outerjoin(period, period.c.rid == coverages.c.rid))
        .where(tokens.c.active == 1,
               or_(period.c.rid.is_(None), and_(period.c.lo <= window.as_of_hi_us, period.c.hi >= history_start)))
    )


def lobs_with(program: str) -> list[str]:
    """Lines of business that give the member this program (`dual` gives Medicare and Medicaid)."""
    return sorted(lob for lob, programs in LOB_PROGRAMS.items() if program in programs)


# -- diagnosis evidence ------------------------------------------------------------------------------


def _coded(name: str, rtype: str, h_param: int, subjects: Any, members: Members, codes_key: int,
           lifelong: bool = False) -> CTE:
    """(rid, system, code, valueset) of the codings of one code parameter that are in a value set, and
    with `lifelong` whether the coding is a lifelong diagnosis (SPEC §4.3)."""
    t, c = idx_token.alias(f"{name}_token"), alignment_codes.alias(f"{name}_codes")
    columns = [t.c.rid, t.c.system, t.c.code, c.c.valueset]
    joined = t.join(c, and_(c.c.h_code == t.c.h_sys_value, c.c.codes_key == codes_key))
    if lifelong:  # an outer join, not a correlated EXISTS: one hash join however many codings there are
        life = alignment_codes.alias(f"{name}_lifelong")
        joined = joined.outerjoin(life, and_(life.c.h_code == t.c.h_sys_value, life.c.codes_key == codes_key,
                                             life.c.valueset == LIFELONG))
        columns.append(flag(life.c.h_code.is_not(None)).label("lifelong"))
    return (
        select(*columns)
        .select_from(joined)
        .where(t.c.rtype == rtype, t.c.h_param == h_param, c.c.valueset != LIFELONG,
               *members.among(t.c.rid, subjects))
        .cte(name)
    )


def _in_window(date_lo: Any, window: EvaluationWindow) -> ColumnElement[bool]:
    return date_lo.between(window.start_us, window.as_of_hi_us)


def _latest(a: Any, b: Any) -> ColumnElement[Any]:
    """The later of two nullable values (SQL's two-argument max/greatest differ in how they treat NULL)."""
    return case((a.is_(None), b), (b.is_(None), a), (a >= b, a), else_=b)


def _condition_evidence(keys: IndexKeys, window: EvaluationWindow, codes_key: int, members: Members,
                        sparse: bool) -> Select:
    """Conditions coded in a value set, dated (recordedDate, else onset) in the window, not withdrawn, and
    graded (SPEC §4.3): uncertain verification, an inactive/resolved status outside a lifelong code, or a
    patient's own report make *suspect* evidence. An active, confirmed lifelong problem-list entry counts
    even when recorded before the window; its last-affirmed date is the latest of recorded, onset, the
    `assertedDate` extension and the period of the Encounter it cites."""
    conditions = _subjects("conditions", "Condition", keys.condition_patient, members, window)
    window = window.on(conditions)
    coded = _coded("condition_codes", "Condition", keys.condition_code, conditions, members, codes_key, lifelong=True)
    t, d = idx_token, idx_date
    problem_system, problem_code = PROBLEM_LIST
    states = pivot(t, "condition_states", "Condition", coded, members, {
        "withdrawn": (keys.condition_verification, func.max(
            _when(keys.condition_verification, t.c.code.in_(WITHDRAWN_VERIFICATION), 1, t))),
        "uncertain": (keys.condition_verification, func.max(
            _when(keys.condition_verification, t.c.code.in_(SUSPECT_VERIFICATION), 1, t))),
        "inactive": (keys.condition_clinical, func.max(
            _when(keys.condition_clinical, t.c.code.in_(INACTIVE_CLINICAL), 1, t))),
        "problem_list": (keys.condition_category, func.max(_when(
            keys.condition_category, and_(t.c.system == problem_system, t.c.code == problem_code), 1, t))),
        "claims": (keys.condition_tag, func.max(
            _when(keys.condition_tag, and_(t.c.system == SOURCE_KIND_SYSTEM, t.c.code == "claims"), 1, t))),
        "reported": (keys.condition_tag, func.max(_when(
            keys.condition_tag, and_(t.c.system == SOURCE_KIND_SYSTEM, t.c.code == PATIENT_REPORTED), 1, t))),
    }, sparse=sparse)
    dates = pivot(d, "condition_dates", "Condition", coded, members, {
        "recorded": (keys.condition_recorded, func.min(_when(keys.condition_recorded, None, d.c.lo, d))),
        "onset": (keys.condition_onset, func.min(_when(keys.condition_onset, None, d.c.lo, d))),
        "abated": (keys.condition_abatement, func.max(_when(keys.condition_abatement, None, d.c.hi, d))),
        "asserted": (keys.condition_asserted, func.max(_when(keys.condition_asserted, None, d.c.lo, d))),
    }, sparse=sparse)
    r, e = idx_reference.alias("condition_encounter"), idx_date.alias("encounter_period")
    cited = select(coded.c.rid).distinct().cte("coded_conditions")
    encounters = (  # the latest day of the Encounters a coded Condition cites (only those: few of all)
        select(r.c.rid, func.max(e.c.lo).label("seen"))
        .select_from(cited.join(r, r.c.rid == cited.c.rid)
                     .join(e, and_(e.c.rtype == "Encounter", e.c.rid == r.c.target_id,
                                   e.c.h_param == keys.encounter_date)))
        .where(r.c.rtype == "Condition", r.c.h_param == keys.condition_encounter, r.c.target_type == "Encounter",
               *members.among(r.c.rid, cited))
        .group_by(r.c.rid)
        .cte("condition_encounters")
    )
    date_lo = func.coalesce(dates.c.recorded, dates.c.onset)
    inactive, uncertain = func.coalesce(states.c.inactive, 0) == 1, func.coalesce(states.c.uncertain, 0) == 1
    reported = func.coalesce(states.c.reported, 0) == 1
    lifelong = coded.c.lifelong == true()
    abated_before = and_(inactive, dates.c.abated.is_not(None), dates.c.abated < window.start_us)
    persists = and_(lifelong, not_(inactive), not_(uncertain), func.coalesce(states.c.problem_list, 0) == 1,
                    date_lo < window.start_us)
    suspect = or_(uncertain, reported, and_(inactive, not_(lifelong)))
    return (
        select(
            conditions.c.patient_id,
            coded.c.valueset.label("category"),
            literal("Condition").label("resource_type"),
            coded.c.rid.label("resource_id"),
            coded.c.system,
            coded.c.code,
            date_lo.label("date_lo"),
            case((states.c.claims == 1, literal("claims")), (reported, literal(PATIENT_REPORTED)),
                 else_=literal("clinical")).label("source_kind"),
            case((suspect, literal(SUSPECT)), else_=literal(QUALIFYING)).label("grade"),
            coded.c.lifelong,
            _latest(_latest(dates.c.recorded, dates.c.onset), _latest(dates.c.asserted, encounters.c.seen))
            .label("affirmed_lo"),
        )
        .select_from(
            coded.join(conditions, conditions.c.rid == coded.c.rid)
            .join(dates, dates.c.rid == coded.c.rid)
            .outerjoin(states, states.c.rid == coded.c.rid)
            .outerjoin(encounters, encounters.c.rid == coded.c.rid)
        )
        .where(or_(_in_window(date_lo, window), persists), func.coalesce(states.c.withdrawn, 0) == 0,
               not_(abated_before))
    )


def _claim_evidence(keys: ClaimKeys, condition_code: int, window: EvaluationWindow, codes_key: int,
                    members: Members, sparse: bool) -> Select:
    """Active Claim / ExplanationOfBenefit diagnoses in a value set, dated in the window.

    Coded diagnoses match the claim's own `diagnosis` codings; diagnoses by `diagnosisReference` match
    the cited Condition's codes but keep the claim's date and status: the claim is the evidence. A claim
    is dated by its earliest service date in the window (any service date outside it does not count),
    else by `created`."""
    rt, name = keys.rtype, keys.rtype.lower()
    claims = _subjects(f"{name}s", rt, keys.patient, members, window)
    window = window.on(claims)
    coded = _coded(f"{name}_codes", rt, keys.diagnosis, claims, members, codes_key)
    ref, t, c = (idx_reference.alias(f"{name}_cites"), idx_token.alias(f"{name}_cited_code"),
                 alignment_codes.alias(f"{name}_cited_codes"))
    def cites(r: Any) -> list[ColumnElement[bool]]:
        return [r.c.rtype == rt, r.c.h_param == keys.diagnosis_reference, r.c.target_type == "Condition",
                *members.among(r.c.rid, claims)]

    cited_codes = [t.c.rtype == "Condition", t.c.rid == ref.c.target_id, members.not_leading(t.c.h_param) == condition_code]
    if not members.everyone:  # only the Conditions the members' claims cite: read by id, not every Condition's code
        again = idx_reference.alias(f"{name}_cites_again")
        cited_codes.append(t.c.rid.in_(select(again.c.target_id).where(*cites(again))))
    cited = (
        select(ref.c.rid, t.c.system, t.c.code, c.c.valueset)
        .select_from(
            ref.join(t, and_(*cited_codes))
            .join(c, and_(c.c.h_code == t.c.h_sys_value, c.c.codes_key == codes_key))
        )
        .where(*cites(ref))
    )
    diagnoses = union_all(select(coded), cited).cte(f"{name}_diagnoses")
    s, d = idx_token, idx_date
    active = pivot(s, f"{name}_status", rt, diagnoses, members, {
        "active": (keys.status, func.max(_when(keys.status, s.c.code == "active", 1, s))),
    }, sparse=sparse)
    in_window = and_(d.c.h_param == keys.service_date, _in_window(d.c.lo, window))
    dated = claims if window.per_row else diagnoses  # `served` reads each pair's own window
    dates = pivot(d, f"{name}_dates", rt, dated, members, {
        "service_dates": (keys.service_date, func.count(_when(keys.service_date, None, 1, d))),
        "served": (keys.service_date, func.min(case((in_window, d.c.lo), else_=None))),
        "created": (keys.created, func.min(_when(keys.created, None, d.c.lo, d))),
    }, per_subject=window.per_row, sparse=sparse)
    on_dates = dates.c.rid == diagnoses.c.rid
    if window.per_row:
        on_dates = and_(on_dates, dates.c.patient_id == claims.c.patient_id)
    date_lo = case((dates.c.service_dates > 0, dates.c.served), else_=dates.c.created)
    return (
        select(
            claims.c.patient_id,
            diagnoses.c.valueset.label("category"),
            literal(rt).label("resource_type"),
            diagnoses.c.rid.label("resource_id"),
            diagnoses.c.system,
            diagnoses.c.code,
            date_lo.label("date_lo"),
            literal("claims").label("source_kind"),
            literal(QUALIFYING).label("grade"),
            false().label("lifelong"),
            date_lo.label("affirmed_lo"),
        )
        .select_from(
            diagnoses.join(claims, claims.c.rid == diagnoses.c.rid)
            .join(active, active.c.rid == diagnoses.c.rid)
            .join(dates, on_dates)
        )
        .where(active.c.active == 1, _in_window(date_lo, window))
    )


EVIDENCE_COLUMNS = ("patient_id", "category", "resource_type", "resource_id", "system", "code", "date_lo",
                    "source_kind", "grade", "lifelong", "affirmed_lo")
_AGGREGATED = {"date_lo": func.min, "affirmed_lo": func.max}


def evidence_select(keys: IndexKeys, window: EvaluationWindow, codes_key: int, members: Members,
                    sparse: bool = False) -> Select:
    """Rows of `finding_evidence`, one per (member, value set, resource, coding, source kind, grade).

    `sparse`: the codes match a minority of the Conditions and claims (the risk model's CC-bearing codes:
    53,000 of 222,000 Condition codings at 100,000 bench members), so the states and dates of the coded
    resources alone are aggregated, also for every member (the risk diagnoses statement 30.8 → 19.5 s there,
    2026-12-04). The value sets of product alignment code most of them, where the semi-join costs more than
    it saves (full re-evaluation 86.6 → 99.1 s on the same data), so the alignment engine leaves it off."""
    parts: list[Select] = [_condition_evidence(keys, window, codes_key, members, sparse)]
    parts += [_claim_evidence(claim, keys.condition_code, window, codes_key, members, sparse) for claim in keys.claims]
    found = union_all(*parts).subquery("evidence")
    group = [found.c[name] for name in EVIDENCE_COLUMNS if name not in _AGGREGATED]
    return select(*(_AGGREGATED[name](found.c[name]) if name in _AGGREGATED else found.c[name]
                    for name in EVIDENCE_COLUMNS)).group_by(*group)


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

