"""The benefit matrix (`mappings/benefits.json`): service categories by procedure and revenue code, the
categories each product covers, and the CARC classes of denials that are not a product mismatch.

Loaded once at start-up and checked against the product catalogue: an unknown product, a category used
but not defined, a code in two categories or a CARC in two classes stops the server with a message
naming the file and the field (`MappingError`, as for the other mapping files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from server.alignment.mappings import Mappings
from server.data_files import MappingError, MappingFile, MappingModel, read_mapping

FILE = "benefits.json"
_PROCEDURE = re.compile(r"^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$")  # CPT (5 digits, or 4 + F/T/U) / HCPCS II
_REVENUE = re.compile(r"^[0-9]{4}$")  # UB-04 revenue codes, zero-padded
_CARC = re.compile(r"^[A-Z]?[0-9]{1,3}$")
CLASSES = ("coding", "authorization")


class _Category(MappingModel):
    code: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    display: str
    procedure_codes: list[str]
    revenue_codes: list[str]


class _Matrix(MappingFile):
    description: str
    unconfirmed: list[str] = []
    categories: list[_Category] = Field(min_length=1)
    coverage: dict[str, list[str]]
    carc_classes: dict[str, list[str]]


@dataclass(frozen=True)
class BenefitMatrix:
    category_of_procedure: dict[str, str]
    category_of_revenue: dict[str, str]
    covers: dict[str, frozenset[str]]  # product → categories
    carc_class: dict[str, str]  # CARC code → coding | authorization

    def category(self, procedure: str | None, revenue: str | None) -> str | None:
        return self.category_of_procedure.get((procedure or "").upper()) or self.category_of_revenue.get(revenue or "")

    def covered(self, product: str | None, category: str) -> bool:
        return category in self.covers.get(product or "", frozenset())

    def can_mismatch(self, category: str) -> bool:
        """Whether some product lacks the category: a category every product of the catalogue covers is
        never a mismatch (a member with no enrolled product has no program, so no recommended one either),
        so its lines need no finding as of their date."""
        return any(category not in covered for covered in self.covers.values())


def _fail(field: str, message: str) -> MappingError:
    return MappingError(FILE, field, message)


def load_benefits(mappings: Mappings) -> BenefitMatrix:
    matrix = read_mapping(Path(mappings.directory) / FILE, _Matrix, FILE)
    by_procedure: dict[str, str] = {}
    by_revenue: dict[str, str] = {}
    for i, category in enumerate(matrix.categories):
        for kind, codes, pattern, index in (("procedure_codes", category.procedure_codes, _PROCEDURE, by_procedure),
                                            ("revenue_codes", category.revenue_codes, _REVENUE, by_revenue)):
            for j, code in enumerate(codes):
                if not pattern.match(code):
                    raise _fail(f"categories[{i}].{kind}[{j}]", f"{code!r} is not a valid code")
                if code in index:
                    raise _fail(f"categories[{i}].{kind}[{j}]", f"{code} is already in category {index[code]}")
                index[code] = category.code
    defined = {c.code for c in matrix.categories}
    products = {p.code for p in mappings.products}
    for product, categories in matrix.coverage.items():
        if product not in products:
            raise _fail(f"coverage.{product}", "not a product of products.json")
        unknown = set(categories) - defined
        if unknown:
            raise _fail(f"coverage.{product}", f"undefined categories {sorted(unknown)}")
    carc_class: dict[str, str] = {}
    for name, codes in matrix.carc_classes.items():
        if name not in CLASSES:
            raise _fail(f"carc_classes.{name}", f"classes are {', '.join(CLASSES)}")
        for code in codes:
            if not _CARC.match(code) or code in carc_class:
                raise _fail(f"carc_classes.{name}", f"{code!r} is not a CARC code or is listed twice")
            carc_class[code] = name
    return BenefitMatrix(by_procedure, by_revenue,  # a product the matrix does not name covers nothing
                         {p: frozenset(matrix.coverage.get(p, ())) for p in sorted(products)}, carc_class)
