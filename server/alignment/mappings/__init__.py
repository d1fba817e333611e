"""Load and check the alignment mappings (`mappings/`, SPEC §4.1).

The mappings are data: FHIR ValueSet JSON files (`valuesets/*.json`, `lifelong.json`), the product
catalogue with the SOPT and dual-status tables (`products.json`) and the illustrative rate table
(`rates.json`). `mappings/README.md` documents each file, the eligibility-rule vocabulary and the
coverage-reading contract. Each file has a pydantic model (`valuesets.py`, `products.py`, `rates.py`) on the
base in `server/data_files.py`: anything wrong raises `MappingError` naming the file and the JSON path,
e.g. ``products.json: products[2].priority: Input should be a valid integer``. The server calls
`load_mappings()` at start-up, so a broken customer file stops it before it serves a request.

Where the files are read from:

* ``directory`` argument, else ``$PLANFIT_MAPPINGS_DIR``, else the repository's ``mappings/``;
* the rate table: ``rates_file`` argument, else ``$PLANFIT_RATES_FILE``, else ``<directory>/rates.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from server.alignment.mappings.products import (
    DUAL_LEVELS,
    INTEGRATION_LEVELS,
    LINES_OF_BUSINESS,
    LOB_PROGRAMS,
    MEMBER_FLAGS,
    PROGRAMS,
    SOPT_SYSTEM,
    BenefitPlan,
    DualStatusCode,
    Eligibility,
    Product,
    ProductsFile,
    RuleUnit,
    SoptCode,
    StateDetermination,
)
from server.alignment.mappings.rates import Rates
from server.alignment.mappings.valuesets import (
    ICD10CM_SYSTEM,
    ICD10CM_SYSTEMS,
    SNOMED_SYSTEM,
    SNOMED_SYSTEMS,
    ValueSetDef,
    load_value_set,
    load_value_sets,
    normalize_icd,
)
from server.data_files import MappingError, data_directory, read_mapping

__all__ = [
    "DEFAULT_DIRECTORY", "ICD10CM_SYSTEM", "ICD10CM_SYSTEMS", "SNOMED_SYSTEM", "SNOMED_SYSTEMS", "SOPT_SYSTEM",
    "LINES_OF_BUSINESS", "LOB_PROGRAMS", "PROGRAMS", "DUAL_LEVELS", "INTEGRATION_LEVELS", "MEMBER_FLAGS",
    "MappingError", "ValueSetDef", "Eligibility", "StateDetermination", "Product", "SoptCode", "DualStatusCode",
    "Rates", "BenefitPlan", "RuleUnit", "Mappings", "load_mappings", "normalize_icd",
]

DEFAULT_DIRECTORY = data_directory("mappings")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Mappings:
    directory: Path
    value_sets: Mapping[str, ValueSetDef]
    products: tuple[Product, ...]  # highest priority first
    sopt_system: str
    sopt: Mapping[str, SoptCode]
    dual_status_url: str
    dual_status_codes: Mapping[str, DualStatusCode]
    rates: Rates
    lifelong: ValueSetDef  # codes of lifelong diagnoses (SPEC §4.3), `lifelong.json`
    dual_history_months: int  # how far back month-by-month dual status codes are read
    deeming_months: int  # D-SNP deeming period after Medicaid evidence ends (42 CFR 422.52(d))
    # Value sets whose clinical-only evidence is reported as a non-claims diagnosis (SPEC §4.2).
    non_claims_valuesets: tuple[str, ...] = ()
    # lookup indexes built by load_mappings()
    _icd_index: Mapping[str, frozenset[str]] = field(repr=False, compare=False, default_factory=_empty)
    _snomed_index: Mapping[str, frozenset[str]] = field(repr=False, compare=False, default_factory=_empty)
    _plan_index: Mapping[str, str] = field(repr=False, compare=False, default_factory=_empty)
    _sopt_product_index: Mapping[str, str] = field(repr=False, compare=False, default_factory=_empty)

    # -- value sets ---------------------------------------------------------------------------------

    def categories_for(self, system: str | None, code: str | None) -> frozenset[str]:
        """Value-set ids that contain this coding. ICD-10-CM codes match when they are a prefix or an item
        below it in the bundled release, with or without the dot and in any letter case; SNOMED CT codes
        match exactly. Other systems match nothing."""
        if not system or not code:
            return frozenset()
        system = system.strip()
        if system in ICD10CM_SYSTEMS:
            return self._icd_index.get(normalize_icd(code), frozenset())
        if system in SNOMED_SYSTEMS:
            return self._snomed_index.get(code.strip(), frozenset())
        return frozenset()

    def icd_code_rows(self) -> list[tuple[str, str]]:
        """(value_set_id, dotted ICD-10-CM code) for every expanded code, e.g. for a SQL lookup table."""
        return [(vs.id, c) for vs in self.value_sets.values() for c in sorted(vs.icd_codes)]

    def snomed_rows(self) -> list[tuple[str, str]]:
        """(value_set_id, SNOMED CT code) pairs."""
        return [(vs.id, c) for vs in self.value_sets.values() for c in sorted(vs.snomed_codes)]

    # -- products and coverage tables ---------------------------------------------------------------

    def product(self, code: str) -> Product:
        for p in self.products:
            if p.code == code:
                return p
        raise KeyError(code)

    @property
    def units(self) -> tuple["RuleUnit", ...]:
        """Every product's rule units (its plans, or itself), products in priority order."""
        return tuple(u for p in self.products for u in p.units)

    @property
    def products_with_plans(self) -> frozenset[str]:
        return frozenset(p.code for p in self.products if p.plans)

    def product_for_plan(self, value: str | None) -> Product | None:
        """The product a `Coverage.class` (type `plan`) value names: a product code or one of its plan
        aliases, compared case-insensitively after trimming."""
        if not value:
            return None
        code = self._plan_index.get(value.strip().casefold())
        return self.product(code) if code else None

    def product_for_sopt(self, code: str | None) -> Product | None:
        """The product a SOPT `Coverage.type` code names (exact match), if any."""
        if not code:
            return None
        hit = self._sopt_product_index.get(code.strip())
        return self.product(hit) if hit else None

    def lob_for_sopt(self, code: str | None) -> str | None:
        """Line of business of a SOPT code (exact match on the table), or None when the code is not listed."""
        if not code:
            return None
        row = self.sopt.get(code.strip())
        return row.line_of_business if row else None

    def dual_level(self, code: str | None) -> str | None:
        """'full' or 'partial' for a CMS dual status code; None for codes with no level and unknown codes."""
        if not code:
            return None
        row = self.dual_status_codes.get(code.strip())
        if row is None or row.level == "none":
            return None
        return row.level

    @staticmethod
    def programs_for_lob(lob: str | None) -> frozenset[str]:
        return LOB_PROGRAMS.get(lob or "", frozenset())


