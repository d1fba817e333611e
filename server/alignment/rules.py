"""The eligibility rules of SPEC §4.2, as SQL generated from `mappings/products.json`.

One implementation for every product: each rule of the vocabulary (mappings/README.md) becomes a
criterion over a member-facts row (programs, age bounds, dual level, value sets). The member-facts row
aggregates the stages `facts.py` wrote (`finding_coverage`, `finding_categories`) plus the birth date.
From it the findings row is derived:

* eligible = every criterion of the product met; the recommended product is the eligible one with the
  highest priority; the enrolled product is the highest-priority product named by an active coverage;
* status: `not-evaluable` without an active coverage that gives a line of business; `review` when the
  data conflicts or is unknown (conflicting coverages, dual level unknown or contradictory, a dual
  status code on a member who is not dual, eligibility hanging on an unknown birth date, no eligible
  product); else `aligned` when enrolled = recommended, else `misaligned`;
* reason codes saying why (REASONS), and the annual impact from the rate table.

Ages are compared as birth-date bounds (`EvaluationWindow.born_by_us`), three-valued: a criterion is
met when the whole birth-date range satisfies it, unknown when the range (a year-only birthDate, or
none) straddles the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Select,
    Subquery,
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

from server.alignment.facts import Members, lobs_with, priority_of, product_for_priority
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import PROGRAMS, Mappings, Product
from server.alignment.window import EvaluationWindow
from server.store.alignment_schema import finding_categories, finding_coverage
from server.store.schema import idx_date, resources

# Reason codes, in the order they are listed on a finding.
REASONS = (
    "no-active-coverage",  # no active Coverage at all
    "coverage-not-recognized",  # active coverage, but none names a product or a line of business
    "conflicting-coverage",  # two active coverages name different products of one program
    "dual-level-unknown",  # Medicare + Medicaid without a dual status code that has a level
    "dual-level-conflict",  # full and partial dual status codes at once
    "dual-code-not-dual",  # a dual status code with a level, but not both Medicare and Medicaid
    "age-unknown",  # a product's eligibility depends on a birth date that is missing or imprecise
    "no-eligible-product",  # covered, but no product's rule holds
    "no-enrolled-product",  # covered (e.g. Medicaid fee-for-service) without a named product
    "enrolled-not-eligible",  # the enrolled product's rule does not hold
    "higher-priority-eligible",  # the enrolled product's rule holds, a higher-priority product's too
)


def valueset_columns(mappings: Mappings) -> dict[str, str]:
    """Value-set id → its flag column in the facts row (ids may hold characters SQL names cannot)."""
    return {vs: f"vs_{i}" for i, vs in enumerate(sorted(mappings.value_sets))}


def _products_with(mappings: Mappings, program: str) -> list[str]:
    return [p.code for p in mappings.products if program in p.programs]


def member_facts(mappings: Mappings, keys: IndexKeys, members: Members) -> Subquery:
    """One row per member: birth-date bounds, programs, coverage counts, enrolled priority, the number of
    distinct products per program (conflicts), dual code levels, and a 0/1 flag per value set."""
    fc, fcat = finding_coverage.c, finding_categories.c
    coverage = (
        select(
            fc.patient_id,
            func.count().label("coverages"),
            func.count(fc.line_of_business).label("recognized"),
            *(func.max(case((fc.line_of_business.in_(lobs_with(p)), 1), else_=0)).label(f"has_{p}") for p in PROGRAMS),
            *(func.count(distinct(case((fc.product.in_(_products_with(mappings, p)), fc.product), else_=None)))
              .label(f"products_{p}") for p in PROGRAMS),
            func.max(priority_of(mappings, fc.product)).label("enrolled_priority"),
            func.sum(case((fc.dual_level == "full", 1), else_=0)).label("full_codes"),
            func.sum(case((fc.dual_level == "partial", 1), else_=0)).label("partial_codes"),
        )
        .where(*members.where(fc.patient_id))
        .group_by(fc.patient_id)
        .subquery("coverage")
    )
    columns = valueset_columns(mappings)
    categories = (
        select(fcat.patient_id,
               *(func.max(case((fcat.category == vs, 1), else_=0)).label(col) for vs, col in columns.items()))
        .where(*members.where(fcat.patient_id))
        .group_by(fcat.patient_id)
        .subquery("categories")
    )
    m, birth = resources.alias("member"), idx_date.alias("birth")
    counts = ("coverages", "recognized", *(f"has_{p}" for p in PROGRAMS), *(f"products_{p}" for p in PROGRAMS),
              "full_codes", "partial_codes")
    return (
        select(
            m.c.rid.label("patient_id"),
            birth.c.lo.label("birth_lo"),
            birth.c.hi.label("birth_hi"),
            coverage.c.enrolled_priority,
            *(func.coalesce(coverage.c[name], 0).label(name) for name in counts),
            *(func.coalesce(categories.c[col], 0).label(col) for col in columns.values()),
        )
        .select_from(
            m.outerjoin(birth, and_(birth.c.rtype == "Patient", birth.c.rid == m.c.rid,
                                    birth.c.h_param == keys.patient_birthdate))
            .outerjoin(coverage, coverage.c.patient_id == m.c.rid)
            .outerjoin(categories, categories.c.patient_id == m.c.rid)
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


def criteria(product: Product, f: Any, window: EvaluationWindow, columns: dict[str, str]) -> list[Criterion]:
    """The product's rule (vocabulary of mappings/README.md) as criteria over the facts row `f`."""
    rule = product.eligibility
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
    if rule.requires_any_valueset:
        flags = [(vs, f.c[columns[vs]] == 1) for vs in rule.requires_any_valueset]
        matched = [case((flag, f" valueset:{vs}"), else_="") for vs, flag in flags]
        text = matched[0]
        for part in matched[1:]:
            text = text + part
        out.append(Criterion(or_(*(flag for _, flag in flags)), text))
    return out


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
    """The facts row plus, per product i (priority order), `eligible_i` and `age_blocked_i` (0/1),
    and the member's dual flag, dual level and conflict flag."""
    f = member_facts(mappings, keys, members)
    columns = valueset_columns(mappings)
    per_product = []
    for i, product in enumerate(mappings.products):
        items = criteria(product, f, window, columns)
        per_product.append(_int(eligible(items)).label(f"eligible_{i}"))
        per_product.append(_int(blocked_by_age(items)).label(f"age_blocked_{i}"))
    conflict = or_(*(f.c[f"products_{p}"] > 1 for p in PROGRAMS))
    return select(
        f,
        *per_product,
        _int(is_dual(f)).label("dual"),
        member_dual_level(f).label("dual_level"),
        _int(conflict).label("conflict"),
    ).subquery("decisions")


