"""The eligibility rules of SPEC §4.2 and §4.3, as SQL generated from `mappings/products.json`.

One implementation for every product: each rule of the vocabulary (mappings/README.md) becomes a
criterion over a member-facts row (programs, age bounds, dual level, member flags, State status codes,
value sets). The member-facts row aggregates the stages `facts.py` wrote (`finding_coverage`,
`finding_categories`) plus the birth date and the Patient's own flags. From it the findings row is derived:

* eligible = every criterion of the product met; the enrolled product is the highest-priority product
  named by a current coverage; the recommended product is, when the enrolled product's rule holds, the
  highest-priority *specialized* eligible product above it (else the enrolled one), otherwise the
  highest-priority eligible product — so Original Medicare is never steered to plain MA;
* status: `not-evaluable` without a current coverage that gives a line of business; `review` when the
  data conflicts or is unknown (conflicting coverages, dual level unknown or contradictory, a dual
  status code on a member who is not dual, eligibility hanging on an unknown birth date, no eligible
  product, a dual product's Medicaid not evidenced inside the deeming period); else `aligned` when
  enrolled = recommended, else `misaligned`;
* kind: `compliance` (the enrolled product's rule fails) or `opportunity` (a specialized product is
  recommended over an eligible enrolled one);
* reason codes saying why (REASONS), and the annual impact from the rate table.

Ages are compared as birth-date bounds (`EvaluationWindow.born_by_us`), three-valued: a criterion is
met when the whole birth-date range satisfies it, unknown when the range (a year-only birthDate, or
none) straddles the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Date,
    MetaData,
    Select,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    distinct,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.elements import BindParameter

from server.alignment.areas import area_column, area_criterion, area_facts, region_column
from server.alignment.facts import Members, lobs_with, priority_of, product_for_priority
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import PROGRAMS, Mappings, Product, RuleUnit
from server.alignment.risk_factors import load_risk_factors, met, risk_factor_facts
from server.alignment.window import EvaluationWindow
from server.store.alignment_schema import finding_categories, finding_coverage
from server.store.hashing import h64
from server.store.schema import idx_date, idx_token, resources

# Reason codes, in the order they are listed on a finding.
REASONS = (
    "no-active-coverage",  # no active Coverage at all
    "coverage-not-recognized",  # active coverage, but none names a product or a line of business
    "conflicting-coverage",  # two active coverages name different products of one program
    "dual-level-unknown",  # Medicare + Medicaid coverage without a dual status code that has a level
    "medicaid-not-evidenced",  # enrolled in a dual product, no Medicaid coverage or dual status code
    "deeming-period-ended",  # ... and the latest Medicaid evidence ended before the deeming period
    "dual-level-conflict",  # full and partial dual status codes at once
    "dual-code-not-dual",  # a dual status code with a level, but not both Medicare and Medicaid
    "age-unknown",  # a product's eligibility depends on a birth date that is missing or imprecise
    "no-eligible-product",  # covered, but no product's rule holds
    "no-enrolled-product",  # covered (e.g. Medicaid fee-for-service) without a named product
    "enrolled-not-eligible",  # the enrolled product's rule does not hold
    "higher-priority-eligible",  # the enrolled product's rule holds, a higher-priority product's too
    "state-identified",  # recommended a product the State's own status code confirms (NY HARP H8/H9)
    "state-determination-pending",  # recommended on the diagnosis alone: a referral candidate
    "state-excluded",  # a State code excludes the member from a product (NY HARP H7 opted out)
    "flag-excluded",  # a documented member flag excludes the member from a product (OPWDD)
    # A referral candidate's claims show a HARP risk factor (`harp_risk_factors.json`: RiskFactor.reason).
    "risk-factor-psychiatric-inpatient-days",
    "risk-factor-act-tcm-months",
)


RULES = "v2.1"  # SPEC §4.3; bump when a change to the rules below changes findings


def rules_version(mappings: Mappings, codes_key: int) -> str:
    """What the stored findings depend on: these rules, the value-set codes and the catalogue, the
    rates and the dual-status settings; a server whose version differs re-evaluates every member. Sets are
    written sorted, so every process computes the same text."""
    catalogue = json.dumps([[p.model_dump() for p in mappings.products], sorted(mappings.rates.pmpm.items()),
                            [r.model_dump() for r in mappings.rates.regions], [c.model_dump() for c in mappings.rates.cells],
                            mappings.dual_history_months, mappings.deeming_months,
                            sorted((c.code, c.level) for c in mappings.dual_status_codes.values()),
                            mappings.non_claims_valuesets, load_risk_factors(mappings.directory).model_dump()],
                           sort_keys=True, default=_canonical)
    return f"{RULES}:{h64(str(codes_key), catalogue) & 0xFFFFFFFFFFFF:x}"


def _canonical(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)  # Decimal rates


def valueset_columns(mappings: Mappings) -> dict[str, str]:
    """Value-set id → its flag column in the facts row (ids may hold characters SQL names cannot)."""
    return {vs: f"vs_{i}" for i, vs in enumerate(sorted(mappings.value_sets))}


def _products_with(mappings: Mappings, program: str) -> list[str]:
    return [p.code for p in mappings.products if program in p.programs]


def state_codes(mappings: Mappings) -> list[str]:
    """Every State status code a rule names (NY HARP H-codes): each gets a 0/1 column in the facts row."""
    return sorted({code for p in mappings.products if p.eligibility.state_determination
                   for code in p.eligibility.state_determination.confirms | p.eligibility.state_determination.excludes})


def _flag_column(code: str) -> str:
    return f"state_{code.lower()}"


def member_facts(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Subquery:
    """One row per member: birth-date bounds, programs, coverage counts, enrolled priority, the number of
    distinct products per program (conflicts), the dual levels of the latest coded month, the Medicaid
    evidence (SPEC §4.3), the State status codes and member flags, and a 0/1 flag per value set."""
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
            *(func.max(case((and_(current, fc.harp_status == code), 1), else_=0)).label(_flag_column(code))
              for code in codes),
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
    t = idx_token.c
    on_patient = (
        select(t.rid,
               func.max(case((and_(t.h_param == keys.patient_opwdd, t.code == "true"), 1), else_=0)).label("flag_opwdd"),
               *(func.max(case((and_(t.h_param == keys.patient_harp_status, t.code == code), 1), else_=0))
                 .label(_flag_column(code)) for code in codes))
        .where(t.rtype == "Patient", t.h_param.in_([keys.patient_opwdd, keys.patient_harp_status]),
               *members.where(t.rid))
        .group_by(t.rid)
        .subquery("on_patient")
    )
    areas = area_facts(mappings.units, mappings.rates.regions, members)
    rf = load_risk_factors(mappings.directory)
    risk = risk_factor_facts(keys, rf, window, members)
    m, birth = resources.alias("member"), idx_date.alias("birth")
    counts = ("coverages", "recognized", *(f"has_{p}" for p in PROGRAMS), *(f"products_{p}" for p in PROGRAMS),
              "medicaid_lob", "dual_lob")
    has_medicare = func.coalesce(coverage.c.has_medicare, 0) == 1
    leveled_now = func.coalesce(dual.c.full_codes, 0) + func.coalesce(dual.c.partial_codes, 0) > 0
    # Medicaid is evidenced by a Medicaid coverage, or for a Medicare member by a dual status code with a
    # level, which the plan learns from CMS (SPEC §4.3); a dual product's own coverage is no evidence.
    evidenced = or_(func.coalesce(coverage.c.medicaid_lob, 0) == 1, and_(has_medicare, leveled_now))
    lapsed = and_(not_(evidenced), coverage.c.medicaid_ended.is_not(None),
                  coverage.c.medicaid_ended < window.months_back_us(mappings.deeming_months))
    return (
        select(
            m.c.rid.label("patient_id"),
            birth.c.lo.label("birth_lo"),
            birth.c.hi.label("birth_hi"),
            coverage.c.enrolled_priority,
            *(func.coalesce(coverage.c[name], 0).label(name) for name in counts if name != "has_medicaid"),
            case((or_(evidenced, and_(func.coalesce(coverage.c.dual_lob, 0) == 1, not_(lapsed))), 1),
                 else_=0).label("has_medicaid"),
            _int(evidenced).label("medicaid_evidenced"),
            _int(lapsed).label("medicaid_lapsed"),
            func.coalesce(dual.c.full_codes, 0).label("full_codes"),
            func.coalesce(dual.c.partial_codes, 0).label("partial_codes"),
            func.coalesce(on_patient.c.flag_opwdd, 0).label("flag_opwdd"),
            *(_int(or_(coverage.c[_flag_column(c)] == 1, on_patient.c[_flag_column(c)] == 1)).label(_flag_column(c))
              for c in codes),
            *(func.coalesce(categories.c[col], 0).label(col) for col in columns.values()),
            func.coalesce(areas.c.has_address, 0).label("has_address"),
            *(func.coalesce(areas.c[area_column(u.code)], 0).label(area_column(u.code))
              for u in mappings.units if u.coverage_area),
            *(func.coalesce(areas.c[region_column(r.code)], 0).label(region_column(r.code))
              for r in mappings.rates.regions),
            *(func.coalesce(risk.c[rf.column(f)], 0).label(rf.column(f)) for f in rf.factors),
        )
        .select_from(
            m.outerjoin(birth, and_(birth.c.rtype == "Patient", birth.c.rid == m.c.rid,
                                    birth.c.h_param == keys.patient_birthdate))
            .outerjoin(coverage, coverage.c.patient_id == m.c.rid)
            .outerjoin(dual, dual.c.patient_id == m.c.rid)
            .outerjoin(categories, categories.c.patient_id == m.c.rid)
            .outerjoin(on_patient, on_patient.c.rid == m.c.rid)
            .outerjoin(areas, areas.c.rid == m.c.rid)
            .outerjoin(risk, risk.c.patient_id == m.c.rid)
        )
        .where(m.c.rtype == "Patient", m.c.deleted.is_(False), *members.where(m.c.rid))
        .subquery("facts")
    )


# -- criteria -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One condition of a rule: when it is met, and the `name:value` text recorded when it is."""

    met: ColumnElement[bool]
    text: ColumnElement[str]
    unknown: ColumnElement[bool] | None = None  # age criteria only: the birth date cannot decide