def load_mappings(directory: Path | str | None = None, *, rates_file: Path | str | None = None) -> Mappings:
    """Read and check every mapping file; raise `MappingError` naming file and field on the first problem."""
    if directory is None:
        env_dir = os.environ.get("PLANFIT_MAPPINGS_DIR")
        directory = Path(env_dir) if env_dir else DEFAULT_DIRECTORY
    directory = Path(directory)
    if rates_file is None:
        env_rates = os.environ.get("PLANFIT_RATES_FILE")
        rates_path = Path(env_rates) if env_rates else directory / "rates.json"
    else:
        rates_path = Path(rates_file)
    if not directory.is_dir():
        raise MappingError(str(directory), "", "mappings directory not found")

    value_sets = load_value_sets(directory)
    lifelong = load_value_set(directory / "lifelong.json", "lifelong.json")
    catalogue = read_mapping(directory / "products.json", ProductsFile, "products.json",
                             {"value_sets": frozenset(value_sets)})
    products = sorted(catalogue.products, key=lambda p: p.priority, reverse=True)
    try:
        rates_label = str(rates_path.relative_to(directory))
    except ValueError:
        rates_label = str(rates_path)
    rates = read_mapping(rates_path, Rates, rates_label, {"products": [p.code for p in products],
                                                          "plans": frozenset(u.code for p in products for u in p.units),
                                                          "label": rates_label})

    icd_index: dict[str, set[str]] = {}
    snomed_index: dict[str, set[str]] = {}
    for vs in value_sets.values():
        for code in vs.icd_codes:
            icd_index.setdefault(normalize_icd(code), set()).add(vs.id)
        for c in vs.snomed_codes:
            snomed_index.setdefault(c, set()).add(vs.id)
    plan_index: dict[str, str] = {}
    sopt_product_index: dict[str, str] = {}
    for p in products:
        plan_index[p.code.casefold()] = p.code
        for alias in p.plan_aliases:
            plan_index[alias.strip().casefold()] = p.code
        for code in p.sopt_aliases:
            sopt_product_index[code] = p.code

    return Mappings(
        directory=directory,
        value_sets=MappingProxyType(dict(value_sets)),
        products=tuple(products),
        sopt_system=catalogue.sopt.system,
        sopt=MappingProxyType({c.code: c for c in catalogue.sopt.codes}),
        dual_status_url=catalogue.dual_status.extension_url,
        dual_status_codes=MappingProxyType({c.code: c for c in catalogue.dual_status.codes}),
        rates=rates,
        lifelong=lifelong,
        dual_history_months=catalogue.dual_status.history_months,
        deeming_months=catalogue.dual_status.deeming_months,
        non_claims_valuesets=catalogue.non_claims_valuesets,
        _icd_index=MappingProxyType({k: frozenset(v) for k, v in icd_index.items()}),
        _snomed_index=MappingProxyType({k: frozenset(v) for k, v in snomed_index.items()}),
        _plan_index=MappingProxyType(plan_index),
        _sopt_product_index=MappingProxyType(sopt_product_index),
    )
