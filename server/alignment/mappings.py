"""Load and check the alignment mappings (`mappings/`, SPEC §4.1).

The mappings are data: FHIR ValueSet JSON files (`valuesets/*.json`), the product catalogue with the SOPT
and dual-status tables (`products.json`) and the illustrative rate table (`rates.json`). `mappings/README.md`
documents each file, the eligibility-rule vocabulary and the coverage-reading contract.

`load_mappings()` reads every file, checks it strictly and returns frozen dataclasses. Anything wrong raises
`MappingError` with a message naming the file and the JSON path of the offending field, e.g.
``products.json: products[2].priority: expected integer``. The server calls it at start-up, so a broken
customer file stops it before it serves a request.

Where the files are read from:

* ``directory`` argument, else ``$PLANFIT_MAPPINGS_DIR``, else the repository's ``mappings/``;
* the rate table: ``rates_file`` argument, else ``$PLANFIT_RATES_FILE``, else ``<directory>/rates.json``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from server.alignment.areas import AreaPart, parse_area
from server.alignment.derived_cache import cached
from server.data_files import data_directory

__all__ = [
    "DEFAULT_DIRECTORY",
    "ICD10CM_SYSTEM",
    "SNOMED_SYSTEM",
    "SOPT_SYSTEM",
    "LINES_OF_BUSINESS",
    "PROGRAMS",
    "DUAL_LEVELS",
    "MappingError",
    "ValueSetDef",
    "Eligibility",
    "StateDetermination",
    "MEMBER_FLAGS",
    "Product",
    "SoptCode",
    "DualStatusCode",
    "Rates",
    "Mappings",
    "load_mappings",
    "normalize_icd",
]

DEFAULT_DIRECTORY = data_directory("mappings")

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_SYSTEM = "http://snomed.info/sct"
SOPT_SYSTEM = "https://nahdo.org/sopt"
# Other spellings of the same code systems that feeds send (the HL7 OIDs).
ICD10CM_SYSTEMS = frozenset({ICD10CM_SYSTEM, "urn:oid:2.16.840.1.113883.6.90"})
SNOMED_SYSTEMS = frozenset({SNOMED_SYSTEM, "urn:oid:2.16.840.1.113883.6.96"})

# A product's line of business. `dual` means Medicare and Medicaid together.
LINES_OF_BUSINESS = ("medicaid", "medicare", "dual", "commercial")
# What eligibility rules test: the programs a member has active coverage in. A `dual` coverage counts
# as both `medicare` and `medicaid`.
PROGRAMS = ("medicaid", "medicare", "commercial")
LOB_PROGRAMS: Mapping[str, frozenset[str]] = MappingProxyType({
    "medicaid": frozenset({"medicaid"}),
    "medicare": frozenset({"medicare"}),
    "dual": frozenset({"medicare", "medicaid"}),
    "commercial": frozenset({"commercial"}),
})
DUAL_LEVELS = ("full", "partial", "unknown")
DUAL_CODE_LEVELS = ("full", "partial", "none")
# D-SNP integration levels (42 CFR 422.2 definitions of FIDE SNP and HIDE SNP; a D-SNP that is neither is
# coordination-only; rules-v2-leads.md, read 2026-12-03).
INTEGRATION_LEVELS = ("fide", "hide", "coordination-only")

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PRODUCT_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,63}$")
_SCT_RE = re.compile(r"^[1-9][0-9]{5,17}$")
_SOPT_RE = re.compile(r"^[0-9]{1,6}$")
_ICD_SHAPE_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_VALUESET_STATUS = ("draft", "active", "retired", "unknown")


class MappingError(Exception):
    """A mapping file is missing, unreadable or invalid. The message names the file and the field."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.detail = message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