def _has(f: Any, program: str) -> ColumnElement[bool]:
    return f.c[f"has_{program}"] == 1


def is_dual(f: Any) -> ColumnElement[bool]:
    """Dual = active Medicare and Medicaid (vocabulary of mappings/README.md)."""
    return and_(_has(f, "medicare"), _has(f, "medicaid"))


def member_dual_level(f: Any) -> ColumnElement[Any]:
    full, partial = f.c.full_codes > 0, f.c.partial_codes > 0
    return case(
        (not_(is_dual(f)), None),
        (and_(full, partial), "unknown"),
        (full, "full"),
        (partial, "partial"),
        else_="unknown",
    )


def _undecided(f: Any, cutoff: int) -> ColumnElement[bool]:
    """No birth date, or a birth-date range that straddles the threshold."""
    return or_(f.c.birth_lo.is_(None), and_(f.c.birth_lo <= cutoff, f.c.birth_hi > cutoff))


def _text(name: str, value: str) -> ColumnElement[str]:
    return literal(f" {name}:{value}")


def criteria(unit: RuleUnit, f: Any, window: EvaluationWindow, columns: dict[str, str]) -> list[Criterion]:
    """A product's (or one of its plans') rule (vocabulary of mappings/README.md) as criteria over the facts
    row `f`; a plan's criteria name it (`plan:<id>`), so the eligible product records which plan took the
    member."""
    rule = unit.eligibility
    out = [Criterion(_has(f, p), _text("requires_lob", p)) for p in sorted(rule.requires_lob)]
    out += [Criterion(not_(_has(f, p)), _text("excludes_lob", p)) for p in sorted(rule.excludes_lob)]
    if rule.min_age is not None:
        cutoff = window.born_by_us(rule.min_age)  # born by then: at least min_age
        out.append(Criterion(f.c.birth_hi <= cutoff, _text("min_age", str(rule.min_age)), _undecided(f, cutoff)))
    if rule.max_age is not None:
        cutoff = window.born_by_us(rule.max_age + 1)  # born after then: at most max_age
        out.append(Criterion(f.c.birth_lo > cutoff, _text("max_age", str(rule.max_age)), _undecided(f, cutoff)))
    if rule.dual_levels is not None:
        level = member_dual_level(f)
        out.append(Criterion(and_(is_dual(f), level.in_(sorted(rule.dual_levels))),
                             literal(" dual_level:") + level))
    out += [Criterion(f.c[f"flag_{flag}"] == 0, _text("excludes_flag", flag)) for flag in sorted(rule.excludes_flags)]
    state = rule.state_determination
    if state is not None:
        out += [Criterion(f.c[_flag_column(code)] == 0, _text("excludes_state", code)) for code in sorted(state.excludes)]
    if rule.requires_any_valueset:
        # A State code that confirms eligibility stands in for the diagnosis (SPEC §4.3: the State decides).
        flags = [(f"valueset:{vs}", f.c[columns[vs]] == 1) for vs in rule.requires_any_valueset]
        flags += [(f"state_status:{code}", f.c[_flag_column(code)] == 1) for code in sorted(state.confirms)] if state else []
        matched = [case((flag, f" {token}"), else_="") for token, flag in flags]
        text = matched[0]
        for part in matched[1:]:
            text = text + part
        out.append(Criterion(or_(*(flag for _, flag in flags)), text))
    if unit.coverage_area:
        out.append(Criterion(*area_criterion(unit.code, f)))
    if unit.plan:
        out.append(Criterion(true(), _text("plan", unit.code)))
    return out


