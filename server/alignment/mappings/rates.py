"""`rates.json` (or `$PLANFIT_RATES_FILE`): the PMPM rate per product, as a pydantic model."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from server.data_files import FieldProblem, JsonNumber, MappingFile, matching

Rate = Annotated[Decimal, JsonNumber, Field(ge=0, allow_inf_nan=False)]


class Rates(MappingFile):
    """Validate with context `{"products": <codes>, "label": <file label>}`: every product needs a rate."""

    illustrative: bool
    currency: Annotated[str, matching(r"^[A-Z]{3}$", "an ISO 4217 code such as 'USD'")]
    pmpm: dict[str, Rate]
    note: str = ""
    unit: str = ""
    effective: str = ""
    basis: dict[str, str] = {}
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
        self._file = info.context["label"]
        return self

    def annual_difference(self, recommended: str | None, enrolled: str | None) -> Decimal | None:
        """(rate of recommended - rate of enrolled) x 12, or None when either product is unknown."""
        if recommended is None or enrolled is None:
            return None
        if recommended not in self.pmpm or enrolled not in self.pmpm:
            return None
        return (self.pmpm[recommended] - self.pmpm[enrolled]) * 12
