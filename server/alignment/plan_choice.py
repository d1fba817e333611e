"""Which plan (`InsurancePlan` id) a finding names for the enrolled and the recommended product (SPEC §4.3
"the recommendation names the plan"), as SQL over the decisions row. Split from `rate_cells.py`.

The enrolled plan of a product with several plans (the C-SNPs) is a fact of enrolment, not of eligibility:
* a Coverage in force that names one of the plans (`Coverage.class` of type plan = the plan id) names it;
* a Coverage that names only the product: the plan is resolved when exactly one of the product's plans is
  offered where the member lives (a plan's coverage area holds one of the member's addresses; a plan
  without an area is offered everywhere), since an MA enrollee resides in the plan's service area (42 CFR
  422.50(a)(3)(i), GPO text http://edocket.access.gpo.gov/cfr_2002/octqtr/42cfr422.50.htm, read 2026-12-03;
  the (a)(3)(ii) exception, a plan's own members turning 65 outside its area, is not modelled);
* otherwise (no address, or several plans offered there) the plan is unknown: the finding says so (reason
  `enrolled-plan-unknown`) and names none. The member's conditions never pick the plan: whether the enrolled
  plan's grouping still fits them is what the finding checks, so it cannot be assumed.
A product without plans is its own InsurancePlan.

The recommended plan is the enrolled plan when the recommended product is the enrolled one and that plan
takes the member; else the first plan (catalogue order) that takes the member."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal

from server.alignment.areas import area_column
from server.alignment.mappings import Mappings, Product
from server.alignment.member_facts import named_column


def _offered_here(product: Product, f: Any) -> list[tuple[str, ColumnElement[Any]]]:
    """(plan id, 0/1: offered where the member lives) per plan of the product."""
    return [(u.code, f.c[area_column(u.code)] if u.coverage_area else literal(1)) for u in product.units]


def enrolled_plan(mappings: Mappings, f: Any) -> ColumnElement[Any]:
    """The InsurancePlan id of the enrolled product (module docstring); NULL when it is unknown."""
    named, by_area, own = [], [], []
    for p in mappings.products:
        enrolled = f.c.enrolled_priority == p.priority
        if not p.plans:
            own.append((enrolled, p.code))
            continue
        named += [(and_(enrolled, f.c[named_column(u.code)] == 1), u.code) for u in p.units]
        offered = _offered_here(p, f)
        count = offered[0][1]
        for _, flag in offered[1:]:
            count = count + flag
        only_one = and_(enrolled, f.c.has_address == 1, count == 1)
        by_area += [(and_(only_one, flag == 1), code) for code, flag in offered]
    whens = named + by_area + own
    return case(*whens, else_=None) if whens else literal(None)


def enrolled_plan_unknown(mappings: Mappings, d: Any) -> ColumnElement[bool]:
    """Enrolled in a product with several plans, none of which the data names or the area resolves."""
    with_plans = [p.priority for p in mappings.products if p.plans]
    if not with_plans:
        return literal(False)
    return and_(d.c.enrolled_priority.in_(with_plans), d.c.enrolled_plan.is_(None))


def recommended_plan(mappings: Mappings, d: Any, recommended: ColumnElement[Any]) -> ColumnElement[Any]:
    """The InsurancePlan id of the recommended product (module docstring)."""
    stays = [(and_(recommended == p.priority, d.c.enrolled_priority == p.priority, d.c.enrolled_plan == u.code,
                   d.c[f"eligible_{i}_{j}"] == 1), u.code)
             for i, p in enumerate(mappings.products) if p.plans for j, u in enumerate(p.units)]
    first = [(and_(recommended == p.priority, d.c[f"eligible_{i}_{j}"] == 1), u.code)
             for i, p in enumerate(mappings.products) if p.plans for j, u in enumerate(p.units)]
    own = [(recommended == p.priority, p.code) for p in mappings.products if not p.plans]
    return case(*stays, *first, *own, else_=None)
