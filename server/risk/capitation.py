"""Capitation by line of business (SPEC §10): how PMPM capitation should move between a provider
organization's lines of business when their risk differs, under four approaches.

Inputs (validated whole before anything is computed; a bad row is named with its field):
* rates, one row per provider organization × line of business: current PMPM, base-year member months
  and average risk, and year-1 member months and average risk (the new scores at year end). Member
  months left empty (or columns left out) are derived from Coverage and attribution
  (`member_months.py`) before anything is computed;
* optionally risk transfers, one row per line of business: CMS/ACA risk-transfer payments (negative:
  the LOB pays in), total cost of care, and whether the LOB is experience-rated.

Approaches, per provider (revenue R = Σ member months × PMPM over its LOBs):
* `non-revenue-neutral`: factor = average risk ÷ 1.000 (the standard population); revenue follows risk.
* `retrospective-revenue-neutral`: prospective risk adjustment against a baseline. The provider's
  base-year average risk is set to 1.000, relative risk = LOB risk ÷ provider risk, and the factors are
  calibrated so base-year revenue is unchanged: factor₀ = relative risk × R₀ ÷ Σ mm₀ × PMPM × relative
  risk. At year end the year-1 scores against the same baseline give factor₁ (same calibration
  constant, so revenue now follows risk); resettlement = Σ mm₁ × PMPM × (factor₁ − factor₀), and
  factor₁ is next year's LOB factor.
* `retrospective-prospective-revenue-neutral`: the same reallocation recalibrated every year: factor₁
  is calibrated on year 1 so that year-1 revenue is unchanged; resettlements only move money between
  LOBs (they add up to zero when member months do not change).
* `risk-transfer`: risk from risk-transfer payments: ratio = transfers ÷ total cost of care per LOB,
  against the all-LOB ratio (Σ transfers ÷ Σ total cost of care over the LOBs that are not
  experience-rated); factor = (1 + ratio) ÷ (1 + all-LOB ratio); experience-rated LOBs keep 1.000.

The approaches follow the issue's description of risk-adjusted capitation between lines of business
(SPEC §10); the ratio form of the risk-transfer factor is PlanFit's reading of "against the all-LOB
average" (mappings/README.md marks it).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterable

APPROACHES = ("non-revenue-neutral", "retrospective-revenue-neutral", "retrospective-prospective-revenue-neutral",
              "risk-transfer")
RATE_FIELDS = ("provider", "lob", "pmpm", "base_member_months", "base_risk", "year1_member_months", "year1_risk")
MONTH_FIELDS = ("base_member_months", "year1_member_months")
TRANSFER_FIELDS = ("lob", "transfers", "total_cost_of_care", "experience_rated")
MAX_ROWS = 100_000
_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
FACTOR = Decimal("0.000001")
CENT = Decimal("0.01")


class InputError(ValueError):
    """A refused input: `where` names the file, row (1 = first data row) and field."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class RateRow:
    provider: str
    lob: str
    pmpm: Decimal
    base_member_months: Decimal | None  # None: to derive from Coverage and attribution
    base_risk: Decimal
    year1_member_months: Decimal | None
    year1_risk: Decimal

    @property
    def derived(self) -> bool:
        return self.base_member_months is None or self.year1_member_months is None


@dataclass(frozen=True)
class TransferRow:
    lob: str
    transfers: Decimal
    total_cost_of_care: Decimal
    experience_rated: bool


@dataclass(frozen=True)
class Adjustment:
    approach: str
    provider: str
    lob: str
    member_months: Decimal  # base year
    average_risk: Decimal  # base year (risk-transfer: 1 + transfers ÷ total cost of care)
    relative_risk: Decimal  # against the provider's base-year average (risk-transfer: against the all-LOB ratio)
    pmpm: Decimal
    factor: Decimal  # prospective LOB factor
    adjusted_pmpm: Decimal
    year1_factor: Decimal  # from the year-1 scores; next year's LOB factor
    resettlement: Decimal  # year-end settlement of year 1

    def row(self) -> list[str]:
        return [self.approach, self.provider, self.lob, _text(self.member_months), _text(self.average_risk),
                _text(self.relative_risk), _text(self.pmpm), _text(self.factor), _text(self.adjusted_pmpm),
                _text(self.year1_factor), _text(self.resettlement)]


CSV_HEADER = ["approach", "provider", "lob", "member_months", "average_risk", "relative_risk", "current_pmpm",
              "factor", "adjusted_pmpm", "year1_factor", "resettlement"]


