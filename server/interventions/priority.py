"""The ranking of one roster's active participants for one week, in one set-based statement over the
search index (SPEC §13, §8): risk tier (the payment score of the year, from `risk_score`), ED visits
and inpatient admissions in their look-back windows (Encounters by class; Claims and
ExplanationOfBenefits by place of service or ED revenue code; one visit per patient and day, so an
Encounter and the claims billing it count once), and care-plan variance (activities of active CarePlans
past their scheduled end and not done, or still not started after their scheduled start).

Everything is as of the end of the week (`until`, exclusive): later visits and activities due later do
not count, so a past week ranks as it stood then (activity statuses are the stored ones)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Connection, text

from server.fhir.searchparams import param_hash, token_hashes
from server.interventions.config import INPUTS, PriorityConfig, Tier
from server.risk.model import PaymentYear
from server.risk.population import payment_factor_sql

DAY_US = 86_400_000_000
_VOID = ("cancelled", "entered-in-error")
_UTILIZATION_TYPES = ("Encounter", "Claim", "ExplanationOfBenefit")
_DATE_PARAM = {"Encounter": "date", "Claim": "service-date", "ExplanationOfBenefit": "service-date"}


@dataclass(frozen=True)
class Week:
    start: date  # Monday

    @classmethod
    def of(cls, day: date) -> "Week":
        return cls(day - timedelta(days=day.weekday()))

    @property
    def end(self) -> date:
        return self.start + timedelta(days=6)

    @property
    def until_us(self) -> int:
        """The first microsecond after the week (its Sunday ends at midnight UTC)."""
        return epoch_us(self.start + timedelta(days=7))


def epoch_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


@dataclass(frozen=True)
class Ranked:
    patient_id: str
    score: float | None  # None: not scored for the payment year (not a Medicare member)
    tier: Tier
    ed_visits: int
    admissions: int
    variance: int


def _in(prefix: str, values: list[int], params: dict[str, object]) -> str:
    """`:prefix_0, :prefix_1, …` bound to `values` (SQLite and PostgreSQL alike)."""
    for i, value in enumerate(values):
        params[f"{prefix}_{i}"] = value
    return ", ".join(f":{prefix}_{i}" for i in range(len(values)))


def _code_hashes(code_param: dict[str, str], codes: list[str]) -> list[int]:
    return [token_hashes(rtype, param, None, code)[0] for rtype, param in code_param.items() for code in codes]


def rank(conn: Connection, config: PriorityConfig, py: PaymentYear, group_id: str, week: Week) -> list[Ranked]:
    """The roster's active participants in priority order: tier, then ED visits, admissions, variance and
    score, all descending, then patient id."""
    factor, params = payment_factor_sql(py)
    until = week.until_us
    params.update(gid=group_id, py=py.year, until=until, day=DAY_US, active="active",
                  ed_from=until - config.windows.ed_days * DAY_US, ip_from=until - config.windows.inpatient_days * DAY_US,
                  cp_patient=param_hash("CarePlan", "patient"), cp_active=token_hashes("CarePlan", "status", None, "active")[0],
                  cp_open=param_hash("CarePlan", "open-activity-date"),
                  cp_unstarted=param_hash("CarePlan", "unstarted-activity-date"))
    ed = _code_hashes({"Encounter": "class"}, config.ed.encounter_classes) + _code_hashes(
        {"Claim": "place-of-service", "ExplanationOfBenefit": "place-of-service"}, config.ed.places_of_service) + _code_hashes(
        {"Claim": "service", "ExplanationOfBenefit": "service"}, config.ed.revenue_codes)
    ip = _code_hashes({"Encounter": "class"}, config.inpatient.encounter_classes) + _code_hashes(
        {"Claim": "place-of-service", "ExplanationOfBenefit": "place-of-service"}, config.inpatient.places_of_service)
    ed_in, ip_in = _in("ed", ed, params), _in("ip", ip, params)
    codes_in = _in("code", ed + ip, params)
    void_in = _in("void", [token_hashes(t, "status", None, s)[0] for t in _UTILIZATION_TYPES for s in _VOID], params)
    for i, t in enumerate(_UTILIZATION_TYPES):
        params[f"dp_{i}"], params[f"pp_{i}"] = param_hash(t, _DATE_PARAM[t]), param_hash(t, "patient")
    tier_case = " ".join(f"WHEN x.score >= :cut_{i} THEN {i}" for i in range(len(config.tiers) - 1))
    for i, tier in enumerate(config.tiers[:-1]):
        params[f"cut_{i}"] = tier.min_score
    tier_sql = f"CASE {tier_case} ELSE {len(config.tiers) - 1} END" if tier_case else "0"
    # An indexed probe (group_id, patient_id) per row; a join with the members CTE made SQLite build an
    # automatic index over it again for every row.
    # (COALESCE keeps SQLite, which has no statistics here, off the (group_id, decision) index.)
    member = ("EXISTS (SELECT 1 FROM roster_members rm WHERE rm.group_id = :gid AND rm.patient_id = {} "
              "AND COALESCE(rm.decision, '') = :active AND NOT rm.inactive)")
    # Events are every coded resource's, driven from `coded` (the roster is checked after: as a join driver, a
    # misjudged roster made PostgreSQL rescan `coded` per member). One branch per type, with the type and its
    # parameters as constants, so each probe is an equality on
    # the (rtype, rid, h_param) indexes. `MIN(d.lo + 0)`: on `MIN(d.lo)` SQLite's min/max shortcut walks the
    # (h_param, lo) index instead, through every row of the parameter.
    events = " UNION ALL ".join(
        f"SELECT r.target_id AS patient_id, c.ed, c.ip, (SELECT MIN(d.lo + 0) FROM idx_date d WHERE d.rtype = '{t}' "
        f"AND d.rid = c.rid AND d.h_param = :dp_{i}) AS lo FROM coded c JOIN idx_reference r ON r.rtype = '{t}' "
        f"AND r.rid = c.rid AND r.h_param = :pp_{i} AND r.target_type = 'Patient' WHERE c.rtype = '{t}' "
        f"AND NOT EXISTS (SELECT 1 FROM idx_token v WHERE v.rtype = '{t}' "
        f"AND v.rid = c.rid AND v.h_value IN ({void_in}))" for i, t in enumerate(_UTILIZATION_TYPES))
    sql = f"""