def _recommended_priority(mappings: Mappings, d: Any) -> ColumnElement[Any]:
    return case(*((d.c[f"eligible_{i}"] == 1, p.priority) for i, p in enumerate(mappings.products)), else_=None)


def _enrolled_eligible(mappings: Mappings, d: Any) -> ColumnElement[bool]:
    return or_(*(and_(d.c.enrolled_priority == p.priority, d.c[f"eligible_{i}"] == 1)
                 for i, p in enumerate(mappings.products)))


def _rate_cents(mappings: Mappings, priority: Any) -> ColumnElement[Any]:
    cents = {p.priority: int((mappings.rates.pmpm[p.code] * 100).to_integral_value(ROUND_HALF_UP))
             for p in mappings.products}
    return case(*((priority == prio, literal(value, BigInteger)) for prio, value in cents.items()), else_=None)


def _reason_conditions(mappings: Mappings, d: Any) -> dict[str, ColumnElement[bool]]:
    recommended = _recommended_priority(mappings, d)
    covered, recognized = d.c.coverages > 0, d.c.recognized > 0
    dual = d.c.dual == 1
    full, partial = d.c.full_codes > 0, d.c.partial_codes > 0
    enrolled_eligible = _enrolled_eligible(mappings, d)
    age_blocked = or_(*(d.c[f"age_blocked_{i}"] == 1 for i in range(len(mappings.products))))
    conditions = {
        "no-active-coverage": not_(covered),
        "coverage-not-recognized": and_(covered, not_(recognized)),
        "conflicting-coverage": and_(recognized, d.c.conflict == 1),
        "dual-level-unknown": and_(dual, not_(full), not_(partial)),
        "dual-level-conflict": and_(dual, full, partial),
        "dual-code-not-dual": and_(recognized, not_(dual), or_(full, partial)),
        "age-unknown": and_(recognized, age_blocked),
        "no-eligible-product": and_(recognized, recommended.is_(None)),
        "no-enrolled-product": and_(recognized, d.c.enrolled_priority.is_(None)),
        "enrolled-not-eligible": and_(d.c.enrolled_priority.is_not(None), not_(enrolled_eligible)),
        "higher-priority-eligible": and_(enrolled_eligible, recommended > d.c.enrolled_priority),
    }
    assert tuple(conditions) == REASONS
    return conditions


