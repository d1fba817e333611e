"""Member months per provider organization × line of business, derived from the stored Coverage periods
and the members' attribution (SPEC §10), for `$capitation-adjustment` when its rates file leaves them out.

One statement over every member, grouped in SQL:
* the line of business of each active coverage is the one the alignment engine reads
  (`facts.coverage_select`: the product the plan class or SOPT code names, else the SOPT table's);
* a calendar month counts one member month for a member, provider and line of business when a coverage
  of that line of business is in force on the first day of the month. CMS pays a Medicare Advantage
  organization one advance monthly payment per enrollee for each month (Medicare Managed Care Manual
  ch. 8 §10, read 2026-12-03 in a third-party copy), and MA elections take effect on the first day of a
  month (ch. 2 §30), so a month the member joins after its first day is not counted and the month they
  leave in is. PlanFit applies the same rule to Medicaid and commercial coverage: UNCONFIRMED for those
  programs (mappings/README.md), whose contracts may prorate partial months;
* only months whose first day is on or before the evaluation date count (a future month is not yet a
  member month).

Attribution, month by month, from two sources:
* **ATR rosters** (`roster_members`, the members of the stored Da Vinci ATR Groups, SPEC §11): a member row
  attributes the member to its `attributedProvider` when that is an Organization, else to the list's
  `managingEntity` (ATR: one list per contract between payer and provider; PlanFit's lists are managed for
  the contracted provider organization, whose practitioners a row may name), for the months whose first
  day its `member.period` holds (open ends are open). A dropped row counts only for its period; an inactive
  row without an end date counts for no month. Every stored list counts, whatever its status, each
  (member, provider, month) once.
* **`Patient.generalPractitioner`** naming an Organization (the nominated primary care provider, which
  FHIR R4 allows to be an Organization), with no period: a member naming several counts for each, one
  naming none for no one.

**The roster wins**: for a month some roster row attributes the member (to anyone), `generalPractitioner`
is not read. The roster is the attribution payer and provider agreed in their contract, dated per member,
which is what capitation pays on; `generalPractitioner` is the member's nomination, undated, so it only
speaks for the months no roster covers (a member who never appears on a roster keeps the old behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import BigInteger, Connection, Integer, String, and_, case, exists, func, literal, or_, select, union_all

from server.alignment.facts import COVERAGE_COLUMNS, EVERYONE, coverage_select
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import Mappings
from server.alignment.window import EvaluationWindow
from server.fhir import searchparams
from server.fhir.dates import date_range
from server.store.roster_schema import roster_members
from server.store.schema import idx_reference, resources

ORGANIZATION = "Organization/"


def _day_us(day: date) -> int:
    return date_range(day.isoformat())[0]


@dataclass(frozen=True)
class CoverageYears(EvaluationWindow):
    """`coverage_select` keeps ended coverages back to `months_back_us(…)`; here: back to 1 January of
    `first_year`, so every coverage in force in some counted month is read."""

    first_year: int = 0

    def months_back_us(self, months: int) -> int:
        return _day_us(date(self.first_year, 1, 1))


def _rostered():
    """(patient_id, provider, period_start, period_end) of every roster row that can attribute a month."""
    entity = idx_reference.alias("managing_entity")
    m, r, g = roster_members.c, resources.c, entity.c
    managing = searchparams.lookup("Group", "managing-entity").h_param
    provider = case((m.provider_ref.startswith(ORGANIZATION), func.substr(m.provider_ref, len(ORGANIZATION) + 1)),
                    else_=g.target_id)
    return (select(m.patient_id, provider.label("provider"), m.period_start, m.period_end)
            .select_from(roster_members
                         .join(resources, and_(r.rtype == "Group", r.rid == m.group_id, r.deleted.is_(False)))
                         .outerjoin(entity,
                                    and_(g.rtype == "Group", g.rid == m.group_id, g.h_param == managing,
                                         g.target_type == "Organization")))
            .where(or_(m.inactive.is_(False), m.period_end.is_not(None)))
            .cte("rostered"))


def _holds(rostered, first_day) -> object:
    """The roster row's period holds the month's first day (ISO dates compare as text)."""
    return and_(or_(rostered.c.period_start.is_(None), rostered.c.period_start <= first_day),
                or_(rostered.c.period_end.is_(None), rostered.c.period_end >= first_day))


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
    months = union_all(*(select(literal(year, Integer).label("year"), literal(_day_us(day), BigInteger).label("first_us"),
                                literal(day.isoformat(), String).label("first_day"))
                         for year, day in firsts)).subquery("months")
    in_force = and_(coverage["line_of_business"].is_not(None),
                    or_(coverage["period_lo"].is_(None),
                        and_(coverage["period_lo"] <= months.c.first_us, coverage["period_hi"] >= months.c.first_us)))
    covered = (select(coverage["patient_id"], coverage["line_of_business"].label("lob"), months.c.year,
                      months.c.first_us, months.c.first_day)
               .select_from(coverages.join(months, in_force)).distinct().cte("covered"))
    rostered = _rostered()
    by_roster = (select(rostered.c.provider, covered.c.lob, covered.c.year, covered.c.patient_id, covered.c.first_us)
                 .select_from(covered.join(rostered, and_(rostered.c.patient_id == covered.c.patient_id,
                                                          _holds(rostered, covered.c.first_day))))
                 .where(rostered.c.provider.is_not(None)))
    x = idx_reference.c
    named = (select(x.rid.label("patient_id"), x.target_id.label("provider"))
             .where(x.rtype == "Patient", x.h_param == searchparams.lookup("Patient", "general-practitioner").h_param,
                    x.target_type == "Organization")
             .distinct().subquery("named"))
    unrostered = ~exists().where(rostered.c.patient_id == covered.c.patient_id, _holds(rostered, covered.c.first_day))
    by_practitioner = (select(named.c.provider, covered.c.lob, covered.c.year, covered.c.patient_id, covered.c.first_us)
                       .select_from(covered.join(named, named.c.patient_id == covered.c.patient_id))
                       .where(unrostered))
    counted = union_all(by_roster, by_practitioner).subquery("counted")
    distinct = select(counted).distinct().subquery("distinct_months")
    rows = conn.execute(select(distinct.c.provider, distinct.c.lob, distinct.c.year, func.count())
                        .group_by(distinct.c.provider, distinct.c.lob, distinct.c.year))
    out: dict[tuple[str, str], dict[int, int]] = {}
    for provider, lob, year, count in rows:
        out.setdefault((provider, lob), {})[year] = count
    return out