def _text(value: Decimal) -> str:
    return format(value, "f")


# -- parsing and validation ----------------------------------------------------------------------------------

def _rows(text: str, name: str, fields: tuple[str, ...], required: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [f for f in required if f not in header]
    if missing:
        raise InputError(f"{name} header", f"missing column {missing[0]} (columns: {', '.join(fields)})")
    unknown = [f for f in header if f not in fields]
    if unknown:
        raise InputError(f"{name} header", f"unknown column {unknown[0]} (columns: {', '.join(fields)})")
    rows = []
    for i, row in enumerate(reader, start=1):
        if i > MAX_ROWS:
            raise InputError(f"{name} row {i}", f"more than {MAX_ROWS} rows")
        if None in row:
            raise InputError(f"{name} row {i}", "more values than columns")
        rows.append(row)
    if not rows:
        raise InputError(name, "no rows")
    return rows


def _code(row: dict[str, str], where: str, field: str) -> str:
    value = (row.get(field) or "").strip()
    if not value or len(value) > 64 or not set(value) <= _CODE_CHARS:
        raise InputError(f"{where}, field {field}", f"{value!r} is not a code (letters, digits, - . _; at most 64)")
    return value


def _number(row: dict[str, str], where: str, field: str, *, positive: bool = False, signed: bool = False) -> Decimal:
    text = (row.get(field) or "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{where}, field {field}", f"{text!r} is not a number") from None
    if not value.is_finite():
        raise InputError(f"{where}, field {field}", f"{text!r} is not a finite number")
    if positive and value <= 0:
        raise InputError(f"{where}, field {field}", f"{text} must be greater than 0")
    if not signed and value < 0:
        raise InputError(f"{where}, field {field}", f"{text} must not be negative")
    return value


def _months(row: dict[str, str], where: str, field: str) -> Decimal | None:
    return None if not (row.get(field) or "").strip() else _number(row, where, field)


def parse_rates(text: str) -> list[RateRow]:
    """The rates file's rows; a member-month value left empty (or its column left out) is None."""
    out, seen = [], set()
    required = tuple(f for f in RATE_FIELDS if f not in MONTH_FIELDS)
    for i, row in enumerate(_rows(text, "rates", RATE_FIELDS, required), start=1):
        where = f"rates row {i}"
        provider, lob = _code(row, where, "provider"), _code(row, where, "lob")
        if (provider, lob) in seen:
            raise InputError(f"{where}, field lob", f"{provider} × {lob} is given twice")
        seen.add((provider, lob))
        out.append(RateRow(provider, lob, _number(row, where, "pmpm", positive=True),
                           _months(row, where, "base_member_months"), _number(row, where, "base_risk", positive=True),
                           _months(row, where, "year1_member_months"), _number(row, where, "year1_risk", positive=True)))
    return out


def with_member_months(rows: list[RateRow], derived: dict[tuple[str, str], tuple[int, int]],
                       everywhere: bool) -> list[RateRow]:
    """Rows whose missing member months (every row's, when `everywhere`) are the derived (base year,
    year 1) counts; a provider × LOB without attributed coverage has none."""
    out = []
    for r in rows:
        base, year1 = derived.get((r.provider, r.lob), (0, 0))
        out.append(replace(
            r, base_member_months=Decimal(base) if everywhere or r.base_member_months is None else r.base_member_months,
            year1_member_months=Decimal(year1) if everywhere or r.year1_member_months is None else r.year1_member_months))
    return out


def _check_member_months(rates: list[RateRow]) -> None:
    for provider in sorted({r.provider for r in rates}):
        if not any(r.base_member_months for r in rates if r.provider == provider):
            raise InputError("rates", f"provider {provider} has no base-year member months")


def parse_transfers(text: str) -> list[TransferRow]:
    out, seen = [], set()
    for i, row in enumerate(_rows(text, "riskTransfers", TRANSFER_FIELDS, TRANSFER_FIELDS[:3]), start=1):
        where = f"riskTransfers row {i}"
        lob = _code(row, where, "lob")
        if lob in seen:
            raise InputError(f"{where}, field lob", f"{lob} is given twice")
        seen.add(lob)
        flag = (row.get("experience_rated") or "false").strip().lower()
        if flag not in ("true", "false"):
            raise InputError(f"{where}, field experience_rated", f"{flag!r} is not true or false")
        out.append(TransferRow(lob, _number(row, where, "transfers", signed=True),
                               _number(row, where, "total_cost_of_care", positive=True), flag == "true"))
    if all(r.experience_rated for r in out):
        raise InputError("riskTransfers", "every line of business is experience-rated: nothing to adjust")
    return out


# -- the approaches ------------------------------------------------------------------------------------------

def _q(value: Decimal, unit: Decimal) -> Decimal:
    return value.quantize(unit, rounding=ROUND_HALF_UP)


def _provider_adjustments(rows: list[RateRow]) -> Iterable[Adjustment]:
    base_revenue = sum(r.base_member_months * r.pmpm for r in rows)
    base_mm = sum(r.base_member_months for r in rows)
    provider_risk = sum(r.base_member_months * r.base_risk for r in rows) / base_mm
    # Calibration on the base year: Σ mm₀ × PMPM × relative risk × k = R₀.
    weighted = sum(r.base_member_months * r.pmpm * r.base_risk / provider_risk for r in rows)
    k0 = base_revenue / weighted
    year1_revenue = sum(r.year1_member_months * r.pmpm for r in rows)
    weighted1 = sum(r.year1_member_months * r.pmpm * r.year1_risk / provider_risk for r in rows)
    k1 = year1_revenue / weighted1 if weighted1 else k0
    for r in rows:
        relative, relative1 = r.base_risk / provider_risk, r.year1_risk / provider_risk
        yield _adjustment("non-revenue-neutral", r, r.base_risk, relative, r.base_risk, r.year1_risk)
        yield _adjustment("retrospective-revenue-neutral", r, r.base_risk, relative, relative * k0, relative1 * k0)
        yield _adjustment("retrospective-prospective-revenue-neutral", r, r.base_risk, relative, relative * k0,
                          relative1 * k1)


def _adjustment(approach: str, r: RateRow, risk: Decimal, relative: Decimal, factor: Decimal,
                year1_factor: Decimal) -> Adjustment:
    factor, year1_factor = _q(factor, FACTOR), _q(year1_factor, FACTOR)
    return Adjustment(approach, r.provider, r.lob, r.base_member_months, _q(risk, FACTOR), _q(relative, FACTOR), r.pmpm,
                      factor, _q(r.pmpm * factor, CENT), year1_factor,
                      _q(r.year1_member_months * r.pmpm * (year1_factor - factor), CENT))


def _transfer_adjustments(rates: list[RateRow], transfers: list[TransferRow]) -> Iterable[Adjustment]:
    adjusted = [t for t in transfers if not t.experience_rated]
    overall = sum(t.transfers for t in adjusted) / sum(t.total_cost_of_care for t in adjusted)
    by_lob = {t.lob: t for t in transfers}
    for r in rates:
        t = by_lob.get(r.lob)
        if t is None:
            continue
        ratio = t.transfers / t.total_cost_of_care
        factor = Decimal(1) if t.experience_rated else (1 + ratio) / (1 + overall)
        yield Adjustment("risk-transfer", r.provider, r.lob, r.base_member_months, _q(1 + ratio, FACTOR),
                         _q(factor, FACTOR), r.pmpm, _q(factor, FACTOR), _q(r.pmpm * _q(factor, FACTOR), CENT),
                         _q(factor, FACTOR), Decimal("0.00"))


def adjustments(rates: list[RateRow], transfers: list[TransferRow] | None) -> list[Adjustment]:
    """Every approach's rows; the member months must be known (`with_member_months`)."""
    _check_member_months(rates)
    out: list[Adjustment] = []
    for provider in sorted({r.provider for r in rates}):
        out += _provider_adjustments([r for r in rates if r.provider == provider])
    if transfers:
        unknown = sorted({t.lob for t in transfers} - {r.lob for r in rates})
        if unknown:
            raise InputError("riskTransfers", f"line of business {unknown[0]} has no rate row")
        out += _transfer_adjustments(rates, transfers)
    order = {a: i for i, a in enumerate(APPROACHES)}
    return sorted(out, key=lambda a: (order[a.approach], a.provider, a.lob))


def to_csv(rows: list[Adjustment]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(a.row() for a in rows)
    return buffer.getvalue()


def totals(rows: list[Adjustment]) -> dict[tuple[str, str], dict[str, Any]]:
    """(approach, provider) → base-year revenue before and after, and the year-1 resettlement."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for a in rows:
        t = out.setdefault((a.approach, a.provider), {"current": Decimal(0), "adjusted": Decimal(0),
                                                      "resettlement": Decimal(0)})
        t["current"] += a.member_months * a.pmpm
        t["adjusted"] += a.member_months * a.adjusted_pmpm
        t["resettlement"] += a.resettlement
    return out
