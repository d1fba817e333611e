"""Two levers side by side (SPEC §10): what a member's product change is worth a year, and what complete
coding is worth a year, with product alignment sequenced first.

* product change: the alignment finding's estimated annual impact, (rate of the recommended product −
  rate of the enrolled one) × 12;
* RAF uplift: (payment score from all sources − from claims alone) × the PMPM of the member's rate
  cell × 12, where the rate cell is the product the member will be in once aligned: the recommended
  product when a change is recommended, else the enrolled one (product alignment first).
Rates are those of `mappings/rates.json` (illustrative unless replaced).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from server.alignment.findings import Finding
from server.alignment.mappings import Rates

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Levers:
    product_change: Decimal | None  # per year; None without a recommended change or a known rate
    raf_uplift: Decimal | None  # per year; None without a rate for the rate cell
    rate_cell: str | None
    uplift: float
    currency: str

    @property
    def first(self) -> str:
        """Which lever to pull first: product alignment whenever a change is recommended."""
        return "product-change" if self.product_change is not None else "raf-uplift"


def member_levers(finding: Finding | None, uplift: float, rates: Rates) -> Levers:
    enrolled = finding.enrolled_product if finding else None
    recommended = finding.recommended_product if finding else None
    change = finding.annual_impact if finding and recommended and recommended != enrolled else None
    cell = recommended if change is not None else enrolled
    pmpm = rates.pmpm.get(cell) if cell else None
    value = (Decimal(repr(uplift)) * pmpm * 12).quantize(CENT, rounding=ROUND_HALF_UP) if pmpm is not None else None
    return Levers(change, value, cell, uplift, rates.currency)


def levers_parameter(levers: Levers) -> dict:
    parts = [{"name": "first", "valueCode": levers.first},
             {"name": "upliftScore", "valueDecimal": round(levers.uplift, 4)}]
    if levers.product_change is not None:
        parts.append({"name": "productChangeAnnual", "valueMoney": {"value": float(levers.product_change),
                                                                    "currency": levers.currency}})
    if levers.rate_cell:
        parts.append({"name": "rateCell", "valueCode": levers.rate_cell})
    if levers.raf_uplift is not None:
        parts.append({"name": "rafUpliftAnnual", "valueMoney": {"value": float(levers.raf_uplift),
                                                                "currency": levers.currency}})
    return {"name": "levers", "part": parts}
