"""A product's (or plan's) eligibility rule as criteria over the member-facts row (`member_facts.py`): each
rule of the vocabulary (mappings/README.md) becomes a condition and the `name:value` text recorded when it is
met. Ages are three-valued birth-date bounds: a criterion is unknown when the birth-date range straddles it.
Split from `rules.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, literal, not_, or_, true

from server.alignment.areas import area_criterion
from server.alignment.mappings import Product, RuleUnit
from server.alignment.member_facts import flag_column
from server.alignment.window import EvaluationWindow



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
    rule, window = unit.eligibility, window.on(f)
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
        out += [Criterion(f.c[flag_column(code)] == 0, _text("excludes_state", code)) for code in sorted(state.excludes)]
    if rule.requires_any_valueset:
        # A State code that confirms eligibility stands in for the diagnosis (SPEC §4.3: the State decides).
        flags = [(f"valueset:{vs}", f.c[columns[vs]] == 1) for vs in rule.requires_any_valueset]
        flags += [(f"state_status:{code}", f.c[flag_column(code)] == 1) for code in sorted(state.confirms)] if state else []
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
    return or_(*(f.c[flag_column(code)] == 1 for code in sorted(state.confirms)))


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
