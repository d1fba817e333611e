"""Rate cells in SQL (SPEC §4.3 "Impact uses rate cells", `rates.json`): the PMPM of a product for a member,
from the most specific cell matching the member's region, dual segment or Medicaid aid category and age band
(a plan's cell before its product's), else the product's PMPM; with the cell's key, which the finding
records. Split from `rules.py`."""

from __future__ import annotations

from decimal import ROUND_HALF_UP
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    literal,
)

from server.alignment.areas import region_column
from server.alignment.mappings import Mappings
from server.alignment.mappings.rates import AgeBand
from server.alignment.window import EvaluationWindow

def cents(value: Any) -> ColumnElement[Any]:
    return literal(int((value * 100).to_integral_value(ROUND_HALF_UP)), BigInteger)


def in_band(band: AgeBand, d: Any, window: EvaluationWindow) -> ColumnElement[bool]:
    """The member's whole birth-date range puts their age on the evaluation date inside the band (as the age
    criteria compare, `criteria.py`): an unknown or straddling birth date matches no band."""
    parts = [d.c.birth_hi <= window.born_by_us(band.min_age)] if band.min_age else [d.c.birth_hi.is_not(None)]
    parts += [d.c.birth_lo > window.born_by_us(band.max_age + 1)] if band.max_age is not None else []
    return and_(*parts)


REGION, SEGMENT = "rate_region", "rate_segment"


def member_rate_columns(mappings: Mappings, d: Any) -> list[ColumnElement[Any]]:
    """The member's rate region (the first of `rates.json` their address lies in) and dual segment, as the
    columns `REGION` and `SEGMENT` that `rate_cell` reads, computed once per decisions row `d`."""
    regions = mappings.rates.regions
    region = case(*((d.c[region_column(r.code)] == 1, r.code) for r in regions), else_=None) if regions else literal(None)
    segment = case((d.c.dual_level.is_(None), "non-dual"), (d.c.dual_level.in_(["full", "partial"]), d.c.dual_level),
                   else_=None)
    return [region.label(REGION), segment.label(SEGMENT)]


def rate_cell(mappings: Mappings, d: Any, window: EvaluationWindow, priority: Any,
              plan: Any) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(cents, cell key) of the product at `priority` for the member (SPEC §4.3 rate cells): the most
    specific cell of the product, or of `plan`, matching the member's region, dual segment or aid category and
    age band, else the product's PMPM (its key is the product code). A member without an aid category matches
    no aid-category cell, one without a birth date no age-band cell. `d` carries `member_rate_columns`."""
    rates = mappings.rates
    region, segment = d.c[REGION], d.c[SEGMENT]
    prices, keys = [], []
    for p in mappings.products:
        plans = tuple(u.code for u in p.units if u.plan)
        matched = []
        for cell in rates.cells_for(p.code, plans):
            parts = [literal(True) if cell.product == p.code else plan == cell.product]
            parts += [region == cell.region] if cell.region else []
            parts += [segment == cell.segment] if cell.segment else []
            parts += [d.c.aid_category == cell.aid_category] if cell.aid_category else []
            parts += [in_band(rates.age_band(cell.age_band), d, window)] if cell.age_band else []

            matched.append((and_(*parts), cell))
        here = priority == p.priority
        prices.append((here, case(*((cond, cents(c.pmpm)) for cond, c in matched), else_=cents(rates.pmpm[p.code]))
                      if matched else cents(rates.pmpm[p.code])))
        keys.append((here, case(*((cond, c.key) for cond, c in matched), else_=p.code) if matched else literal(p.code)))
    return case(*prices, else_=None), case(*keys, else_=None)
