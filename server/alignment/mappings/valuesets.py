"""The value-set files (`valuesets/*.json`, `lifelong.json`): FHIR R4 ValueSets of ICD-10-CM prefixes and
SNOMED CT concepts, checked by a pydantic model and expanded against the bundled ICD-10-CM release."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from server.alignment.derived_cache import cached
from server.data_files import FieldProblem, MappingError, MappingModel, NonEmptyStr, Source, json_path, problem, read_mapping

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_SYSTEM = "http://snomed.info/sct"
# Other spellings of the same code systems that feeds send (the HL7 OIDs).
ICD10CM_SYSTEMS = frozenset({ICD10CM_SYSTEM, "urn:oid:2.16.840.1.113883.6.90"})
SNOMED_SYSTEMS = frozenset({SNOMED_SYSTEM, "urn:oid:2.16.840.1.113883.6.96"})
# A ValueSet names its sources in this complex extension (parts name, url, read, unconfirmed): the file
# stays a valid FHIR resource, which a top-level `source` field would not.
SOURCE_EXTENSION = "https://planfit.dev/fhir/StructureDefinition/mapping-source"

_SCT_RE = re.compile(r"^[1-9][0-9]{5,17}$")
_ICD_SHAPE_RE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


def normalize_icd(code: str) -> str:
    """ICD-10-CM code without the dot, upper case ('f20.9' -> 'F209')."""
    return code.strip().replace(".", "").upper()


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
    sources: tuple[Source, ...] = ()


# -- the file's schema ----------------------------------------------------------------------------------


class _Concept(MappingModel):
    code: NonEmptyStr
    display: NonEmptyStr | None = None
    designation: list[Any] | None = None
    extension: list[Any] | None = None


class _Filter(MappingModel):
    property: Literal["concept"]
    op: Literal["is-a"]
    value: NonEmptyStr
    extension: list[Any] | None = None


class _Include(MappingModel):
    system: str
    version: NonEmptyStr | None = None
    concept: list[_Concept] | None = Field(None, min_length=1)
    filter: list[_Filter] | None = Field(None, min_length=1)
    extension: list[Any] | None = None

    @field_validator("system")
    @classmethod
    def _supported(cls, system: str) -> str:
        if system not in (ICD10CM_SYSTEM, SNOMED_SYSTEM):
            raise problem(f"unsupported code system {system!r} (use {ICD10CM_SYSTEM} or {SNOMED_SYSTEM})")
        return system

    @model_validator(mode="after")
    def _one_kind(self) -> "_Include":
        if self.concept and self.filter:
            raise problem("an include cannot have both concept and filter (FHIR vsd-3); use one include per filter")
        if not self.concept and not self.filter:
            raise problem("needs concept or filter (including a whole code system is not supported)")
        return self


class _Compose(MappingModel):
    include: list[_Include] = Field(min_length=1)
    exclude: None = None
    lockedDate: str | None = None
    inactive: bool | None = None
    extension: list[Any] | None = None

    @field_validator("exclude", mode="before")
    @classmethod
    def _no_exclude(cls, value: Any) -> None:
        raise problem("not supported: list only the prefixes and codes that are included")


class _SourcePart(MappingModel):
    url: Literal["name", "url", "read", "unconfirmed"]
    valueString: str | None = None
    valueUri: str | None = None
    valueDate: str | None = None


class _SourceExtension(MappingModel):
    url: Literal[SOURCE_EXTENSION]
    extension: list[_SourcePart] = Field(min_length=2)

    def source(self) -> Source:
        parts = {p.url: p.valueString or p.valueUri or p.valueDate for p in self.extension}
        try:
            return Source.model_validate(parts, strict=False)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise problem(f"source part {json_path(error['loc'])}: {error['msg']}") from None


class ValueSetFile(MappingModel):
    """A ValueSet file as PlanFit reads it: the FHIR elements it interprets are typed, the others are
    allowed as FHIR has them; at least one `mapping-source` extension names where the codes come from."""

    resourceType: Literal["ValueSet"]
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
    url: NonEmptyStr
    status: Literal["draft", "active", "retired", "unknown"]
    name: NonEmptyStr
    title: NonEmptyStr
    description: NonEmptyStr
    compose: _Compose
    extension: list[_SourceExtension] = Field(min_length=1)
    meta: Any = None
    text: Any = None
    version: str | None = None
    experimental: bool | None = None
    date: str | None = None
    publisher: str | None = None
    contact: Any = None
    useContext: Any = None
    jurisdiction: Any = None
    purpose: str | None = None
    copyright: str | None = None
    identifier: Any = None
    immutable: bool | None = None

    @field_validator("id")
    @classmethod
    def _named_like_file(cls, value: str, info: ValidationInfo) -> str:
        stem = info.context["stem"]
        if value != stem:
            raise problem(f"id {value!r} must match the file name ({stem}.json)")
        return value

    @field_validator("extension")
    @classmethod
    def _sources_valid(cls, value: list[_SourceExtension]) -> list[_SourceExtension]:
        for extension in value:
            extension.source()
        return value


# -- loading ------------------------------------------------------------------------------------------


def load_value_sets(directory: Path) -> dict[str, ValueSetDef]:
    vs_dir = directory / "valuesets"
    if not vs_dir.is_dir():
        raise MappingError("valuesets/", "", f"directory not found ({vs_dir})")
    files = sorted(vs_dir.glob("*.json"))
    if not files:
        raise MappingError("valuesets/", "", "no ValueSet files (*.json)")
    out: dict[str, ValueSetDef] = {}
    for path in files:
        vs = load_value_set(path, f"valuesets/{path.name}")
        out[vs.id] = vs  # ids are unique: each matches its own file name
    return out


def load_value_set(path: Path, label: str) -> ValueSetDef:
    doc = read_mapping(path, ValueSetFile, label, {"stem": path.stem})
    try:
        return _expand(doc, label)
    except FieldProblem as exc:
        raise MappingError(label, exc.path, exc.message) from None


def _expand(doc: ValueSetFile, label: str) -> ValueSetDef:
    icd_values: list[tuple[str, str]] = []  # (field path, prefix as written), checked together below
    snomed: dict[str, str] = {}
    snomed_isa: set[str] = set()
    for i, inc in enumerate(doc.compose.include):
        where = f"compose.include[{i}]"
        if inc.concept and inc.system == ICD10CM_SYSTEM:
            raise FieldProblem(f"{where}.concept", "ICD-10-CM entries are prefixes: give each as a filter "
                               "{property: concept, op: is-a, value: <code>}")
        if inc.filter and len(inc.filter) != 1:
            raise FieldProblem(f"{where}.filter", "give exactly one filter per include (several filters in one "
                               "include must all hold at once, which is never what a prefix list means)")
        for j, concept in enumerate(inc.concept or ()):
            path = f"{where}.concept[{j}].code"
            _add_snomed(snomed, _snomed_at(concept.code, path), path)
        for flt in inc.filter or ():
            path = f"{where}.filter[0].value"
            if inc.system == ICD10CM_SYSTEM:
                icd_values.append((path, flt.value))
            else:
                _add_snomed(snomed, _snomed_at(flt.value, path), path)
                snomed_isa.add(flt.value.strip())

    facts = _icd_facts(value for _, value in icd_values)
    prefixes: dict[str, str] = {}
    icd_codes: set[str] = set()
    for path, value in icd_values:
        canonical, descendants = _check_icd_prefix(path, value, facts)
        if canonical in prefixes:
            raise FieldProblem(path, f"duplicate code {canonical} (also at {prefixes[canonical]})")
        prefixes[canonical] = path
        icd_codes.update([canonical, *descendants])
    return ValueSetDef(
        id=doc.id, url=doc.url, name=doc.name, title=doc.title, description=doc.description, file=label,
        icd_prefixes=tuple(prefixes), icd_prefixes_nodot=tuple(normalize_icd(p) for p in prefixes),
        icd_codes=frozenset(icd_codes), snomed_codes=frozenset(snomed), snomed_is_a=frozenset(snomed_isa),
        sources=tuple(extension.source() for extension in doc.extension),
    )


def _snomed_at(code: str, path: str) -> str:
    if not _SCT_RE.match(code.strip()):
        raise FieldProblem(path, f"{code!r} is not a SNOMED CT concept id")
    return code.strip()


def _add_snomed(seen: dict[str, str], code: str, path: str) -> None:
    if code in seen:
        raise FieldProblem(path, f"duplicate code {code}")
    seen[code] = path


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


def _check_icd_prefix(path: str, raw: str, facts: dict[str, list]) -> tuple[str, list[str]]:
    """The prefix in canonical dotted form and the codes below it, or fail if it is not an ICD-10-CM
    category or code."""
    value = raw.strip().upper()
    if not _ICD_SHAPE_RE.match(value):
        raise FieldProblem(path, f"{raw!r} is not an ICD-10-CM code or category")
    verdict, dotted, descendants = facts[value]
    if verdict == "missing":
        raise FieldProblem(path, f"ICD-10-CM code {raw!r} does not exist in simple-icd-10-cm (April 2026 release)")
    if verdict == "kind":
        raise FieldProblem(path, f"{raw!r} is an ICD-10-CM chapter or block, not a category or code")
    return dotted, descendants