def state_confirmed(product: Product, f: Any) -> ColumnElement[bool]:
    """The State's own code confirms the member for this product (false for products without one)."""
    state = product.eligibility.state_determination
    if state is None or not state.confirms:
        return false()
    return or_(*(f.c[_flag_column(code)] == 1 for code in sorted(state.confirms)))


def eligible(items: list[Criterion]) -> ColumnElement[bool]:
    return and_(*(c.met for c in items))


def blocked_by_age(items: list[Criterion]) -> ColumnElement[bool]:
    """Every other criterion holds, but the birth date cannot decide an age criterion."""
    unknown = [c.unknown for c in items if c.unknown is not None]
    if not unknown:
        return false()
    return and_(*(c.met for c in items if c.unknown is None), or_(*unknown))


def criteria_text(items: list[Criterion]) -> ColumnElement[str]:
    text = items[0].text
    for item in items[1:]:
        text = text + item.text
    return func.trim(text)


# -- the derived layers -----------------------------------------------------------------------------


def _int(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def decisions(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Subquery:
    """The facts row plus, per product i (priority order), `eligible_i` (any of its plans), `age_blocked_i`
    and `confirmed_i` (0/1), per plan j of a product with plans `eligible_i_j`, and the member's dual flag,
    dual level and conflict flag."""
    f = member_facts(mappings, keys, window, members)
    columns = valueset_columns(mappings)
    per_product = []
    for i, product in enumerate(mappings.products):
        units = [criteria(unit, f, window, columns) for unit in product.units]
        if product.plans:
            per_product += [_int(eligible(items)).label(f"eligible_{i}_{j}") for j, items in enumerate(units)]
        per_product.append(_int(or_(*(eligible(items) for items in units))).label(f"eligible_{i}"))
        per_product.append(_int(or_(*(blocked_by_age(items) for items in units))).label(f"age_blocked_{i}"))
        per_product.append(_int(state_confirmed(product, f)).label(f"confirmed_{i}"))
    conflict = or_(*(f.c[f"products_{p}"] > 1 for p in PROGRAMS))
    return select(
        f,
        *per_product,
        _int(is_dual(f)).label("dual"),
        member_dual_level(f).label("dual_level"),
        _int(conflict).label("conflict"),
    ).subquery("decisions")


def _best_eligible(mappings: Mappings, d: Any) -> ColumnElement[Any]:
    return case(*((d.c[f"eligible_{i}"] == 1, p.priority) for i, p in enumerate(mappings.products)), else_=None)


def _recommended_priority(mappings: Mappings, d: Any) -> ColumnElement[Any]:
    """A member whose enrolled product's rule holds is recommended a *specialized* product of higher
    priority (an opportunity), else stays; any other member the highest-priority eligible product. So
    Original Medicare is never steered to plain Medicare Advantage (SPEC §4.3: the member's choice)."""
    upgrade = case(*((and_(d.c[f"eligible_{i}"] == 1, literal(p.priority) > d.c.enrolled_priority), p.priority)
                     for i, p in enumerate(mappings.products) if p.specialized), else_=d.c.enrolled_priority)
    return case((_enrolled_eligible(mappings, d), upgrade), else_=_best_eligible(mappings, d))


def _enrolled_eligible(mappings: Mappings, d: Any) -> ColumnElement[bool]:
    return or_(*(and_(d.c.enrolled_priority == p.priority, d.c[f"eligible_{i}"] == 1)
                 for i, p in enumerate(mappings.products)))


def _cents(value: Any) -> ColumnElement[Any]:
    return literal(int((value * 100).to_integral_value(ROUND_HALF_UP)), BigInteger)


def _recommended_plan(mappings: Mappings, d: Any, recommended: ColumnElement[Any]) -> ColumnElement[Any]:
    """The plan that takes the member, of a recommended product with several plans (NULL otherwise)."""
    whens = [(and_(recommended == p.priority, d.c[f"eligible_{i}_{j}"] == 1), u.code)
             for i, p in enumerate(mappings.products) if p.plans for j, u in enumerate(p.units)]
    return case(*whens, else_=None) if whens else literal(None)


def _rate_cell(mappings: Mappings, d: Any, priority: Any, plan: Any) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(cents, cell key) of the product at `priority` for the member (SPEC §4.3 rate cells): the most
    specific cell of the product, or of `plan`, matching the member's region and dual segment, else the
    product's PMPM (its key is the product code)."""
    rates = mappings.rates
    region = case(*((d.c[region_column(r.code)] == 1, r.code) for r in rates.regions), else_=None) \
        if rates.regions else literal(None)
    segment = case((d.c.dual_level.is_(None), "non-dual"), (d.c.dual_level.in_(["full", "partial"]), d.c.dual_level),
                   else_=None)
    cents, keys = [], []
    for p in mappings.products:
        plans = tuple(u.code for u in p.units if u.plan)
        matched = []
        for cell in rates.cells_for(p.code, plans):
            parts = [literal(True) if cell.product == p.code else plan == cell.product]
            parts += [region == cell.region] if cell.region else []
            parts += [segment == cell.segment] if cell.segment else []
            matched.append((and_(*parts), cell))
        here = priority == p.priority
        cents.append((here, case(*((cond, _cents(c.pmpm)) for cond, c in matched), else_=_cents(rates.pmpm[p.code]))
                      if matched else _cents(rates.pmpm[p.code])))
        keys.append((here, case(*((cond, c.key) for cond, c in matched), else_=p.code) if matched else literal(p.code)))
    return case(*cents, else_=None), case(*keys, else_=None)


def _reason_conditions(mappings: Mappings, d: Any) -> dict[str, ColumnElement[bool]]:
    recommended = _recommended_priority(mappings, d)
    covered, recognized = d.c.coverages > 0, d.c.recognized > 0
    dual = d.c.dual == 1
    full, partial = d.c.full_codes > 0, d.c.partial_codes > 0
    enrolled_eligible = _enrolled_eligible(mappings, d)
    age_blocked = or_(*(d.c[f"age_blocked_{i}"] == 1 for i in range(len(mappings.products))))
    not_evidenced = and_(d.c.dual_lob == 1, d.c.medicaid_evidenced == 0)
    opportunity = and_(enrolled_eligible, recommended > d.c.enrolled_priority)
    moved = and_(recommended.is_not(None), or_(d.c.enrolled_priority.is_(None), recommended != d.c.enrolled_priority))
    confirmed = or_(false(), *(and_(recommended == p.priority, d.c[f"confirmed_{i}"] == 1)
                      for i, p in enumerate(mappings.products) if p.eligibility.state_determination))
    by_state = or_(false(), *(recommended == p.priority for p in mappings.products if p.eligibility.state_determination))
    state_excluded = or_(false(), *(d.c[_flag_column(code)] == 1 for p in mappings.products
                                    if p.eligibility.state_determination for code in p.eligibility.state_determination.excludes))
    flagged = or_(false(), *(d.c[f"flag_{flag}"] == 1 for p in mappings.products for flag in p.eligibility.excludes_flags))
    conditions = {
        "no-active-coverage": not_(covered),
        "coverage-not-recognized": and_(covered, not_(recognized)),
        "conflicting-coverage": and_(recognized, d.c.conflict == 1),
        "dual-level-unknown": and_(dual, not_(full), not_(partial), d.c.medicaid_evidenced == 1),
        "medicaid-not-evidenced": not_evidenced,
        "deeming-period-ended": and_(not_evidenced, d.c.medicaid_lapsed == 1),
        "dual-level-conflict": and_(dual, full, partial),
        "dual-code-not-dual": and_(recognized, not_(dual), or_(full, partial)),
        "age-unknown": and_(recognized, age_blocked),
        "no-eligible-product": and_(recognized, recommended.is_(None)),
        "no-enrolled-product": and_(recognized, d.c.enrolled_priority.is_(None)),
        "enrolled-not-eligible": and_(d.c.enrolled_priority.is_not(None), not_(enrolled_eligible)),
        "higher-priority-eligible": opportunity,
        "state-identified": and_(moved, confirmed),
        "state-determination-pending": and_(moved, by_state, not_(confirmed)),
        "state-excluded": state_excluded,
        "flag-excluded": flagged,
    }
    pending = and_(conditions["state-determination-pending"], recommended.is_not(None))
    conditions.update(_risk_factor_conditions(mappings, d, pending))
    assert tuple(conditions) == REASONS
    return conditions


def _risk_factor_conditions(mappings: Mappings, d: Any, pending: ColumnElement[bool]) -> dict[str, ColumnElement[bool]]:
    """A referral candidate (recommended the factors' product, the State's determination pending) whose
    claims reach a risk factor's threshold. Never a criterion: the State decides (SPEC §4.3)."""
    rf = load_risk_factors(mappings.directory)
    product = {p.code: p for p in mappings.products}.get(rf.product)
    by_reason = {f.reason: f for f in rf.factors}
    out = {}
    for code in REASONS[REASONS.index("flag-excluded") + 1:]:
        factor = by_reason.get(code)
        out[code] = (and_(pending, _recommended_priority(mappings, d) == product.priority, met(rf, factor, d))
                     if factor is not None and product is not None else false())
    return out


_REVIEW_REASONS = ("conflicting-coverage", "dual-level-unknown", "dual-level-conflict", "dual-code-not-dual",
                   "age-unknown", "no-eligible-product")
KINDS = ("compliance", "opportunity")

FINDING_COLUMNS = ("patient_id", "status", "kind", "enrolled_product", "recommended_product", "dual_level", "reasons",
                   "annual_impact_cents", "currency", "birth_lo", "as_of", "lookback_start", "evaluated_at",
                   "recommended_rate_cell", "enrolled_rate_cell")


EVALUATED_AT = "evaluated_at"


DECISIONS = "alignment_decisions"  # a temporary table, private to the evaluation's connection


def decisions_table(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> tuple[Table, Select]:
    """A temporary table for the decisions rows and the SELECT that fills it: the findings and the eligible
    products are both derived from it, so the member facts are aggregated once per evaluation."""
    d = decisions(mappings, keys, window, members)
    table = Table(DECISIONS, MetaData(), *(Column(c.name, c.type) for c in d.c), prefixes=["TEMPORARY"])
    return table, select(d)


def findings_select(mappings: Mappings, window: EvaluationWindow, d: Table) -> Select:
    """Rows of `findings` (FINDING_COLUMNS) from the decisions table; the time is bound at execution as
    `EVALUATED_AT`."""
    recommended = _recommended_priority(mappings, d)
    reasons = _reason_conditions(mappings, d)
    # A dual-product member without Medicaid evidence is held in review during the deeming period.
    deeming = and_(reasons["medicaid-not-evidenced"], not_(reasons["deeming-period-ended"]))
    status = case(
        (d.c.recognized == 0, "not-evaluable"),
        (or_(deeming, *(reasons[r] for r in _REVIEW_REASONS)), "review"),
        (d.c.enrolled_priority == recommended, "aligned"),
        else_="misaligned",
    )
    kind = case(
        (d.c.recognized == 0, None),
        (or_(reasons["enrolled-not-eligible"], reasons["medicaid-not-evidenced"]), "compliance"),
        (reasons["higher-priority-eligible"], "opportunity"),
        else_=None,
    )
    text = literal("")
    for code, condition in reasons.items():
        text = text + case((condition, f" {code}"), else_="")
    recommended_cents, recommended_cell = _rate_cell(mappings, d, recommended,
                                                     _recommended_plan(mappings, d, recommended))
    enrolled_cents, enrolled_cell = _rate_cell(mappings, d, d.c.enrolled_priority, literal(None))
    impact = (recommended_cents - enrolled_cents) * 12
    return select(
        d.c.patient_id,
        status,
        kind,
        product_for_priority(mappings, d.c.enrolled_priority),
        product_for_priority(mappings, recommended),
        d.c.dual_level,
        func.trim(text),
        impact,
        literal(mappings.rates.currency),
        d.c.birth_lo,
        _date(window.as_of),
        _date(window.lookback_start),
        bindparam(EVALUATED_AT, type_=BigInteger),
        recommended_cell,
        enrolled_cell,
    )


def _date(value: Any) -> ColumnElement:
    """A window's date as SQL: a literal, or already a bind parameter (`WindowParameters`)."""
    return value if isinstance(value, BindParameter) else literal(value, Date)


def products_select(mappings: Mappings, window: EvaluationWindow, d: Table) -> Select:
    """Rows of `finding_products`: (patient_id, product, priority, criteria) per eligible product, from the
    decisions table joined with the catalogue (one row per product) rather than unioned per product."""
    catalogue = union_all(*(
        select(literal(p.code).label("product"), literal(p.priority).label("priority"))
        for p in mappings.products
    )).subquery("catalogue")
    columns = valueset_columns(mappings)
    texts = [_product_text(i, p, d, window, columns) for i, p in enumerate(mappings.products)]
    is_eligible = case(*((catalogue.c.product == p.code, d.c[f"eligible_{i}"])
                         for i, p in enumerate(mappings.products)), else_=0)
    text = case(*((catalogue.c.product == p.code, texts[i]) for i, p in enumerate(mappings.products)), else_="")
    return (
        select(d.c.patient_id, catalogue.c.product, catalogue.c.priority, text)
        .select_from(d.join(catalogue, true()))
        .where(is_eligible == 1)
    )


def _product_text(i: int, product: Product, d: Any, window: EvaluationWindow,
                  columns: dict[str, str]) -> ColumnElement[str]:
    """The criteria an eligible product met: those of its first plan (in catalogue order) that takes the
    member, which the text names."""
    texts = [criteria_text(criteria(unit, d, window, columns)) for unit in product.units]
    if not product.plans:
        return texts[0]
    return case(*((d.c[f"eligible_{i}_{j}"] == 1, text) for j, text in enumerate(texts)), else_="")


PRODUCT_COLUMNS = ("patient_id", "product", "priority", "criteria")