# --------------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class ValueSetDef:
    """One value set. ICD-10-CM entries are prefixes: the category or code and every item below it in
    the ICD-10-CM release bundled with simple-icd-10-cm, expanded into `icd_codes` at load time so
    that matching (here and in SQL) is exact. SNOMED CT codes match exactly (`snomed_is_a` records
    which ones the file marks as "with descendants")."""

    id: str
    url: str
    name: str
    title: str
    description: str
    file: str
    icd_prefixes: tuple[str, ...]  # as written, dotted ICD-10-CM form (e.g. "F32.1")
    icd_prefixes_nodot: tuple[str, ...]  # same order, without the dot (e.g. "F321")
    icd_codes: frozenset[str]  # every ICD-10-CM item at or below a prefix, dotted (e.g. "F32.1", "F32.10")
    snomed_codes: frozenset[str]
    snomed_is_a: frozenset[str]


@dataclass(frozen=True)
class Eligibility:
    """A product's eligibility rule (vocabulary: mappings/README.md). Every stated condition must hold."""

    min_age: int | None = None
    max_age: int | None = None
    requires_lob: frozenset[str] = frozenset()
    excludes_lob: frozenset[str] = frozenset()
    dual_levels: frozenset[str] | None = None
    requires_any_valueset: tuple[str, ...] = ()
    excludes_flags: frozenset[str] = frozenset()
    state_determination: "StateDetermination | None" = None


@dataclass(frozen=True)
class StateDetermination:
    """The State's own eligibility determination (NY HARP status codes, SPEC §4.3): a `confirms` code
    meets the diagnosis criterion in its place, an `excludes` code makes the rule fail."""

    confirms: frozenset[str]
    excludes: frozenset[str]


@dataclass(frozen=True)
class Product:
    code: str
    display: str
    description: str
    line_of_business: str
    eligibility: Eligibility
    plan_aliases: tuple[str, ...]
    sopt_aliases: tuple[str, ...]
    priority: int
    specialized: bool = False  # a higher-acuity product of its program family (SPEC §4.3 `opportunity`)
    coverage_area: tuple[AreaPart, ...] = ()  # where the plan is offered; empty: everywhere (areas.py)
    integration_level: str | None = None  # D-SNP integration level (INTEGRATION_LEVELS), as published

    @property
    def programs(self) -> frozenset[str]:
        return LOB_PROGRAMS[self.line_of_business]


@dataclass(frozen=True)
class SoptCode:
    code: str
    display: str
    line_of_business: str


@dataclass(frozen=True)
class DualStatusCode:
    code: str
    display: str
    level: str  # full | partial | none


@dataclass(frozen=True)
class Rates:
    illustrative: bool
    currency: str
    pmpm: Mapping[str, Decimal]
    file: str
    note: str = ""

    def annual_difference(self, recommended: str | None, enrolled: str | None) -> Decimal | None:
        """(rate of recommended - rate of enrolled) x 12, or None when either product is unknown."""
        if recommended is None or enrolled is None:
            return None
        if recommended not in self.pmpm or enrolled not in self.pmpm:
            return None
        return (self.pmpm[recommended] - self.pmpm[enrolled]) * 12


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


def normalize_icd(code: str) -> str:
    """ICD-10-CM code without the dot, upper case ('f20.9' -> 'F209')."""
    return code.strip().replace(".", "").upper()


# --------------------------------------------------------------------------------------------------
# Loading


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

    value_sets = _load_value_sets(directory)
    lifelong = _load_value_set(directory / "lifelong.json", "lifelong.json")
    products, sopt_system, sopt, dual_url, dual_codes, non_claims, dual_months = _load_products(
        directory / "products.json", value_sets)
    rates = _load_rates(rates_path, directory, products)

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
        sopt_system=sopt_system,
        sopt=MappingProxyType(sopt),
        dual_status_url=dual_url,
        dual_status_codes=MappingProxyType(dual_codes),
        rates=rates,
        lifelong=lifelong,
        dual_history_months=dual_months[0],
        deeming_months=dual_months[1],
        non_claims_valuesets=non_claims,
        _icd_index=MappingProxyType({k: frozenset(v) for k, v in icd_index.items()}),
        _snomed_index=MappingProxyType({k: frozenset(v) for k, v in snomed_index.items()}),
        _plan_index=MappingProxyType(plan_index),
        _sopt_product_index=MappingProxyType(sopt_product_index),
    )


