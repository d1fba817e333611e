"""Population totals of a payment year's risk, set-based over the `risk_*` tables (SPEC §10, §8): members
scored, mean payment scores from claims and from all sources, the total RAF uplift, and the coding gaps
by evidence status and kind (closed: claimed this year; pending: not claimed, but a claim of this year that
codes it is not yet adjudicated; open historic: claimed the year before, not this year; open suspected:
clinical evidence only), as each member's report counts them (results.py)."""

from __future__ import annotations

from dataclasses import dataclass

from decimal import Decimal

from sqlalchemy import Connection, text

from server.alignment.mappings import Rates
from server.risk.model import PaymentYear
from server.risk.results import EVIDENCE_CC_SQL


@dataclass(frozen=True)
class PopulationRisk:
    members: int
    mean_claims: float
    mean_all: float
    total_uplift: float
    members_with_uplift: int
    open_historic: int
    open_suspected: int
    closed: int
    pending: int
    product_change_annual: Decimal  # Σ over every member with a recommended change (alignment findings)
    raf_uplift_annual: Decimal  # Σ uplift × PMPM of the rate cell × 12 (levers.py), Medicare members


def payment_factor_sql(py: PaymentYear) -> tuple[str, dict[str, object]]:
    """SQL: the factor turning one model's raw score into its share of the payment score, and its bound values."""
    whens = " ".join(f"WHEN :model_{i} THEN :factor_{i}" for i in range(len(py.models)))
    params: dict[str, object] = {}
    for i, m in enumerate(py.models):
        params[f"model_{i}"], params[f"factor_{i}"] = m.version, m.weight / m.normalization * (1 - py.coding_intensity)
    return "CASE s.version " + whens + " ELSE 0 END", params


def _rate(rates: Rates, product: str) -> tuple[str, dict[str, object]]:
    """SQL: the PMPM rate of the product that `product` (an SQL expression) names, and its bound values."""
    cells = sorted(rates.pmpm.items())
    whens = " ".join(f"WHEN :cell_{i} THEN :rate_{i}" for i in range(len(cells)))
    params: dict[str, object] = {}
    for i, (code, rate) in enumerate(cells):
        params[f"cell_{i}"], params[f"rate_{i}"] = code, float(rate)
    return "CASE " + product + " " + whens + " END", params


# A recommended product that differs from the enrolled one.
_CHANGED = "(f.recommended_product IS NOT NULL AND f.recommended_product <> COALESCE(f.enrolled_product, ''))"


def _levers(conn: Connection, py: PaymentYear, rates: Rates) -> tuple[Decimal, Decimal]:
    """The two levers over the population, with the member-level rules of `levers.py`."""
    factor, factor_params = payment_factor_sql(py)
    rate, rate_params = _rate(rates, "CASE WHEN " + _CHANGED + " THEN f.recommended_product ELSE f.enrolled_product END")
    change = conn.execute(text(
        "SELECT COALESCE(SUM(f.annual_impact_cents), 0) FROM findings f WHERE " + _CHANGED)).scalar_one()
    uplift = conn.execute(text(
        "WITH p AS (SELECT s.patient_id, "
        "SUM(CASE WHEN s.basis = 'all' THEN 1 ELSE -1 END * s.score * (" + factor + ")) AS uplift "
        "FROM risk_score s WHERE s.payment_year = :year AND s.basis IN ('all', 'claims') GROUP BY s.patient_id) "
        "SELECT COALESCE(SUM(p.uplift * (" + rate + ") * 12), 0) FROM p JOIN findings f ON f.patient_id = p.patient_id"
    ), {"year": py.year, **factor_params, **rate_params}).scalar_one()
    return Decimal(change) / 100, Decimal(repr(float(uplift))).quantize(Decimal("0.01"))


def population_risk(conn: Connection, py: PaymentYear, rates: Rates) -> PopulationRisk:
    factor, factor_params = payment_factor_sql(py)
    scores = conn.execute(text(
        "WITH p AS (SELECT s.patient_id, "
        "SUM(CASE WHEN s.basis = 'claims' THEN s.score * (" + factor + ") ELSE 0 END) AS claims, "
        "SUM(CASE WHEN s.basis = 'all' THEN s.score * (" + factor + ") ELSE 0 END) AS everything "
        "FROM risk_score s WHERE s.payment_year = :year GROUP BY s.patient_id) "
        "SELECT COUNT(*), COALESCE(AVG(claims), 0), COALESCE(AVG(everything), 0), "
        "COALESCE(SUM(everything - claims), 0), "
        "COALESCE(SUM(CASE WHEN everything - claims > 0.0000005 THEN 1 ELSE 0 END), 0) FROM p"),
        {"year": py.year, **factor_params}).one()
    gaps = dict(((r.kind, r.n) for r in conn.execute(text(
        "WITH k AS (SELECT patient_id, version, cc, "
        "MAX(CASE WHEN basis = 'claims' THEN 1 ELSE 0 END) AS claimed, "
        "MAX(CASE WHEN basis = 'prior' THEN 1 ELSE 0 END) AS prior "
        "FROM risk_cc WHERE payment_year = :year GROUP BY patient_id, version, cc), "
        "p AS (SELECT DISTINCT e.patient_id, e.version, e.cc FROM (" + EVIDENCE_CC_SQL + ") e "
        "WHERE e.pending AND NOT e.prior), "
        "g AS (SELECT CASE WHEN k.claimed = 1 THEN 'closed' WHEN p.cc IS NOT NULL THEN 'pending' "
        "WHEN k.prior = 1 THEN 'historic' ELSE 'suspected' END AS kind FROM k "
        "LEFT JOIN p ON p.patient_id = k.patient_id AND p.version = k.version AND p.cc = k.cc) "
        "SELECT kind, COUNT(*) AS n FROM g GROUP BY kind"), {"year": py.year})))
    change, uplift = _levers(conn, py, rates)
    return PopulationRisk(scores[0], float(scores[1]), float(scores[2]), float(scores[3]), int(scores[4]),
                          gaps.get("historic", 0), gaps.get("suspected", 0), gaps.get("closed", 0),
                          gaps.get("pending", 0), change, uplift)
