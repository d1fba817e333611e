"""The quarterly enrollment audit (SPEC §12, issue 22 item 1), as set-based SQL over the findings.

Closing a quarter takes a snapshot of the misaligned members (the `misaligned` cohort: the
product-alignment numerator) with their enrolled and recommended product, line of business and impact,
in one INSERT … SELECT. Findings are kept current, so a snapshot is the findings as they stand when the
quarter is closed (their evaluation date is recorded with it); closing a quarter again replaces its
snapshot. The reconciliation against the previous quarter's snapshot is three anti/semi-joins:

* `new`: misaligned now, not in the previous quarter's snapshot;
* `resolved`: in the previous quarter's snapshot, not misaligned now;
* `persisting`: in both.

Without a snapshot of the previous quarter every member is `new`. The strata beyond the product-alignment
measure's own (enrolled, recommended, enrolled × recommended, status) are one GROUP BY each: line of
business and plan of the member's active coverages (a member counts under each of theirs) and kind (each
reason code the finding gives).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Select, and_, case, delete, exists, func, insert, literal, select, union_all

from server.alignment.index_keys import IndexKeys
from server.alignment.rules import REASONS
from server.cohorts.definitions import cohort_members_select
from server.fhir.errors import FhirError
from server.measures.populations import Stratum
from server.store.alignment_schema import finding_coverage, findings
from server.store.audit_schema import audit_quarter_members, audit_quarters
from server.store.schema import idx_token

CHANGES = ("new", "resolved", "persisting")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Quarter":
        match = _QUARTER.match(text.strip())
        if not match or not 1900 <= int(match[1]) <= 2999:
            raise FhirError.of(400, "invalid", f"A quarter is written like 2026Q3, not {text[:20]!r}", "quarter")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, day: date) -> "Quarter":
        return cls(day.year, (day.month - 1) // 3 + 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        following = self.following.start
        return date.fromordinal(following.toordinal() - 1)

    @property
    def previous(self) -> "Quarter":
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    @property
    def following(self) -> "Quarter":
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)


@dataclass(frozen=True)
class Change:
    change: str  # new | resolved | persisting
    patient_id: str
    enrolled: str | None
    recommended: str | None
    line_of_business: str | None
    impact_cents: int | None


def take_snapshot(conn: Connection, quarter: Quarter, as_of: date, taken_at_us: int) -> None:
    """Replace the quarter's snapshot with the misaligned members now (in the caller's transaction)."""
    key = str(quarter)
    conn.execute(delete(audit_quarter_members).where(audit_quarter_members.c.quarter == key))
    conn.execute(delete(audit_quarters).where(audit_quarters.c.quarter == key))
    f = findings.c
    lob = (select(func.min(finding_coverage.c.line_of_business))
           .where(finding_coverage.c.patient_id == f.patient_id).scalar_subquery())
    conn.execute(insert(audit_quarter_members).from_select(
        ["quarter", "patient_id", "enrolled_product", "recommended_product", "line_of_business", "annual_impact_cents"],
        select(literal(key), f.patient_id, f.enrolled_product, f.recommended_product, lob, f.annual_impact_cents)
        .where(f.patient_id.in_(cohort_members_select("misaligned")))))
    members = conn.execute(select(func.count()).select_from(findings).where(f.status != "not-evaluable")).scalar_one()
    conn.execute(insert(audit_quarters).values(quarter=key, as_of=as_of, taken_at=taken_at_us, members=members))


def snapshot_taken(conn: Connection, quarter: Quarter) -> bool:
    return conn.execute(select(audit_quarters.c.quarter).where(audit_quarters.c.quarter == str(quarter))).first() is not None


def reconciliation_select(quarter: Quarter) -> Select:
    """Every change between the previous quarter's snapshot and this one's, by change then patient id."""
    now, before = audit_quarter_members.alias("now"), audit_quarter_members.alias("before")
    key, previous = str(quarter), str(quarter.previous)

    def rows(change: str, side, other, keep_matched: bool) -> Select:
        matched = exists().where(other.c.quarter == (previous if side is now else key),
                                 other.c.patient_id == side.c.patient_id)
        return select(literal(change).label("change"), side.c.patient_id, side.c.enrolled_product,
                      side.c.recommended_product, side.c.line_of_business, side.c.annual_impact_cents).where(
            side.c.quarter == (key if side is now else previous), matched if keep_matched else ~matched)

    union = union_all(rows("new", now, before, False), rows("resolved", before, now, False),
                      rows("persisting", now, before, True)).subquery("changes")
    order = case({change: i for i, change in enumerate(CHANGES)}, value=union.c.change)
    return select(union).order_by(order, union.c.patient_id)


def reconciliation(conn: Connection, quarter: Quarter) -> list[Change]:
    return [Change(*row) for row in conn.execute(reconciliation_select(quarter))]


def extra_strata(conn: Connection, keys: IndexKeys) -> dict[str, list[Stratum]]:
    """Line of business, plan and kind strata over the covered members (the measure's initial population):
    `initial` counts the members with the value, `numerator` the misaligned among them."""
    f = findings.c
    covered = f.status != "not-evaluable"
    misaligned = case((f.patient_id.in_(cohort_members_select("misaligned")), 1), else_=0)

    def per_value(source: Select) -> list[Stratum]:
        values = source.subquery("member_values")
        rows = conn.execute(select(values.c.value, func.count(), func.sum(misaligned))
                            .join_from(values, findings, f.patient_id == values.c.patient_id)
                            .where(covered).group_by(values.c.value).order_by(values.c.value)).all()
        return [Stratum(v, n, int(m or 0)) for v, n, m in rows]

    v = finding_coverage.c
    plan = idx_token.alias("plan")
    lobs = select(v.patient_id, v.line_of_business.label("value")).where(v.line_of_business.is_not(None)).distinct()
    plans = (select(v.patient_id, plan.c.code.label("value"))
             .join(plan, and_(plan.c.rtype == "Coverage", plan.c.rid == v.coverage_id,
                              plan.c.h_param == keys.coverage_plan)).where(plan.c.code.is_not(None)).distinct())
    padded = literal(" ") + f.reasons + literal(" ")
    kinds = conn.execute(select(*(func.sum(case((padded.like(f"% {r} %"), 1), else_=0)) for r in REASONS),
                                *(func.sum(case((padded.like(f"% {r} %"), misaligned), else_=0)) for r in REASONS))
                         .where(covered)).one()
    n = len(REASONS)
    return {
        "line-of-business": per_value(lobs),
        "plan": per_value(plans),
        "kind": [Stratum(r, int(kinds[i] or 0), int(kinds[n + i] or 0)) for i, r in enumerate(REASONS) if kinds[i]],
    }
