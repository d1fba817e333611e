"""The R4 search parameters PlanFit indexes, and extraction of index rows from a resource.

Definitions come from the official R4 SearchParameter bundle, simplified to dotted JSON paths by
`tools/build_definitions.py`, plus PlanFit's own parameters (`data/planfit_search_parameters.json`)
for what R4 does not expose but clients and the alignment engine need (e.g. `Coverage.period`).
Extraction runs in the request (pure Python over the parsed JSON); the store writes the rows in the
same database transaction as the resource.

Path syntax: dot-separated JSON element names from the resource root; a step may carry one filter
`name[key=value]` that keeps only the items where some value at `key` (itself a dotted path, e.g.
`class[type.coding.code=plan]`) equals `value`. Dots inside the brackets belong to the filter.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import orjson

from server.fhir.dates import DateValueError, date_range
from server.store.hashing import h64

_DATA = Path(__file__).parent / "data"
_MAX_STRING_INDEX = 512
_HL7_DEFINITION = "http://hl7.org/fhir/SearchParameter/{rtype}-{code}"


@dataclass(frozen=True)
class PathStep:
    name: str
    filter_key: tuple["PathStep", ...] | None = None
    filter_value: str | None = None


@dataclass(frozen=True)
class SearchParam:
    resource_type: str
    code: str
    type: str  # token | string | date | number | reference | uri
    paths: tuple[tuple[PathStep, ...], ...]
    targets: tuple[str, ...] = ()
    url: str = ""  # canonical URL of the SearchParameter; empty for the R4 ones (see `definition`)

    @property
    def h_param(self) -> int:
        return param_hash(self.resource_type, self.code)

    @property
    def definition(self) -> str:
        """The SearchParameter canonical listed in the CapabilityStatement."""
        return self.url or _HL7_DEFINITION.format(rtype=self.resource_type, code=self.code.lstrip("_"))


@dataclass
class IndexRows:
    """Index rows of one resource version, ready for bulk insert."""

    tokens: list[tuple[int, int, int, int, str | None, str | None]] = field(default_factory=list)
    strings: list[tuple[int, str, str]] = field(default_factory=list)
    dates: list[tuple[int, int, int]] = field(default_factory=list)
    numbers: list[tuple[int, float]] = field(default_factory=list)
    references: list[tuple[int, str | None, str | None, str | None]] = field(default_factory=list)


@lru_cache(maxsize=None)
def param_hash(resource_type: str, code: str) -> int:
    return h64(resource_type, code)


def _split_steps(text: str) -> list[str]:
    """Split a path on the dots outside `[...]` (a filter's key and value may contain dots)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "." and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_path(text: str) -> tuple[PathStep, ...]:
    """A path in the simplified syntax (module docstring) as steps; a filter's key is a path itself."""
    steps = []
    for part in _split_steps(text):
        if "[" in part and part.endswith("]"):
            name, cond = part[:-1].split("[", 1)
            key, value = cond.split("=", 1)
            steps.append(PathStep(name, parse_path(key), value))
        else:
            steps.append(PathStep(part))
    return tuple(steps)


def _definitions(raw: dict, result: dict[str, dict[str, SearchParam]]) -> None:
    for rtype, params in raw.items():
        defs = result.setdefault(rtype, {})
        for code, spec in params.items():
            defs[code] = SearchParam(
                resource_type=rtype,
                code=code,
                type=spec["type"],
                paths=tuple(parse_path(p) for p in spec["paths"]),
                targets=tuple(spec.get("targets", ())),
                url=spec.get("url", ""),
            )


@lru_cache(maxsize=1)
def registry() -> dict[str, dict[str, SearchParam]]:
    """Resource type → parameter code → definition: the R4 parameters, then PlanFit's own."""
    result: dict[str, dict[str, SearchParam]] = {}
    _definitions(orjson.loads((_DATA / "search_parameters.json").read_bytes()), result)
    planfit = orjson.loads((_DATA / "planfit_search_parameters.json").read_bytes())
    clashes = [f"{t}.{c}" for t, params in planfit["parameters"].items() for c in params if c in result.get(t, {})]
    if clashes:
        raise ValueError(f"PlanFit search parameters redefine R4 ones: {', '.join(clashes)}")
    _definitions(planfit["parameters"], result)
    return result


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type → the reference parameters that put it in a Patient's compartment."""
    raw = orjson.loads((_DATA / "compartment_patient.json").read_bytes())
    return {rtype: tuple(params) for rtype, params in raw.items()}


@lru_cache(maxsize=1)
def resource_types() -> frozenset[str]:
    return frozenset(registry())


def lookup(resource_type: str, code: str) -> SearchParam | None:
    return registry().get(resource_type, {}).get(code)


def values_at(resource: dict, path: tuple[PathStep, ...]) -> Iterator[Any]:
    """Every value reached by the path; lists are flattened at each step."""
    nodes: list[Any] = [resource]
    for step in path:
        found: list[Any] = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            value = node.get(step.name)
            if value is None:
                continue
            items = value if isinstance(value, list) else (value,)
            if step.filter_key is None:
                found.extend(items)
            else:
                found.extend(i for i in items if _filter_holds(i, step.filter_key, step.filter_value))
        nodes = found
        if not nodes:
            return iter(())
    return iter(nodes)


def _filter_holds(item: Any, key: tuple[PathStep, ...], value: str | None) -> bool:
    """`[key=value]`: some value reached by `key` from the item, as text, equals `value`."""
    return isinstance(item, dict) and any(str(found) == value for found in values_at(item, key))


def normalise_string(text: str) -> str:
    """Case- and accent-insensitive form used by the default string match."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def token_pairs(value: Any) -> Iterator[tuple[str | None, str]]:
    """(system, code) pairs of a Coding, CodeableConcept, Identifier, ContactPoint or primitive."""
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        yield None, str(value)
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or ():
                yield from token_pairs(coding)
        elif "code" in value:
            if isinstance(value["code"], str):
                yield value.get("system"), value["code"]
        elif "value" in value and isinstance(value["value"], (str, int, float, bool)):
            yield value.get("system"), str(value["value"])


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def string_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else (item,):
                if isinstance(text, str):
                    yield text


def date_ranges(value: Any) -> Iterator[tuple[int, int]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            lo = date_range(value["start"])[0] if isinstance(value.get("start"), str) else _MIN_US
            hi = date_range(value["end"])[1] if isinstance(value.get("end"), str) else _MAX_US
            yield lo, hi
    except DateValueError:
        return


_MIN_US = -(2**62)
_MAX_US = 2**62


def split_reference(ref: str) -> tuple[str | None, str | None, str | None]:
    """(type, id, url) of a literal reference; relative ones resolve locally, others keep the URL."""
    if ref.startswith("#") or ref.startswith("urn:"):
        return None, None, ref
    path = ref
    url = None
    if "://" in ref:
        url = ref
        path = ref.split("://", 1)[1]
    if "/_history/" in path:
        path = path.split("/_history/", 1)[0]
    parts = path.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2] in resource_types():
        return parts[-2], parts[-1], url
    return None, None, url or ref


def reference_targets(value: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield split_reference(ref)
    elif isinstance(value, str):  # canonical
        yield split_reference(value)


@lru_cache(maxsize=1 << 17)
def token_hashes(rtype: str, code: str, system: str | None, tok: str) -> tuple[int, int, int]:
    """(h_value, h_sys_value, h_sys); cached because codes and systems repeat across resources."""
    return h64(rtype, code, tok), h64(rtype, code, system, tok), h64(rtype, code, system)


def index_rows(resource: dict, only: Collection[str] | None = None) -> IndexRows:
    """All index rows for one resource, per the registry of its type (or of the `only` parameters)."""
    rows = IndexRows()
    rtype = resource["resourceType"]
    for param, hp, add in _extractors(rtype):
        if only is not None and param.code not in only:
            continue
        for path in param.paths:
            if path[0].name in resource:  # most parameters are absent: skip values_at's allocations
                for value in values_at(resource, path):
                    add(rows, param, hp, rtype, value)
    return rows


def _add_tokens(rows: IndexRows, param: SearchParam, hp: int, rtype: str, value: Any) -> None:
    for system, tok in token_pairs(value):
        rows.tokens.append((hp, *token_hashes(rtype, param.code, system, tok), system, tok))


def _add_strings(rows: IndexRows, param: SearchParam, hp: int, rtype: str, value: Any) -> None:
    for text in string_values(value):
        text = text[:_MAX_STRING_INDEX]
        rows.strings.append((hp, normalise_string(text), text))


def _add_dates(rows: IndexRows, param: SearchParam, hp: int, rtype: str, value: Any) -> None:
    for lo, hi in date_ranges(value):
        rows.dates.append((hp, lo, hi))


def _add_numbers(rows: IndexRows, param: SearchParam, hp: int, rtype: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        rows.numbers.append((hp, float(value)))


def _add_references(rows: IndexRows, param: SearchParam, hp: int, rtype: str, value: Any) -> None:
    for ttype, tid, url in reference_targets(value):
        if param.targets and ttype is not None and ttype not in param.targets:
            continue
        rows.references.append((hp, ttype, tid, url))


_ADDERS = {"token": _add_tokens, "uri": _add_tokens, "string": _add_strings, "date": _add_dates,
           "number": _add_numbers, "reference": _add_references}


@lru_cache(maxsize=None)
def _extractors(rtype: str) -> tuple[tuple[SearchParam, int, Callable[..., None]], ...]:
    """(parameter, h_param, row adder) of each indexed parameter of the type, resolved once per type:
    extraction runs for every resource written."""
    return tuple((p, p.h_param, _ADDERS[p.type]) for p in registry().get(rtype, {}).values() if p.type in _ADDERS)