_REVIEW_REASONS = ("conflicting-coverage", "dual-level-unknown", "dual-level-conflict", "dual-code-not-dual",
                   "age-unknown", "no-eligible-product")

FINDING_COLUMNS = ("patient_id", "status", "enrolled_product", "recommended_product", "dual_level", "reasons",
                   "annual_impact_cents", "currency", "birth_lo", "as_of", "lookback_start", "evaluated_at")


EVALUATED_AT = "evaluated_at"


def findings_select(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Select:
    """Rows of `findings` (FINDING_COLUMNS); the time is bound at execution as `EVALUATED_AT`."""
    d = decisions(mappings, keys, window, members)
    recommended = _recommended_priority(mappings, d)
    reasons = _reason_conditions(mappings, d)
    status = case(
        (d.c.recognized == 0, "not-evaluable"),
        (or_(*(reasons[r] for r in _REVIEW_REASONS)), "review"),
        (d.c.enrolled_priority == recommended, "aligned"),
        else_="misaligned",
    )
    text = literal("")
    for code, condition in reasons.items():
        text = text + case((condition, f" {code}"), else_="")
    impact = (_rate_cents(mappings, recommended) - _rate_cents(mappings, d.c.enrolled_priority)) * 12
    return select(
        d.c.patient_id,
        status,
        product_for_priority(mappings, d.c.enrolled_priority),
        product_for_priority(mappings, recommended),
        d.c.dual_level,
        func.trim(text),
        impact,
        literal(mappings.rates.currency),
        d.c.birth_lo,
        literal(window.as_of, Date),
        literal(window.lookback_start, Date),
        bindparam(EVALUATED_AT, type_=BigInteger),
    )


def products_select(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Select:
    """Rows of `finding_products`: (patient_id, product, priority, criteria) per eligible product.

    A member row is joined with the catalogue (one row per product) rather than unioned per product, so
    the member facts are computed once."""
    d = decisions(mappings, keys, window, members)
    catalogue = union_all(*(
        select(literal(p.code).label("product"), literal(p.priority).label("priority"))
        for p in mappings.products
    )).subquery("catalogue")
    columns = valueset_columns(mappings)
    texts = [criteria_text(criteria(p, d, window, columns)) for p in mappings.products]
    is_eligible = case(*((catalogue.c.product == p.code, d.c[f"eligible_{i}"])
                         for i, p in enumerate(mappings.products)), else_=0)
    text = case(*((catalogue.c.product == p.code, texts[i]) for i, p in enumerate(mappings.products)), else_="")
    return (
        select(d.c.patient_id, catalogue.c.product, catalogue.c.priority, text)
        .select_from(d.join(catalogue, true()))
        .where(is_eligible == 1)
    )


PRODUCT_COLUMNS = ("patient_id", "product", "priority", "criteria")
