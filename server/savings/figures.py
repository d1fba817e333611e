"""The set-based reads behind a settlement and a payment-assurance report: aggregates grouped in SQL (by
basis, by lag month, by service month), never a row per beneficiary or claim in Python."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, func, select

from server.savings.arithmetic import Cohort
from server.savings.inputs import BASES
from server.savings.schema import RISK_SCALE, savings_beneficiaries, savings_claims
from server.store.roster_schema import roster_members

b, c, m = savings_beneficiaries.c, savings_claims.c, roster_members.c


def cohorts(conn: Connection, aco: str) -> list[Cohort]:
    rows = conn.execute(select(b.basis, func.count(), func.sum(b.months), func.sum(b.months * b.risk))
                        .where(b.aco == aco).group_by(b.basis)).all()
    found = {basis: Cohort(basis, n, int(months or 0), Decimal(int(risk or 0)) / RISK_SCALE)
             for basis, n, months, risk in rows}
    return [found[basis] for basis in BASES if basis in found]


def spend_cents(conn: Connection, aco: str, first_month: int, last_month: int, received_by: int | None = None) -> int:
    """Paid on claims served in [first_month, last_month] (month indexes), received by `received_by`."""
    where = [c.aco == aco, c.service_month >= first_month, c.service_month <= last_month]
    if received_by is not None:
        where.append(c.received_month <= received_by)
    return int(conn.execute(select(func.coalesce(func.sum(c.paid_cents), 0)).where(*where)).scalar_one())


@dataclass(frozen=True)
class LagProfile:
    """Claim counts by lag in months (received month − service month) among run-out-complete claims."""

    by_lag: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_lag.values())

    def completion(self, elapsed: int) -> Decimal | None:
        """Share of a service month's claims received within `elapsed` months; None: nothing to measure."""
        if not self.total:
            return None
        return Decimal(sum(n for lag, n in self.by_lag.items() if lag <= elapsed)) / self.total


def lag_profile(conn: Connection, aco: str, complete_through: int, received_by: int) -> LagProfile:
    """The lag distribution of claims served up to `complete_through` (old enough to have run out)."""
    lag = (c.received_month - c.service_month).label("lag")
    rows = conn.execute(select(lag, func.count()).where(c.aco == aco, c.service_month <= complete_through,
                                                        c.received_month <= received_by).group_by(lag)).all()
    return LagProfile({int(k): int(n) for k, n in rows})


def received_by_service_month(conn: Connection, aco: str, first_month: int, last_month: int,
                              received_by: int) -> dict[int, tuple[int, int]]:
    """Service month → (claims received, paid cents), as of `received_by`."""
    rows = conn.execute(select(c.service_month, func.count(), func.sum(c.paid_cents))
                        .where(c.aco == aco, c.service_month >= first_month, c.service_month <= last_month,
                               c.received_month <= received_by).group_by(c.service_month)).all()
    return {int(month): (int(n), int(paid)) for month, n, paid in rows}


@dataclass(frozen=True)
class CohortMatch:
    attributed: int  # beneficiaries of the ACO's savings file
    locked: int  # present members of the locked roster
    only_attributed: int  # attributed, not in the locked cohort
    only_locked: int  # in the locked cohort, not attributed


def match_locked(conn: Connection, aco: str, group_id: str) -> CohortMatch:
    """The ACO's attributed beneficiaries against the roster's present members, by Patient id."""
    locked = select(m.patient_id).where(m.group_id == group_id, m.inactive.is_(False)).distinct().subquery()
    attributed = select(b.patient_id).where(b.aco == aco).subquery()
    count = lambda q: int(conn.execute(select(func.count()).select_from(q)).scalar_one())  # noqa: E731
    both = select(attributed.c.patient_id).join(locked, locked.c.patient_id == attributed.c.patient_id).subquery()
    n_att, n_locked, n_both = count(attributed), count(locked), count(both)
    return CohortMatch(n_att, n_locked, n_att - n_both, n_locked - n_both)
