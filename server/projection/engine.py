"""The projection itself, set-based: one INSERT … SELECT aligns every beneficiary of an ACO, none per row.

Over the ACO's claim lines (`projection_claims`) and enrollment flags (`projection_beneficiaries`), with
the rules of `mappings/projection/alignment.json` (`rules.py`, each rule's source cited there):

1. `lines`: qualifying primary care services (HCPCS in the code list) dated in the alignment period, of
   eligible beneficiaries only (eligibility cleaning), each allowed charge multiplied by its alignment
   year's weight (earlier 1, later 2: the 1/3 : 2/3 weighting in exact integers);
2. the specialist pool: when primary care specialists furnished at least the configured share (10 %) of
   a beneficiary's weighted charges, only theirs count, else only the others';
3. the plurality of weighted charges per billing TIN, ties to the TIN that furnished the most recent
   service (then the lower TIN); within it, the NPI the same way;
4. a voluntary designation of an eligible beneficiary takes precedence, unless the beneficiary's
   qualifying services in the period were all furnished outside the designated TIN.

Every beneficiary aligned (to a participant TIN or an outside one) lands in `projection_results`, so the
next projection's changeType and the churn are joins against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, exists, false, func, insert, literal, not_, select, true

from server.fhir.errors import FhirError
from server.projection.rules import AlignmentPeriod, AlignmentRules
from server.projection.schema import projection_beneficiaries, projection_claims, projection_results, projection_runs

c = projection_claims.c
b = projection_beneficiaries.c
r = projection_results.c


@dataclass(frozen=True)
class Run:
    run_id: int
    previous_run: int | None
    aco: str
    performance_year: int
    period: AlignmentPeriod
    participants: tuple[str, ...]  # TINs, sorted


def eligible(rules: AlignmentRules):
    """Eligibility cleaning as a WHERE clause over `projection_beneficiaries`."""
    return and_(*(b[flag] == true() for flag in rules.requires), *(b[flag] == false() for flag in rules.excludes))


def qualifying_lines(rules: AlignmentRules, aco: str, period: AlignmentPeriod):
    """CTE `lines`: the eligible beneficiaries' qualifying services in the period, with weighted charges
    and the beneficiary's voluntary designation."""
    weight = case((c.service_date >= period.later_start, rules.later_weight), else_=rules.earlier_weight)
    return (
        select(c.patient_id, c.tin, c.npi, c.specialist, c.service_date, (c.allowed_cents * weight).label("w"),
               b.voluntary_tin, b.voluntary_npi)
        .join(projection_beneficiaries, and_(b.aco == c.aco, b.patient_id == c.patient_id))
        .where(c.aco == aco, c.service_date >= period.start, c.service_date <= period.end,
               c.hcpcs.in_(rules.codes), eligible(rules))
        .cte("lines")
    )


