"""The member-facts row the eligibility rules read (SPEC §4.2-§4.3), as SQL: one row per member aggregating
the stages `facts.py` wrote (`finding_coverage`, `finding_categories`), the Patient's facts kept at write
time (`patient_facts.py`: birth date, own flags and State codes, addresses for the coverage-area and
rate-region columns of `areas.py`) and the HARP risk factors.
Split from `rules.py`, which derives the decisions and findings from it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    case,
    distinct,
    func,
    not_,
    or_,
    select,
    true,
)

from server.alignment.areas import area_column, area_columns, region_column
from server.alignment.facts import PLAN, Members, lobs_with, priority_of
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import PROGRAMS, Mappings
from server.alignment.risk_factors import load_risk_factors, risk_factor_facts
from server.alignment.window import EvaluationWindow
from server.store.alignment_schema import (
    HARP_STATUS,
    alignment_coverage_codes,
    alignment_member_codes,
    alignment_members,
    finding_categories,
    finding_coverage,
)


def as_int(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def valueset_columns(mappings: Mappings) -> dict[str, str]:
    """Value-set id → its flag column in the facts row (ids may hold characters SQL names cannot)."""
    return {vs: f"vs_{i}" for i, vs in enumerate(sorted(mappings.value_sets))}


def _products_with(mappings: Mappings, program: str) -> list[str]:
    return [p.code for p in mappings.products if program in p.programs]


def state_codes(mappings: Mappings) -> list[str]:
    """Every State status code a rule names (NY HARP H-codes): each gets a 0/1 column in the facts row."""
    return sorted({code for p in mappings.products if p.eligibility.state_determination
                   for code in p.eligibility.state_determination.confirms | p.eligibility.state_determination.excludes})


def flag_column(code: str) -> str:
    return f"state_{code.lower()}"


def named_column(plan: str) -> str:
    """The facts-row column saying a current Coverage names this plan of a product with several plans."""
    return "named_" + plan.replace("-", "_")


def _named_plans(mappings: Mappings, members: Members) -> Subquery | None:
    """Per member (keyed as `finding_coverage` is), a 0/1 `named_column` per plan of a product with several
    plans: a Coverage in force names that plan itself (its `Coverage.class` of type plan is the plan id,
    trimmed, any case), not only the product. None when no product has plans."""
    plans = [u.code for p in mappings.products if p.plans for u in p.units]
    if not plans:
        return None
    fc, k = finding_coverage.c, alignment_coverage_codes.c
    value = func.lower(func.trim(k.code))
    return (
        select(fc.patient_id, *(func.max(case((value == plan, 1), else_=0)).label(named_column(plan)) for plan in plans))
        .select_from(finding_coverage.join(alignment_coverage_codes, and_(k.rid == fc.coverage_id, k.param == PLAN)))
        .where(fc.current == true(), fc.product.in_(sorted(mappings.products_with_plans)), *members.where(fc.patient_id))
        .group_by(fc.patient_id)
        .subquery("named_plans")
    )


def member_facts(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Subquery:
    """One row per member: birth-date bounds, programs, coverage counts, enrolled priority, the number of
    distinct products per program (conflicts), the dual levels of the latest coded month, the Medicaid
    evidence and aid category (SPEC §4.3), the State status codes and member flags, the plans a Coverage
    names, and a 0/1 flag per value set."""
    fc, fcat = finding_coverage.c, finding_categories.c
    current = fc.current == true()

    def now(value: Any) -> ColumnElement[Any]:
        return case((current, value), else_=None)

    codes = state_codes(mappings)
    leveled = fc.dual_level.is_not(None)
    coverage = (
        select(
            fc.patient_id,
            func.count(now(1)).label("coverages"),
            func.count(now(fc.line_of_business)).label("recognized"),
            *(func.max(case((and_(current, fc.line_of_business.in_(lobs_with(p))), 1), else_=0)).label(f"has_{p}")
              for p in PROGRAMS),
            *(func.count(distinct(case((and_(current, fc.product.in_(_products_with(mappings, p))), fc.product),
                                       else_=None))).label(f"products_{p}") for p in PROGRAMS),
            func.max(now(priority_of(mappings, fc.product))).label("enrolled_priority"),
            func.max(case((and_(current, fc.line_of_business == "medicaid"), 1), else_=0)).label("medicaid_lob"),
            func.max(case((and_(current, fc.line_of_business == "dual"), 1), else_=0)).label("dual_lob"),
            func.max(case((and_(not_(current), or_(fc.line_of_business == "medicaid", leveled)), fc.period_hi),
                          else_=None)).label("medicaid_ended"),
            *(func.max(case((and_(current, fc.harp_status == code), 1), else_=0)).label(flag_column(code))
              for code in codes),
            # the aid category of a Medicaid coverage in force (rate cells); of several, the greatest code
            func.max(case((and_(current, fc.line_of_business.in_(lobs_with("medicaid"))), fc.aid_category),
                          else_=None)).label("aid_category"),
        )
        .where(*members.where(fc.patient_id))
        .group_by(fc.patient_id)
        .subquery("coverage")
    )
    # Month by month (SPEC §4.3): among the coded records in force, the latest month's codes win; a
    # record that ended says nothing about today (it dates the end of Medicaid evidence instead).
    month = func.coalesce(fc.period_lo, 0)
    latest = (
        select(fc.patient_id, func.max(month).label("month"))
        .where(fc.dual_code.is_not(None), current, *members.where(fc.patient_id))
        .group_by(fc.patient_id)
        .subquery("latest_month")
    )
    coded = finding_coverage.alias("coded")
    dual = (
        select(coded.c.patient_id,
               func.sum(case((coded.c.dual_level == "full", 1), else_=0)).label("full_codes"),
               func.sum(case((coded.c.dual_level == "partial", 1), else_=0)).label("partial_codes"))
        .select_from(coded.join(latest, and_(latest.c.patient_id == coded.c.patient_id,
                                             func.coalesce(coded.c.period_lo, 0) == latest.c.month)))
        .where(coded.c.dual_code.is_not(None), coded.c.current == true())
        .group_by(coded.c.patient_id)
        .subquery("dual_month")
    )
    columns = valueset_columns(mappings)
    categories = (
        select(fcat.patient_id,
               *(func.max(case((fcat.category == vs, 1), else_=0)).label(col) for vs, col in columns.items()))
        .where(*members.where(fcat.patient_id))
        .group_by(fcat.patient_id)
        .subquery("categories")
    )
    k = alignment_member_codes.c
    own_codes = (  # the Patient's own State codes and addresses, one GROUP BY over its few narrow rows
        select(k.patient_id,
               *(func.max(case((and_(k.param == HARP_STATUS, k.code == code), 1), else_=0)).label(flag_column(code))
                 for code in codes),
               *area_columns(mappings.units, mappings.rates.regions, k))
        .where(*members.patients.where(k.patient_id))
        .group_by(k.patient_id)
        .subquery("own_codes")
    )
    rf = load_risk_factors(mappings.directory)
    risk = risk_factor_facts(rf, window, members)
    m = alignment_members.alias("member")
    # A member's row; with a `RowWindow`, one per (member, date) pair, keyed by the pair, with its bounds.
    base, key, bounds = m, m.c.patient_id, []
    if window.per_row:
        pairs, dates = window.pairs, window.dates
        base = pairs.join(dates, dates.c.as_of == pairs.c.as_of).join(m, m.c.patient_id == pairs.c.patient_id)
        key, bounds, window = pairs.c.member_key, window.bound_columns(), window.on(dates)
    counts = ("coverages", "recognized", *(f"has_{p}" for p in PROGRAMS), *(f"products_{p}" for p in PROGRAMS),
              "medicaid_lob", "dual_lob")
    has_medicare = func.coalesce(coverage.c.has_medicare, 0) == 1
    leveled_now = func.coalesce(dual.c.full_codes, 0) + func.coalesce(dual.c.partial_codes, 0) > 0
    # Medicaid is evidenced by a Medicaid coverage, or for a Medicare member by a dual status code with a
    # level, which the plan learns from CMS (SPEC §4.3); a dual product's own coverage is no evidence.
    evidenced = or_(func.coalesce(coverage.c.medicaid_lob, 0) == 1, and_(has_medicare, leveled_now))
    lapsed = and_(not_(evidenced), coverage.c.medicaid_ended.is_not(None),
                  coverage.c.medicaid_ended < window.months_back_us(mappings.deeming_months))
    named = _named_plans(mappings, members)
    joined = (
        base.outerjoin(coverage, coverage.c.patient_id == key)
        .outerjoin(dual, dual.c.patient_id == key)
        .outerjoin(categories, categories.c.patient_id == key)
        .outerjoin(own_codes, own_codes.c.patient_id == m.c.patient_id)
        .outerjoin(risk, risk.c.patient_id == key)
    )
    return (
        select(
            key.label("patient_id"),
            m.c.birth_lo,
            m.c.birth_hi,
            coverage.c.enrolled_priority,
            coverage.c.aid_category,
            *(func.coalesce(coverage.c[name], 0).label(name) for name in counts if name != "has_medicaid"),
            case((or_(evidenced, and_(func.coalesce(coverage.c.dual_lob, 0) == 1, not_(lapsed))), 1),
                 else_=0).label("has_medicaid"),
            as_int(evidenced).label("medicaid_evidenced"),
            as_int(lapsed).label("medicaid_lapsed"),
            func.coalesce(dual.c.full_codes, 0).label("full_codes"),
            func.coalesce(dual.c.partial_codes, 0).label("partial_codes"),
            as_int(m.c.opwdd == true()).label("flag_opwdd"),
            *(as_int(or_(coverage.c[flag_column(c)] == 1, own_codes.c[flag_column(c)] == 1)).label(flag_column(c))
              for c in codes),
            *(func.coalesce(categories.c[col], 0).label(col) for col in columns.values()),
            func.coalesce(own_codes.c.has_address, 0).label("has_address"),
            *(func.coalesce(own_codes.c[area_column(u.code)], 0).label(area_column(u.code))
              for u in mappings.units if u.coverage_area),
            *(func.coalesce(own_codes.c[region_column(r.code)], 0).label(region_column(r.code))
              for r in mappings.rates.regions),
            *(func.coalesce(risk.c[rf.column(f)], 0).label(rf.column(f)) for f in rf.factors),
            *(func.coalesce(c, 0).label(c.name) for c in (named.c if named is not None else ()) if c.name != "patient_id"),
            *bounds,
        )
        .select_from(joined if named is None else joined.outerjoin(named, named.c.patient_id == key))
        .where(*members.patients.where(m.c.patient_id))
        .subquery("facts")
    )


PLAN_COLUMNS = ("patient_id", "plan")


def plans_select(members: Members) -> Select:
    """Rows of `finding_plans` (PLAN_COLUMNS): each plan code of the coverages `finding_coverage` holds for
    the members, lower-cased, once per member. Kept next to the finding so the worklist filters by plan with
    an index lookup (issue 22)."""
    v, k = finding_coverage.c, alignment_coverage_codes.c
    return (
        select(v.patient_id, func.lower(k.code))
        .select_from(finding_coverage.join(alignment_coverage_codes, and_(k.rid == v.coverage_id, k.param == PLAN)))
        .where(k.code.is_not(None), *members.where(v.patient_id))
        .distinct()
    )
