"""`rates.json` (or `$PLANFIT_RATES_FILE`): the PMPM rate per product and the rate cells, as a pydantic model.

A rate cell (SPEC §4.3 "Impact uses rate cells") prices a product or one of its plans in a region (a named
set of states and ZIP prefixes) for a dual segment (full, partial, non-dual); every part may be left out.
A member's cell for a product is the most specific cell that matches (a plan before its product, then a
region, then a segment), else the product's `pmpm`. The engine picks it in SQL (`rules.py`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from server.data_files import FieldProblem, JsonNumber, MappingFile, MappingModel, NonEmptyStr, matching

Rate = Annotated[Decimal, JsonNumber, Field(ge=0, allow_inf_nan=False)]
Segment = Literal["full", "partial", "non-dual"]
SEGMENTS: tuple[str, ...] = get_args(Segment)
RegionCode = Annotated[str, matching(r"^[a-z0-9][a-z0-9\-]{0,31}$", "a region code (lower-case letters, digits, '-')")]
ANY = "*"  # a cell part left out, in a cell's key


class RegionPart(MappingModel):
    """A state, or the ZIP codes of a state starting with one of `zip3` (USPS 3-digit prefixes)."""

    state: Annotated[str, matching(r"^[A-Z]{2}$", "a USPS state code (two upper-case letters)")]
    zip3: tuple[Annotated[str, matching(r"^[0-9]{3}$", "a 3-digit ZIP prefix")], ...] = ()


class Region(MappingModel):
    code: RegionCode
    display: NonEmptyStr
    parts: tuple[RegionPart, ...] = Field(min_length=1)


class RateCell(MappingModel):
    product: NonEmptyStr  # a product code or a plan id
    region: RegionCode | None = None
    segment: Segment | None = None
    pmpm: Rate
    basis: str = ""

    @property
    def key(self) -> str:
        """`product/region/segment`, `*` for a part left out: how a finding names the cell it used."""
        return "/".join((self.product, self.region or ANY, self.segment or ANY))

    @property
    def specificity(self) -> tuple[int, int]:
        return (self.region is not None) + (self.segment is not None), int(self.region is not None)


class Rates(MappingFile):
    """Validate with context `{"products": <codes>, "label": <file label>}`: every product needs a rate."""

    illustrative: bool
    currency: Annotated[str, matching(r"^[A-Z]{3}$", "an ISO 4217 code such as 'USD'")]
    pmpm: dict[str, Rate]
    note: str = ""
    unit: str = ""
    effective: str = ""
    basis: dict[str, str] = {}
    regions: tuple[Region, ...] = ()  # in order: a member in several is in the first
    cells: tuple[RateCell, ...] = ()
    _file: str = PrivateAttr("")

    @property
    def file(self) -> str:
        return self._file

    @model_validator(mode="after")
    def _every_product(self, info: ValidationInfo) -> "Rates":
        known = info.context["products"]
        for table in ("pmpm", "basis"):
            for code in getattr(self, table):
                if code not in known:
                    raise FieldProblem(f"{table}.{code}", f"unknown product {code!r} (not in products.json)")
        for code in known:
            if code not in self.pmpm:
                raise FieldProblem(f"pmpm.{code}", "missing rate for product")
        plans, regions, keys = info.context.get("plans", frozenset()), set(), set()
        for i, region in enumerate(self.regions):
            if region.code in regions:
                raise FieldProblem(f"regions[{i}].code", f"duplicate region {region.code!r}")
            regions.add(region.code)
        for i, cell in enumerate(self.cells):
            if cell.product not in known and cell.product not in plans:
                raise FieldProblem(f"cells[{i}].product", f"unknown product or plan {cell.product!r}")
            if cell.region is not None and cell.region not in regions:
                raise FieldProblem(f"cells[{i}].region", f"unknown region {cell.region!r} (not in regions)")
            if cell.product in known and cell.region is None and cell.segment is None:
                raise FieldProblem(f"cells[{i}]", "a product's cell needs a region or a segment (else use pmpm)")
            if cell.key in keys:
                raise FieldProblem(f"cells[{i}]", f"duplicate cell {cell.key}")
            keys.add(cell.key)
        self._file = info.context["label"]
        return self

    def cells_for(self, product: str, plans: tuple[str, ...]) -> list[RateCell]:
        """The cells pricing a product or one of its plans, most specific first: a plan's cells before the
        product's, then by region and segment."""
        return sorted((c for c in self.cells if c.product == product or c.product in plans),
                      key=lambda c: (c.product == product, *(-x for x in c.specificity)))

    def pmpm_of(self, key: str) -> Decimal | None:
        """The PMPM of a cell key (`product/region/segment`) or a product code."""
        if key in self.pmpm:
            return self.pmpm[key]
        return next((c.pmpm for c in self.cells if c.key == key), None)

    def annual_difference(self, recommended: str | None, enrolled: str | None) -> Decimal | None:
        """(rate of recommended - rate of enrolled) x 12, or None when either product is unknown."""
        if recommended is None or enrolled is None:
            return None
        if recommended not in self.pmpm or enrolled not in self.pmpm:
            return None
        return (self.pmpm[recommended] - self.pmpm[enrolled]) * 12
