"""Plan coverage areas (SPEC §4.3, issue 17): where a plan is offered, and whether a member lives there.

A plan's area is a list of parts, each a US state (USPS code) or one ZIP code; a plan without parts is
offered everywhere. As FHIR, an area is `InsurancePlan.coverageArea` → `Location` resources whose
`address` gives the state and, for a ZIP part, the `postalCode` (R4 InsurancePlan.coverageArea is
Reference(Location); Da Vinci PDex Plan-Net profiles it the same way), see `plans.py`.

The member's side is read from the addresses' states and ZIP codes kept at write time in
`alignment_member_codes` (`patient_facts.py`, from the `address-state` and `address-postalcode` R4 search
parameters): a member is inside a part when one of their addresses has that ZIP (its first 5 digits) or
that state. A member with no address at all is not excluded: the
criterion is then met as `coverage_area:address-unknown`, shown on the finding, since the plan checks
residence at enrolment and most clinical feeds omit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict
from sqlalchemy import ColumnElement, and_, case, false, func, or_

from server.data_files import matching
from server.store.alignment_schema import ADDRESS_POSTALCODE, ADDRESS_STATE


@dataclass(frozen=True)
class AreaPart:
    """One part of a coverage area: a whole state, or one ZIP code (with its state). Validated as a field of
    a mapping file (`products.json` `coverage_area`); built unvalidated from stored Locations (plans.py)."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)
    state: Annotated[str, matching(r"^[A-Z]{2}$", "a USPS state code (two upper-case letters)")]
    postal_code: Annotated[str, matching(r"^[0-9]{5}$", "a 5-digit ZIP code")] | None = None
    location: str | None = None  # the Location id it is published as; from the file: location_id()

    def __post_init__(self) -> None:
        if self.location is None and self.state:
            object.__setattr__(self, "location", location_id(self.state, self.postal_code))


def location_id(state: str, postal_code: str | None) -> str:
    """The id of the seeded Location of an area part: `area-ny`, `area-ny-10001`."""
    return "area-" + state.lower() + (f"-{postal_code}" if postal_code else "")


def area_column(code: str) -> str:
    """The facts-row column of a product's or plan's area (their codes hold no `_`: these never collide)."""
    return "area_" + code.replace("-", "_")


def region_column(code: str) -> str:
    """The facts-row column of a rate region (`rates.json` regions)."""
    return "region_" + code.replace("-", "_")


def area_columns(units: tuple[Any, ...], regions: tuple[Any, ...], codes: Any) -> list[ColumnElement[int]]:
    """Aggregates over a member's `alignment_member_codes` rows (`codes`, their columns): `has_address` (1
    when the member has any), per product or plan (`RuleUnit`) with a coverage area its `area_column` (1
    when an address lies inside the area), and per rate region its `region_column` (1 when an address lies
    in the region)."""
    is_state, is_zip = codes.param == ADDRESS_STATE, codes.param == ADDRESS_POSTALCODE
    zip5 = func.substr(codes.code, 1, 5)

    def inside(part: AreaPart) -> ColumnElement[bool]:
        if not part.state:  # its Location is gone: the part contains no one
            return false()
        if part.postal_code:
            return and_(is_zip, zip5 == part.postal_code)
        return and_(is_state, codes.code == part.state.lower())

    def in_region(part: Any) -> ColumnElement[bool]:
        if not part.zip3:
            return and_(is_state, codes.code == part.state.lower())
        return and_(is_zip, func.substr(codes.code, 1, 3).in_(part.zip3))

    columns = [func.max(case((or_(is_state, is_zip), 1), else_=0)).label("has_address")]
    columns += [func.max(case((or_(*(inside(part) for part in p.coverage_area)), 1), else_=0)).label(area_column(p.code))
                for p in units if p.coverage_area]
    columns += [func.max(case((or_(*(in_region(part) for part in r.parts)), 1), else_=0)).label(region_column(r.code))
                for r in regions]
    return columns


def area_criterion(code: str, f: Any) -> tuple[ColumnElement[bool], ColumnElement[str]]:
    """(met, recorded text) of a product's or plan's coverage-area criterion over the facts row `f`."""
    unknown = f.c.has_address == 0
    return (or_(unknown, f.c[area_column(code)] == 1),
            case((unknown, " coverage_area:address-unknown"), else_=" coverage_area:inside"))