def project(conn: Connection, rules: AlignmentRules, run: Run) -> None:
    """Align every eligible beneficiary of the run's ACO into `projection_results`.

    One pass of sorts, no joins between aggregates (SQLite would nest-loop them): claim lines → cells
    (patient, TIN, NPI, specialist) → window sums per patient (the specialist pool, the designated TIN's
    charges) → the pool's cells with window sums per TIN → one ranking whose first row per patient is the
    winning TIN's winning NPI."""
    lines = qualifying_lines(rules, run.aco, run.period)
    cell = (select(lines.c.patient_id, lines.c.tin, lines.c.npi, lines.c.specialist, lines.c.voluntary_tin,
                   lines.c.voluntary_npi, func.sum(lines.c.w).label("w"), func.max(lines.c.service_date).label("last"))
            .group_by(lines.c.patient_id, lines.c.tin, lines.c.npi, lines.c.specialist, lines.c.voluntary_tin,
                      lines.c.voluntary_npi)
            .subquery("cell"))
    by_patient = [cell.c.patient_id]
    specialist_w = func.sum(case((cell.c.specialist == true(), cell.c.w), else_=0)).over(partition_by=by_patient)
    total_w = func.sum(cell.c.w).over(partition_by=by_patient)
    designated = cell.c.tin == cell.c.voluntary_tin
    patient_level = select(
        cell,
        and_(specialist_w > 0, specialist_w * 100 >= total_w * rules.specialist_share_percent).label("use_specialist"),
        func.sum(case((designated, cell.c.w), else_=0)).over(partition_by=by_patient).label("designated_w"),
        func.max(case((designated, 1), else_=0)).over(partition_by=by_patient).label("designated_any"),
    ).subquery("patient_level")
    p = patient_level.c
    by_tin = [p.patient_id, p.tin]
    pooled = (select(patient_level, func.sum(p.w).over(partition_by=by_tin).label("tin_w"),
                     func.max(p.last).over(partition_by=by_tin).label("tin_last"))
              .where(p.specialist == p.use_specialist).subquery("pooled"))
    q = pooled.c
    # Plurality of weighted charges per TIN, ties to the most recent service, then the lower TIN
    # (PlanFit's deterministic last resort); within the TIN the NPI the same way.
    rank = func.row_number().over(partition_by=[q.patient_id], order_by=[
        q.tin_w.desc(), q.tin_last.desc(), q.tin.asc(), q.w.desc(), q.last.desc(), q.npi.asc()])
    ranked = select(pooled, rank.label("rk")).subquery("ranked")
    k = ranked.c
    participants = list(run.participants)
    keeps = and_(k.voluntary_tin.is_not(None), k.designated_any == 1)  # a designation, kept by a service there
    tin = case((keeps, k.voluntary_tin), else_=k.tin)
    served = (select(literal(run.run_id), k.patient_id, tin, case((keeps, k.voluntary_npi), else_=k.npi),
                     case((keeps, "voluntary"), else_="claims"), case((keeps, k.designated_w), else_=k.tin_w),
                     tin.in_(participants))
              .where(k.rk == 1))
    # Designations of eligible beneficiaries without any qualifying service hold too.
    any_line = exists().where(c.aco == b.aco, c.patient_id == b.patient_id, c.service_date >= run.period.start,
                              c.service_date <= run.period.end, c.hcpcs.in_(rules.codes))
    unserved = (select(literal(run.run_id), b.patient_id, b.voluntary_tin, b.voluntary_npi, literal("voluntary"),
                       literal(0), b.voluntary_tin.in_(participants))
                .where(b.aco == run.aco, eligible(rules), b.voluntary_tin.is_not(None), ~any_line))
    columns = ["run_id", "patient_id", "tin", "npi", "basis", "weighted_cents", "participant"]
    conn.execute(insert(projection_results).from_select(columns, served.union_all(unserved)))


def previous_run(conn: Connection, aco: str, before: int | None = None) -> int | None:
    """The ACO's latest projection (before run `before`, when given)."""
    t = projection_runs.c
    stmt = select(func.max(t.run_id)).where(t.aco == aco)
    if before is not None:
        stmt = stmt.where(t.run_id < before)
    return conn.execute(stmt).scalar_one_or_none()


@dataclass(frozen=True)
class Summary:
    eligible: int
    by_basis: dict[str, int]  # aligned to a participant TIN, by basis (claims | voluntary)
    outside: int  # aligned to an outside TIN
    lost_voluntary: int  # designations lost: only outside services in the period


def summary(conn: Connection, rules: AlignmentRules, run: Run) -> Summary:
    counted = conn.execute(select(r.participant, r.basis, func.count()).where(r.run_id == run.run_id)
                           .group_by(r.participant, r.basis)).all()
    by_basis = {basis: n for inside, basis, n in counted if inside}
    outside = sum(n for inside, _basis, n in counted if not inside)
    kept = exists().where(r.run_id == run.run_id, r.patient_id == b.patient_id, r.basis == "voluntary")
    lost = conn.execute(select(func.count()).select_from(projection_beneficiaries).where(
        b.aco == run.aco, eligible(rules), b.voluntary_tin.is_not(None), not_(kept))).scalar_one()
    total = conn.execute(select(func.count()).select_from(projection_beneficiaries)
                         .where(b.aco == run.aco, eligible(rules))).scalar_one()
    return Summary(total, by_basis, outside, lost)


def load_run(conn: Connection, rules: AlignmentRules, aco: str, run_id: str | None) -> Run:
    """A stored projection of the ACO (its latest when `run_id` is None), or 404."""
    t = projection_runs.c
    wanted = previous_run(conn, aco) if run_id is None else (int(run_id) if str(run_id).isdigit() else None)
    row = conn.execute(select(projection_runs).where(t.aco == aco, t.run_id == wanted)).first() if wanted else None
    if row is None:
        raise FhirError.of(404, "not-found", f"No projection {'run ' + str(run_id) + ' ' if run_id else ''}of ACO {aco}")
    return Run(row.run_id, previous_run(conn, aco, row.run_id), aco, row.performance_year,
               rules.period(row.performance_year),
               tuple(row.participants.split(",")))