# -- helpers ------------------------------------------------------------------------------------------


class _File:
    """Error context for one file: `fail(path, message)` raises a MappingError naming it."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: str, message: str) -> None:
        raise MappingError(self.label, path, message)

    def read(self, path: Path) -> Any:
        if not path.is_file():
            self.fail("", f"file not found ({path})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.fail("", f"cannot read file: {exc}")
        try:
            return json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            self.fail("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")

    # typed accessors ------------------------------------------------------------------------------

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "(top level)", f"expected object, got {_kind(value)}")
        return value

    def keys(self, value: dict[str, Any], path: str, required: Iterable[str], optional: Iterable[str] = ()) -> None:
        required = tuple(required)
        allowed = set(required) | set(optional)
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "missing required field")
        for key in value:
            if key not in allowed:
                self.fail(_join(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def string(self, value: Any, path: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected string, got {_kind(value)}")
        if not empty and not value.strip():
            self.fail(path, "must not be empty")
        return value

    def integer(self, value: Any, path: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be >= {minimum}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected boolean, got {_kind(value)}")
        return value

    def number(self, value: Any, path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.fail(path, f"expected number, got {_kind(value)}")
        number = Decimal(value)
        if not number.is_finite() or number < 0:
            self.fail(path, "must be a finite number >= 0")
        return number

    def array(self, value: Any, path: str, *, empty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"expected array, got {_kind(value)}")
        if not empty and not value:
            self.fail(path, "must not be empty")
        return value

    def choice(self, value: Any, path: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if not isinstance(value, str) or value not in allowed:
            self.fail(path, f"expected one of {', '.join(allowed)}, got {json.dumps(value, default=str)}")
        return value

    def string_list(self, value: Any, path: str, *, empty: bool = True, unique: bool = True) -> list[str]:
        items = self.array(value, path, empty=empty)
        seen: set[str] = set()
        out = []
        for i, item in enumerate(items):
            s = self.string(item, f"{path}[{i}]")
            if unique and s in seen:
                self.fail(f"{path}[{i}]", f"duplicate value {s!r}")
            seen.add(s)
            out.append(s)
        return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, Decimal, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_icd_module: Any = None
_ICD_RELEASE = version("simple-icd-10-cm")  # keys the cache: a new release is checked afresh


def _icd() -> Any:
    """simple_icd_10_cm, imported on first use (it parses its bundled release, ~2 s)."""
    global _icd_module
    if _icd_module is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import simple_icd_10_cm  # type: ignore[import-untyped]
        _icd_module = simple_icd_10_cm
    return _icd_module


def _icd_facts(values: Iterable[str]) -> dict[str, list]:
    """Per prefix as written, upper-cased: [verdict, dotted form, descendants] with verdict `ok`, `missing`
    (not in the release) or `kind` (a chapter or block); cached, so most starts never import the release."""
    keys = sorted({v.strip().upper() for v in values if _ICD_SHAPE_RE.match(v.strip().upper())})
    return cached("icd-prefixes", [_ICD_RELEASE, keys], lambda: {k: _icd_fact(k) for k in keys})


def _icd_fact(value: str) -> list:
    icd = _icd()
    if not icd.is_valid_item(value):
        return ["missing", None, []]
    if not (icd.is_category(value) or icd.is_subcategory(value) or icd.is_extended_subcategory(value)):
        return ["kind", None, []]
    dotted = icd.add_dot(icd.remove_dot(value))
    return ["ok", dotted, sorted(icd.get_descendants(dotted))]


def _check_icd_prefix(f: _File, path: str, raw: str, facts: dict[str, list]) -> tuple[str, list[str]]:
    """The prefix in canonical dotted form and the codes below it, or fail if it is not an ICD-10-CM
    category or code."""
    value = raw.strip().upper()
    if not _ICD_SHAPE_RE.match(value):
        f.fail(path, f"{raw!r} is not an ICD-10-CM code or category")
    verdict, dotted, descendants = facts[value]
    if verdict == "missing":
        f.fail(path, f"ICD-10-CM code {raw!r} does not exist in simple-icd-10-cm (April 2026 release)")
    if verdict == "kind":
        f.fail(path, f"{raw!r} is an ICD-10-CM chapter or block, not a category or code")
    return dotted, descendants


# -- value sets -----------------------------------------------------------------------------------------

_VS_REQUIRED = ("resourceType", "id", "url", "status", "name", "title", "description", "compose")
_VS_OPTIONAL = (
    "meta", "text", "extension", "version", "experimental", "date", "publisher", "contact", "useContext",
    "jurisdiction", "purpose", "copyright", "identifier", "immutable",
)


def _load_value_sets(directory: Path) -> dict[str, ValueSetDef]:
    vs_dir = directory / "valuesets"
    if not vs_dir.is_dir():
        raise MappingError("valuesets/", "", f"directory not found ({vs_dir})")
    files = sorted(vs_dir.glob("*.json"))
    if not files:
        raise MappingError("valuesets/", "", "no ValueSet files (*.json)")
    out: dict[str, ValueSetDef] = {}
    for path in files:
        vs = _load_value_set(path)
        if vs.id in out:
            raise MappingError(vs.file, "id", f"duplicate value set id {vs.id!r} (also in {out[vs.id].file})")
        out[vs.id] = vs
    return out


def _load_value_set(path: Path, label: str | None = None) -> ValueSetDef:
    f = _File(label or f"valuesets/{path.name}")
    doc = f.obj(f.read(path), "")
    f.keys(doc, "", _VS_REQUIRED, _VS_OPTIONAL)
    if doc["resourceType"] != "ValueSet":
        f.fail("resourceType", f"expected 'ValueSet', got {json.dumps(doc['resourceType'], default=str)}")
    vs_id = f.string(doc["id"], "id")
    if not _ID_RE.match(vs_id):
        f.fail("id", f"{vs_id!r} is not a valid FHIR id")
    if path.stem != vs_id:
        f.fail("id", f"id {vs_id!r} must match the file name ({path.stem}.json)")
    url = f.string(doc["url"], "url")
    f.choice(doc["status"], "status", _VALUESET_STATUS)
    name = f.string(doc["name"], "name")
    title = f.string(doc["title"], "title")
    description = f.string(doc["description"], "description")

    compose = f.obj(doc["compose"], "compose")
    f.keys(compose, "compose", ("include",), ("lockedDate", "inactive", "exclude", "extension"))
    if "exclude" in compose:
        f.fail("compose.exclude", "not supported: list only the prefixes and codes that are included")
    includes = f.array(compose["include"], "compose.include", empty=False)

    prefixes: list[str] = []
    icd_values: list[tuple[str, str]] = []  # (field path, prefix as written), checked together below
    seen_prefix: dict[str, str] = {}
    snomed: set[str] = set()
    snomed_isa: set[str] = set()
    for i, inc_raw in enumerate(includes):
        ipath = f"compose.include[{i}]"
        inc = f.obj(inc_raw, ipath)
        f.keys(inc, ipath, ("system",), ("version", "concept", "filter", "extension"))
        system = f.string(inc["system"], f"{ipath}.system")
        if system not in (ICD10CM_SYSTEM, SNOMED_SYSTEM):
            f.fail(f"{ipath}.system", f"unsupported code system {system!r} (use {ICD10CM_SYSTEM} or {SNOMED_SYSTEM})")
        if "version" in inc:
            f.string(inc["version"], f"{ipath}.version")
        has_concept = "concept" in inc
        has_filter = "filter" in inc
        if has_concept and has_filter:
            f.fail(ipath, "an include cannot have both concept and filter (FHIR vsd-3); use one include per filter")
        if not has_concept and not has_filter:
            f.fail(ipath, "needs concept or filter (including a whole code system is not supported)")
        if has_concept:
            if system == ICD10CM_SYSTEM:
                f.fail(f"{ipath}.concept", "ICD-10-CM entries are prefixes: give each as a filter "
                       "{property: concept, op: is-a, value: <code>}")
            concepts = f.array(inc["concept"], f"{ipath}.concept", empty=False)
            for j, c_raw in enumerate(concepts):
                cpath = f"{ipath}.concept[{j}]"
                concept = f.obj(c_raw, cpath)
                f.keys(concept, cpath, ("code",), ("display", "designation", "extension"))
                code = f.string(concept["code"], f"{cpath}.code").strip()
                if not _SCT_RE.match(code):
                    f.fail(f"{cpath}.code", f"{code!r} is not a SNOMED CT concept id")
                if "display" in concept:
                    f.string(concept["display"], f"{cpath}.display")
                if code in snomed:
                    f.fail(f"{cpath}.code", f"duplicate code {code}")
                snomed.add(code)
        if has_filter:
            filters = f.array(inc["filter"], f"{ipath}.filter", empty=False)
            if len(filters) != 1:
                f.fail(f"{ipath}.filter", "give exactly one filter per include (several filters in one include "
                       "must all hold at once, which is never what a prefix list means)")
            fpath = f"{ipath}.filter[0]"
            flt = f.obj(filters[0], fpath)
            f.keys(flt, fpath, ("property", "op", "value"), ("extension",))
            if flt["property"] != "concept":
                f.fail(f"{fpath}.property", f"expected 'concept', got {json.dumps(flt['property'], default=str)}")
            if flt["op"] != "is-a":
                f.fail(f"{fpath}.op", f"expected 'is-a', got {json.dumps(flt['op'], default=str)}")
            value = f.string(flt["value"], f"{fpath}.value")
            if system == ICD10CM_SYSTEM:
                icd_values.append((f"{fpath}.value", value))
            else:
                code = value.strip()
                if not _SCT_RE.match(code):
                    f.fail(f"{fpath}.value", f"{code!r} is not a SNOMED CT concept id")
                if code in snomed:
                    f.fail(f"{fpath}.value", f"duplicate code {code}")
                snomed.add(code)
                snomed_isa.add(code)

    facts = _icd_facts(value for _, value in icd_values)
    icd_codes: set[str] = set()
    for vpath, value in icd_values:
        canonical, descendants = _check_icd_prefix(f, vpath, value, facts)
        if canonical in seen_prefix:
            f.fail(vpath, f"duplicate code {canonical} (also at {seen_prefix[canonical]})")
        seen_prefix[canonical] = vpath
        prefixes.append(canonical)
        icd_codes.update([canonical, *descendants])

    return ValueSetDef(
        id=vs_id,
        url=url,
        name=name,
        title=title,
        description=description,
        file=f.label,
        icd_prefixes=tuple(prefixes),
        icd_prefixes_nodot=tuple(normalize_icd(p) for p in prefixes),
        icd_codes=frozenset(icd_codes),
        snomed_codes=frozenset(snomed),
        snomed_is_a=frozenset(snomed_isa),
    )


# -- products.json ------------------------------------------------------------------------------------

_RULE_KEYS = ("min_age", "max_age", "requires_lob", "excludes_lob", "dual_levels", "requires_any_valueset",
              "excludes_flags", "state_determination")
# Member flags a rule can exclude on (SPEC §4.3): `opwdd` = OPWDD participation documented on the member.
MEMBER_FLAGS = ("opwdd",)
_STATE_CODE_RE = re.compile(r"^[A-Z0-9]{1,8}$")


def _load_products(
    path: Path, value_sets: Mapping[str, ValueSetDef]
) -> tuple[list[Product], str, dict[str, SoptCode], str, dict[str, DualStatusCode], tuple[str, ...],
           tuple[int, int]]:
    f = _File("products.json")
    doc = f.obj(f.read(path), "")
    f.keys(doc, "", ("products", "sopt", "dual_status", "non_claims_valuesets"), ("description", "sources", "note"))
    if "sources" in doc:
        f.string_list(doc["sources"], "sources", unique=False)
    non_claims = f.string_list(doc["non_claims_valuesets"], "non_claims_valuesets")
    for j, v in enumerate(non_claims):
        if v not in value_sets:
            f.fail(f"non_claims_valuesets[{j}]", f"unknown value set {v!r} (no valuesets/{v}.json)")

    # SOPT table first: product aliases are checked against it.
    sopt_doc = f.obj(doc["sopt"], "sopt")
    f.keys(sopt_doc, "sopt", ("system", "codes"), ("note", "source"))
    sopt_system = f.string(sopt_doc["system"], "sopt.system")
    if sopt_system != SOPT_SYSTEM:
        f.fail("sopt.system", f"expected {SOPT_SYSTEM!r}, got {sopt_system!r}")
    sopt: dict[str, SoptCode] = {}
    for i, row_raw in enumerate(f.array(sopt_doc["codes"], "sopt.codes", empty=False)):
        rpath = f"sopt.codes[{i}]"
        row = f.obj(row_raw, rpath)
        f.keys(row, rpath, ("code", "display", "line_of_business"))
        code = f.string(row["code"], f"{rpath}.code")
        if not _SOPT_RE.match(code):
            f.fail(f"{rpath}.code", f"{code!r} is not a SOPT code (digits only)")
        if code in sopt:
            f.fail(f"{rpath}.code", f"duplicate code {code}")
        sopt[code] = SoptCode(
            code=code,
            display=f.string(row["display"], f"{rpath}.display"),
            line_of_business=f.choice(row["line_of_business"], f"{rpath}.line_of_business", LINES_OF_BUSINESS),
        )

    dual_doc = f.obj(doc["dual_status"], "dual_status")
    f.keys(dual_doc, "dual_status", ("extension_url", "codes", "history_months", "deeming_months"),
           ("value_type", "note", "source"))
    dual_url = f.string(dual_doc["extension_url"], "dual_status.extension_url")
    dual_months = (f.integer(dual_doc["history_months"], "dual_status.history_months", minimum=1),
                   f.integer(dual_doc["deeming_months"], "dual_status.deeming_months", minimum=0))
    if "value_type" in dual_doc and dual_doc["value_type"] != "valueCode":
        f.fail("dual_status.value_type", "expected 'valueCode'")
    dual_codes: dict[str, DualStatusCode] = {}
    for i, row_raw in enumerate(f.array(dual_doc["codes"], "dual_status.codes", empty=False)):
        rpath = f"dual_status.codes[{i}]"
        row = f.obj(row_raw, rpath)
        f.keys(row, rpath, ("code", "display", "level"))
        code = f.string(row["code"], f"{rpath}.code")
        if code in dual_codes:
            f.fail(f"{rpath}.code", f"duplicate code {code}")
        dual_codes[code] = DualStatusCode(
            code=code,
            display=f.string(row["display"], f"{rpath}.display"),
            level=f.choice(row["level"], f"{rpath}.level", DUAL_CODE_LEVELS),
        )

    products: list[Product] = []
    codes_at: dict[str, str] = {}
    priority_at: dict[int, str] = {}
    plan_at: dict[str, str] = {}
    sopt_at: dict[str, str] = {}
    for i, p_raw in enumerate(f.array(doc["products"], "products", empty=False)):
        ppath = f"products[{i}]"
        p = f.obj(p_raw, ppath)
        f.keys(p, ppath, ("code", "display", "line_of_business", "eligibility", "aliases", "priority"),
               ("description", "specialized", "coverage_area", "integration_level"))
        code = f.string(p["code"], f"{ppath}.code")
        if not _PRODUCT_CODE_RE.match(code):
            f.fail(f"{ppath}.code", f"{code!r} must be lower-case letters, digits and '-'")
        if code in codes_at:
            f.fail(f"{ppath}.code", f"duplicate product code {code!r} (also {codes_at[code]})")
        codes_at[code] = ppath
        display = f.string(p["display"], f"{ppath}.display")
        description = f.string(p["description"], f"{ppath}.description") if "description" in p else ""
        lob = f.choice(p["line_of_business"], f"{ppath}.line_of_business", LINES_OF_BUSINESS)
        priority = f.integer(p["priority"], f"{ppath}.priority")
        if priority in priority_at:
            f.fail(f"{ppath}.priority", f"duplicate priority {priority} (also {priority_at[priority]}); "
                   "the recommended product must be unambiguous")
        priority_at[priority] = ppath
        eligibility = _parse_rule(f, p["eligibility"], f"{ppath}.eligibility", value_sets)

        aliases = f.obj(p["aliases"], f"{ppath}.aliases")
        f.keys(aliases, f"{ppath}.aliases", ("plan", "sopt"))
        plans = f.string_list(aliases["plan"], f"{ppath}.aliases.plan")
        for j, alias in enumerate([code, *plans]):
            key = alias.strip().casefold()
            where = f"{ppath}.code" if j == 0 else f"{ppath}.aliases.plan[{j - 1}]"
            if key in plan_at and plan_at[key] != ppath:
                f.fail(where, f"duplicate plan alias {alias!r} (also used by {plan_at[key]})")
            plan_at[key] = ppath
        sopts = f.string_list(aliases["sopt"], f"{ppath}.aliases.sopt")
        for j, s in enumerate(sopts):
            spath = f"{ppath}.aliases.sopt[{j}]"
            if s not in sopt:
                f.fail(spath, f"SOPT code {s!r} is not in the sopt.codes table")
            if sopt[s].line_of_business != lob:
                f.fail(spath, f"SOPT code {s} is {sopt[s].line_of_business}, "
                       f"but the product's line_of_business is {lob}")
            if s in sopt_at:
                f.fail(spath, f"duplicate SOPT alias {s} (also used by {sopt_at[s]})")
            sopt_at[s] = ppath
        products.append(Product(
            code=code,
            display=display,
            description=description,
            line_of_business=lob,
            eligibility=eligibility,
            plan_aliases=tuple(plans),
            sopt_aliases=tuple(sopts),
            priority=priority,
            specialized=f.boolean(p["specialized"], f"{ppath}.specialized") if "specialized" in p else False,
            coverage_area=parse_area(p.get("coverage_area", []), f"{ppath}.coverage_area", f.fail),
            integration_level=(f.choice(p["integration_level"], f"{ppath}.integration_level", INTEGRATION_LEVELS)
                               if "integration_level" in p else None),
        ))

    products.sort(key=lambda prod: prod.priority, reverse=True)
    return products, sopt_system, sopt, dual_url, dual_codes, tuple(non_claims), dual_months


def _parse_rule(f: _File, raw: Any, path: str, value_sets: Mapping[str, ValueSetDef]) -> Eligibility:
    rule = f.obj(raw, path)
    f.keys(rule, path, ("requires_lob",), _RULE_KEYS)
    min_age = f.integer(rule["min_age"], f"{path}.min_age", minimum=0) if "min_age" in rule else None
    max_age = f.integer(rule["max_age"], f"{path}.max_age", minimum=0) if "max_age" in rule else None
    if min_age is not None and max_age is not None and max_age < min_age:
        f.fail(f"{path}.max_age", "must be >= min_age")

    def programs(key: str, *, empty: bool) -> frozenset[str]:
        values = f.string_list(rule[key], f"{path}.{key}", empty=empty)
        for j, v in enumerate(values):
            if v == "dual":
                f.fail(f"{path}.{key}[{j}]", "rules test programs; write dual as [\"medicare\", \"medicaid\"]")
            f.choice(v, f"{path}.{key}[{j}]", PROGRAMS)
        return frozenset(values)

    requires = programs("requires_lob", empty=False)
    excludes = programs("excludes_lob", empty=True) if "excludes_lob" in rule else frozenset()
    both = requires & excludes
    if both:
        f.fail(f"{path}.excludes_lob", f"{', '.join(sorted(both))} is both required and excluded")

    dual_levels = None
    if "dual_levels" in rule:
        levels = f.string_list(rule["dual_levels"], f"{path}.dual_levels", empty=False)
        for j, v in enumerate(levels):
            f.choice(v, f"{path}.dual_levels[{j}]", DUAL_LEVELS)
        if not {"medicare", "medicaid"} <= requires:
            f.fail(f"{path}.dual_levels", "needs requires_lob to contain both medicare and medicaid")
        dual_levels = frozenset(levels)

    vs_ids: tuple[str, ...] = ()
    if "requires_any_valueset" in rule:
        ids = f.string_list(rule["requires_any_valueset"], f"{path}.requires_any_valueset", empty=False)
        for j, v in enumerate(ids):
            if v not in value_sets:
                f.fail(f"{path}.requires_any_valueset[{j}]", f"unknown value set {v!r} (no valuesets/{v}.json)")
        vs_ids = tuple(ids)

    flags: frozenset[str] = frozenset()
    if "excludes_flags" in rule:
        values = f.string_list(rule["excludes_flags"], f"{path}.excludes_flags", empty=False)
        flags = frozenset(f.choice(v, f"{path}.excludes_flags[{j}]", MEMBER_FLAGS) for j, v in enumerate(values))

    state = None
    if "state_determination" in rule:
        spath = f"{path}.state_determination"
        doc = f.obj(rule["state_determination"], spath)
        f.keys(doc, spath, ("confirms", "excludes"))

        def codes(key: str) -> frozenset[str]:
            values = f.string_list(doc[key], f"{spath}.{key}")
            for j, v in enumerate(values):
                if not _STATE_CODE_RE.match(v):
                    f.fail(f"{spath}.{key}[{j}]", f"{v!r} is not a status code (upper-case letters and digits)")
            return frozenset(values)

        confirms, excluded = codes("confirms"), codes("excludes")
        if confirms & excluded:
            f.fail(f"{spath}.excludes", f"{', '.join(sorted(confirms & excluded))} both confirms and excludes")
        if not vs_ids:
            f.fail(spath, "needs requires_any_valueset: a confirming code stands in for the diagnosis")
        state = StateDetermination(confirms=confirms, excludes=excluded)

    return Eligibility(
        min_age=min_age,
        max_age=max_age,
        requires_lob=requires,
        excludes_lob=excludes,
        dual_levels=dual_levels,
        requires_any_valueset=vs_ids,
        excludes_flags=flags,
        state_determination=state,
    )


# -- rates.json -----------------------------------------------------------------------------------------


def _load_rates(path: Path, directory: Path, products: list[Product]) -> Rates:
    try:
        label = str(path.relative_to(directory))
    except ValueError:
        label = str(path)
    f = _File(label)
    doc = f.obj(f.read(path), "")
    f.keys(doc, "", ("illustrative", "currency", "pmpm"), ("unit", "note", "basis", "sources", "effective"))
    illustrative = f.boolean(doc["illustrative"], "illustrative")
    currency = f.string(doc["currency"], "currency")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        f.fail("currency", f"expected an ISO 4217 code such as 'USD', got {currency!r}")
    note = f.string(doc["note"], "note") if "note" in doc else ""
    known = {p.code for p in products}
    table = f.obj(doc["pmpm"], "pmpm")
    pmpm: dict[str, Decimal] = {}
    for code, value in table.items():
        if code not in known:
            f.fail(f"pmpm.{code}", f"unknown product {code!r} (not in products.json)")
        pmpm[code] = f.number(value, f"pmpm.{code}")
    for p in products:
        if p.code not in pmpm:
            f.fail(f"pmpm.{p.code}", "missing rate for product")
    if "basis" in doc:
        basis = f.obj(doc["basis"], "basis")
        for code, value in basis.items():
            if code not in known:
                f.fail(f"basis.{code}", f"unknown product {code!r} (not in products.json)")
            f.string(value, f"basis.{code}")
    return Rates(illustrative=illustrative, currency=currency, pmpm=MappingProxyType(pmpm), file=label, note=note)
