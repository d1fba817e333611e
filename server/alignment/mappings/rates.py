"""`rates.json` (or `$PLANFIT_RATES_FILE`): the PMPM rate per product and the rate cells, as a pydantic model.

A rate cell (SPEC §4.3 "Impact uses rate cells") prices a product or one of its plans in a region (a named
set of states and ZIP prefixes) for a member segment: a dual segment (full, partial, non-dual) or a Medicaid
aid category (`aid_categories`, e.g. NY MMC's TANF and SSI cells) and an age band (`age_bands`: the member's
age in whole years on the evaluation date, as NY MMC premium groups are, e.g. "SSI 21-64"); every part may be
left out. A member's cell for a product is the most specific cell that matches (a plan before its product,
then the number of parts named, then a region), else the product's `pmpm`. The engine picks it in SQL
(`rate_cells.py`)."""

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


class AidCategory(MappingModel):
    """A Medicaid aid category rate cells can name. The member's is the value of their Medicaid Coverage's
    `class` of type `class` (search parameter `aid-category`), matched trimmed and in lower case."""

    code: Annotated[str, matching(r"^[a-z0-9][a-z0-9\-]{0,31}$", "an aid category code (lower-case letters, digits, '-')")]
    display: NonEmptyStr


class AgeBand(MappingModel):
    """An age band of rate cells: ages `min_age` to `max_age` (whole years, both included; no `max_age`: and
    over) on the evaluation date. Bands may overlap (NY's TANF 21+ and Safety Net 21-29): a cell names one."""

    code: RegionCode
    display: NonEmptyStr
    min_age: int = Field(default=0, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)

    @model_validator(mode="after")
    def _ordered(self) -> "AgeBand":
        if self.max_age is not None and self.max_age < self.min_age:
            raise FieldProblem("max_age", f"below min_age {self.min_age}")
        return self


class RateCell(MappingModel):
    product: NonEmptyStr  # a product code or a plan id
    region: RegionCode | None = None
    segment: Segment | None = None
    aid_category: str | None = None  # a code of `aid_categories`; a cell names it or a segment, not both
    age_band: str | None = None  # a code of `age_bands`
    pmpm: Rate
    basis: str = ""

    @property
    def key(self) -> str:
        """`product/region/segment`, `*` for a part left out, the segment part being the dual segment or the
        aid category (their codes never collide), then `/age band` when the cell names one: how a finding
        names the cell it used."""
        parts = (self.product, self.region or ANY, self.segment or self.aid_category or ANY)
        return "/".join(parts + ((self.age_band,) if self.age_band else ()))

    @property
    def specificity(self) -> tuple[int, int]:
        member = self.segment is not None or self.aid_category is not None
        return (self.region is not None) + member + (self.age_band is not None), int(self.region is not None)


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
    aid_categories: tuple[AidCategory, ...] = ()
    age_bands: tuple[AgeBand, ...] = ()
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
        aid = self._aid_category_codes()
        bands = {b.code for b in self.age_bands}
        if len(bands) != len(self.age_bands):
            raise FieldProblem("age_bands", "duplicate age band code")
        for i, cell in enumerate(self.cells):
            if cell.product not in known and cell.product not in plans:
                raise FieldProblem(f"cells[{i}].product", f"unknown product or plan {cell.product!r}")
            if cell.region is not None and cell.region not in regions:
                raise FieldProblem(f"cells[{i}].region", f"unknown region {cell.region!r} (not in regions)")
            if cell.aid_category is not None and cell.aid_category not in aid:
                raise FieldProblem(f"cells[{i}].aid_category",
                                   f"unknown aid category {cell.aid_category!r} (not in aid_categories)")
            if cell.age_band is not None and cell.age_band not in bands:
                raise FieldProblem(f"cells[{i}].age_band", f"unknown age band {cell.age_band!r} (not in age_bands)")
            if cell.aid_category is not None and cell.segment is not None:
                raise FieldProblem(f"cells[{i}]", "a cell names a dual segment or an aid category, not both")
            if cell.product in known and cell.key == "/".join((cell.product, ANY, ANY)):
                raise FieldProblem(f"cells[{i}]", "a product's cell needs a region, a segment, an aid category or "
                                                  "an age band (else use pmpm)")
            if cell.key in keys:
                raise FieldProblem(f"cells[{i}]", f"duplicate cell {cell.key}")
            keys.add(cell.key)
        self._file = info.context["label"]
        return self

    def _aid_category_codes(self) -> set[str]:
        codes: set[str] = set()
        for i, category in enumerate(self.aid_categories):
            if category.code in codes or category.code in SEGMENTS:
                raise FieldProblem(f"aid_categories[{i}].code",
                                   f"duplicate aid category {category.code!r} (or a dual segment's name)")
            codes.add(category.code)
        return codes

    def cells_for(self, product: str, plans: tuple[str, ...]) -> list[RateCell]:
        """The cells pricing a product or one of its plans, most specific first: a plan's cells before the
        product's, then by region and segment or aid category."""

        return sorted((c for c in self.cells if c.product == product or c.product in plans),
                      key=lambda c: (c.product == product, *(-x for x in c.specificity)))

    def age_band(self, code: str) -> AgeBand | None:
        return next((b for b in self.age_bands if b.code == code), None)

    def pmpm_of(self, key: str) -> Decimal | None:
        """The PMPM of a cell key (`product/region/segment[/age band]`) or a product code."""
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