WITH members AS (
  SELECT DISTINCT patient_id FROM roster_members WHERE group_id = :gid AND decision = :active AND NOT inactive),
coded AS MATERIALIZED (
  SELECT t.rtype, t.rid, MAX(CASE WHEN t.h_value IN ({ed_in}) THEN 1 ELSE 0 END) AS ed,
         MAX(CASE WHEN t.h_value IN ({ip_in}) THEN 1 ELSE 0 END) AS ip
  FROM idx_token t WHERE t.h_value IN ({codes_in}) GROUP BY t.rtype, t.rid),
events AS MATERIALIZED (
  {events}),
ed AS (
  SELECT e.patient_id, COUNT(DISTINCT e.lo / :day) AS n FROM events e
  WHERE e.ed = 1 AND e.lo >= :ed_from AND e.lo < :until AND {member.format("e.patient_id")} GROUP BY e.patient_id),
ip AS (
  SELECT e.patient_id, COUNT(DISTINCT e.lo / :day) AS n FROM events e
  WHERE e.ip = 1 AND e.lo >= :ip_from AND e.lo < :until AND {member.format("e.patient_id")} GROUP BY e.patient_id),
cp AS (
  SELECT r.target_id AS patient_id,
         SUM(CASE WHEN d.h_param = :cp_open AND d.hi < :until THEN 1
                  WHEN d.h_param = :cp_unstarted AND d.lo < :until AND d.hi >= :until THEN 1 ELSE 0 END) AS n
  FROM idx_date d
  JOIN idx_token s ON s.rtype = 'CarePlan' AND s.rid = d.rid AND s.h_value = :cp_active
  JOIN idx_reference r ON r.rtype = 'CarePlan' AND r.rid = d.rid AND r.h_param = :cp_patient AND r.target_type = 'Patient'
  WHERE d.rtype = 'CarePlan' AND d.h_param IN (:cp_open, :cp_unstarted) AND {member.format("r.target_id")}
  GROUP BY r.target_id),
-- One row per member and count, summed per member: a union, not joins (SQLite scanned a joined CTE per row).
tallies AS (
  SELECT patient_id, 0 AS ed, 0 AS ip, 0 AS cp FROM members
  UNION ALL SELECT patient_id, n, 0, 0 FROM ed
  UNION ALL SELECT patient_id, 0, n, 0 FROM ip
  UNION ALL SELECT patient_id, 0, 0, n FROM cp)
SELECT x.patient_id, x.score, {tier_sql} AS tier, x.ed, x.ip, x.cp FROM (
  SELECT t.patient_id, SUM(t.ed) AS ed, SUM(t.ip) AS ip, SUM(t.cp) AS cp,
         (SELECT SUM({factor} * s.score) FROM risk_score s
          WHERE s.patient_id = t.patient_id AND s.payment_year = :py AND s.basis = 'all') AS score
  FROM tallies t GROUP BY t.patient_id) x
ORDER BY tier, x.ed DESC, x.ip DESC, x.cp DESC, COALESCE(x.score, -1) DESC, x.patient_id"""
    return [Ranked(r.patient_id, None if r.score is None else float(r.score), config.tiers[int(r.tier)], int(r.ed),
                   int(r.ip), int(r.cp)) for r in conn.execute(text(sql), params)]


def refreshed(conn: Connection, py: PaymentYear, group_id: str) -> dict[str, int | None]:
    """When each input was last refreshed (epoch microseconds, None when there is none): the roster's
    latest risk evaluation for the payment year, and the newest stored Encounter, claim
    (Claim or ExplanationOfBenefit) and CarePlan."""
    newest = "SELECT MAX(lu) FROM resources WHERE rtype = :t"
    risk = conn.execute(text(
        "SELECT MAX(rm.run) FROM risk_member rm JOIN roster_members m ON m.patient_id = rm.patient_id "
        "WHERE m.group_id = :gid AND rm.payment_year = :py"), {"gid": group_id, "py": py.year}).scalar()
    claims = [conn.execute(text(newest), {"t": t}).scalar() for t in ("Claim", "ExplanationOfBenefit")]
    found = {"risk": risk, "encounters": conn.execute(text(newest), {"t": "Encounter"}).scalar(),
             "claims": max((c for c in claims if c is not None), default=None),
             "carePlans": conn.execute(text(newest), {"t": "CarePlan"}).scalar()}
    return {name: (None if found[name] is None else int(found[name])) for name in INPUTS}


def stale_inputs(config: PriorityConfig, found: dict[str, int | None], week: Week) -> list[str]:
    """Why the inputs cannot rank this week: each one never loaded, or refreshed longer before the
    week's end than its configured maximum age."""
    reasons = []
    for name in INPUTS:
        at, limit = found[name], config.max_age_days.days(name)
        if at is None:
            reasons.append(f"{name}: no data (never refreshed)")
        elif at < week.until_us - (limit + 1) * DAY_US:
            day = datetime.fromtimestamp(at / 1e6, tz=timezone.utc).date().isoformat()
            reasons.append(f"{name}: last refreshed {day}, more than {limit} days before the week ending "
                           f"{week.end.isoformat()}")
    return reasons
