"""Churn between two projections of an ACO, and the outside providers billing the churning members.

* out: aligned to a participant TIN in the previous projection, to none now — aligned to an outside TIN
  (`aligned-outside`), no longer eligible (`ineligible`), or without qualifying services (`not-aligned`);
* in: aligned to a participant TIN now, to none before (`new`: aligned outside before or not at all).

The contracting candidates are the outside TIN/NPIs that furnished the churning-out members' qualifying
services in the current alignment period, by number of those members, then weighted allowed charges.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, exists, func, not_, select, true

from server.projection.engine import Run, eligible, qualifying_lines
from server.projection.rules import AlignmentRules
from server.projection.schema import projection_beneficiaries, projection_results

b = projection_beneficiaries.c


@dataclass(frozen=True)
class Move:
    patient_id: str
    direction: str  # in | out
    status: str  # aligned-outside | ineligible | not-aligned | new
    from_tin: str | None
    to_tin: str | None
    to_npi: str | None


@dataclass(frozen=True)
class Candidate:
    tin: str
    npi: str
    members: int
    weighted_cents: int


@dataclass(frozen=True)
class Churn:
    moves: list[Move]
    candidates: list[Candidate]


def churn(conn: Connection, rules: AlignmentRules, run: Run) -> Churn:
    cur, prev = projection_results.alias("cur"), projection_results.alias("prev")
    previous = run.previous_run or -1
    now_inside = exists().where(cur.c.run_id == run.run_id, cur.c.patient_id == prev.c.patient_id,
                                cur.c.participant == true())
    now = projection_results.alias("now")
    is_eligible = exists().where(b.aco == run.aco, b.patient_id == prev.c.patient_id, eligible(rules))
    status = case((now.c.patient_id.is_not(None), "aligned-outside"), (not_(is_eligible), "ineligible"),
                  else_="not-aligned")
    out = (select(prev.c.patient_id, status, prev.c.tin, now.c.tin, now.c.npi)
           .select_from(prev.outerjoin(now, and_(now.c.run_id == run.run_id, now.c.patient_id == prev.c.patient_id)))
           .where(prev.c.run_id == previous, prev.c.participant == true(), ~now_inside)
           .order_by(prev.c.patient_id))
    before_inside = exists().where(prev.c.run_id == previous, prev.c.patient_id == cur.c.patient_id,
                                   prev.c.participant == true())
    came = (select(cur.c.patient_id, cur.c.tin, cur.c.npi)
            .where(cur.c.run_id == run.run_id, cur.c.participant == true(), ~before_inside)
            .order_by(cur.c.patient_id))
    moves = [Move(p, "out", s, f, t, n) for p, s, f, t, n in conn.execute(out)]
    moves += [Move(p, "in", "new", None, t, n) for p, t, n in conn.execute(came)]

    lines = qualifying_lines(rules, run.aco, run.period)
    was_inside = exists().where(prev.c.run_id == previous, prev.c.patient_id == lines.c.patient_id,
                                prev.c.participant == true())
    is_inside = exists().where(cur.c.run_id == run.run_id, cur.c.patient_id == lines.c.patient_id,
                               cur.c.participant == true())
    members = func.count(func.distinct(lines.c.patient_id))
    candidates = (select(lines.c.tin, lines.c.npi, members, func.sum(lines.c.w))
                  .where(lines.c.tin.not_in(list(run.participants)), was_inside, ~is_inside)
                  .group_by(lines.c.tin, lines.c.npi)
                  .order_by(members.desc(), func.sum(lines.c.w).desc(), lines.c.tin, lines.c.npi))
    return Churn(moves, [Candidate(t, n, int(k), int(w)) for t, n, k, w in conn.execute(candidates)])


def dollars(rules: AlignmentRules, weighted_cents: int) -> float:
    """Weighted charges in dollars: the integer weights (1 and 2) as the fractions they stand for (1/3, 2/3)."""
    return round(weighted_cents / (rules.earlier_weight + rules.later_weight) / 100, 2)


def candidates_csv(rules: AlignmentRules, found: Churn) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tin", "npi", "churning_members", "weighted_allowed_dollars"])
    for c in found.candidates:
        writer.writerow([c.tin, c.npi, c.members, f"{dollars(rules, c.weighted_cents):.2f}"])
    return out.getvalue()
