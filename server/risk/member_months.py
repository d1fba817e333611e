"""Member months per provider organization × line of business, derived from the stored Coverage periods
and the members' attribution (SPEC §10), for `$capitation-adjustment` when its rates file leaves them out.

One statement over every member, grouped in SQL:
* the line of business of each active coverage is the one the alignment engine reads
  (`facts.coverage_select`: the product the plan class or SOPT code names, else the SOPT table's);
* a member is attributed to the Organization their Patient names as `generalPractitioner` (the
  nominated primary care provider, which FHIR R4 allows to be an Organization); a member naming several
  counts for each, one naming none for no one;
* a calendar month counts one member month for a member, provider and line of business when a coverage
  of that line of business is in force on the first day of the month. CMS pays a Medicare Advantage
  organization one advance monthly payment per enrollee for each month (Medicare Managed Care Manual
  ch. 8 §10, read 2026-12-03 in a third-party copy), and MA elections take effect on the first day of a
  month (ch. 2 §30), so a month the member joins after its first day is not counted and the month they
  leave in is. PlanFit applies the same rule to Medicaid and commercial coverage: UNCONFIRMED for those
  programs (mappings/README.md), whose contracts may prorate partial months;
* only months whose first day is on or before the evaluation date count (a future month is not yet a
  member month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import BigInteger, Connection, Integer, and_, func, literal, or_, select, union_all

from server.alignment.facts import COVERAGE_COLUMNS, EVERYONE, coverage_select
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import Mappings
from server.alignment.window import EvaluationWindow
from server.fhir import searchparams
from server.fhir.dates import date_range
from server.store.schema import idx_reference


def _day_us(day: date) -> int:
    return date_range(day.isoformat())[0]


@dataclass(frozen=True)
class CoverageYears(EvaluationWindow):
    """`coverage_select` keeps ended coverages back to `months_back_us(…)`; here: back to 1 January of
    `first_year`, so every coverage in force in some counted month is read."""

    first_year: int = 0

    def months_back_us(self, months: int) -> int:
        return _day_us(date(self.first_year, 1, 1))


def member_months(conn: Connection, mappings: Mappings, keys: IndexKeys, as_of: date,
                  years: tuple[int, ...]) -> dict[tuple[str, str], dict[int, int]]:
    """(provider Organization id, line of business) → {year: member months} for the calendar `years`."""
    firsts = [(year, date(year, month, 1)) for year in years for month in range(1, 13)
              if date(year, month, 1) <= as_of]
    if not firsts:
        return {}
    last = max(day for _, day in firsts)
    window = CoverageYears(as_of=last, lookback_months=0, first_year=min(years))
    coverages = coverage_select(mappings, keys, window, EVERYONE).subquery("coverage")
    coverage = dict(zip(COVERAGE_COLUMNS, coverages.c))
    months = union_all(*(select(literal(year, Integer).label("year"), literal(_day_us(day), BigInteger).label("first_us"))
                         for year, day in firsts)).subquery("months")
    x = idx_reference.c
    attributed = (select(x.rid.label("patient_id"), x.target_id.label("provider"))
                  .where(x.rtype == "Patient", x.h_param == searchparams.lookup("Patient", "general-practitioner").h_param,
                         x.target_type == "Organization")
                  .distinct().subquery("attributed"))
    in_force = or_(coverage["period_lo"].is_(None),
                   and_(coverage["period_lo"] <= months.c.first_us, coverage["period_hi"] >= months.c.first_us))
    counted = (select(attributed.c.provider, coverage["line_of_business"].label("lob"), months.c.year,
                      coverage["patient_id"], months.c.first_us)
               .select_from(attributed.join(coverages, coverage["patient_id"] == attributed.c.patient_id).join(months, in_force))
               .where(coverage["line_of_business"].is_not(None))
               .distinct().subquery("counted"))
    rows = conn.execute(select(counted.c.provider, counted.c.lob, counted.c.year, func.count())
                        .group_by(counted.c.provider, counted.c.lob, counted.c.year))
    out: dict[tuple[str, str], dict[int, int]] = {}
    for provider, lob, year, count in rows:
        out.setdefault((provider, lob), {})[year] = count
    return out
