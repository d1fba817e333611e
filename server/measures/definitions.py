"""The conformance resources PlanFit publishes: `profiles/*.json`, completed from the loaded data.

StructureDefinitions, ValueSets, Measures and most CodeSystems are shipped as they are. The code
systems whose codes the server itself decides are shipped listing the concepts the shipped mappings and
code give (a test keeps the files equal to them) and completed again here from the one source the server
emits codes from, so a replaced `mappings/products.json` or a new reason code can never leave a
published code system behind:

* `product` and `dual-status`: the loaded mappings (`products.json`);
* `diagnosis-category`: the loaded value sets (`mappings/valuesets/`);
* `alignment-reason`: `server.alignment.rules.REASONS`;
* `cohort`: `server.cohorts.definitions.COHORTS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson

from server.alignment.mappings import Mappings
from server.alignment.rules import REASONS
from server.cohorts.definitions import COHORTS
from server.data_files import data_directory

PROFILES_DIR = data_directory("profiles")
BASE = "https://planfit.dev/fhir"
SD_BASE = f"{BASE}/StructureDefinition/"
CS_BASE = f"{BASE}/CodeSystem/"
MEASURE_BASE = f"{BASE}/Measure/"

Concepts = Callable[[Mappings], list[dict[str, str]]]


def _products(m: Mappings) -> list[dict[str, str]]:
    return [{"code": p.code, "display": p.display, "definition": p.description} for p in m.products]


def _dual_status(m: Mappings) -> list[dict[str, str]]:
    return [{"code": d.code, "display": d.display, "definition": f"Dual level: {d.level}"}
            for d in m.dual_status_codes.values()]


def _categories(m: Mappings) -> list[dict[str, str]]:
    return [{"code": vs.id, "display": vs.title, "definition": vs.url} for vs in sorted(m.value_sets.values(),
                                                                                       key=lambda v: v.id)]


def _reasons(_m: Mappings) -> list[dict[str, str]]:
    return [{"code": code, "display": code.replace("-", " ").capitalize()} for code in REASONS]


def _cohorts(_m: Mappings) -> list[dict[str, str]]:
    return [{"code": c.id, "display": c.name, "definition": c.description} for c in COHORTS]


DERIVED: dict[str, Concepts] = {
    "product": _products,
    "dual-status": _dual_status,
    "diagnosis-category": _categories,
    "alignment-reason": _reasons,
    "cohort": _cohorts,
}


def display_of(resources: list[dict[str, Any]], code_system: str) -> dict[str, str]:
    """code → display of one of the published code systems (by id)."""
    cs = next(r for r in resources if r["resourceType"] == "CodeSystem" and r["id"] == code_system)
    return {c["code"]: c.get("display", c["code"]) for c in cs["concept"]}


DISPLAYED_SYSTEMS = ("product", "alignment-reason", "alignment-status", "diagnosis-category")


def report_displays(definitions: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Code system id → code → display, for the code systems reports name their strata with."""
    return {cs: display_of(definitions, cs) for cs in DISPLAYED_SYSTEMS}


def load_definitions(mappings: Mappings, directory: Path = PROFILES_DIR) -> list[dict[str, Any]]:
    """Every resource of `profiles/`, derived code systems completed; sorted by file name."""
    out = []
    for path in sorted(directory.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        derive = DERIVED.get(resource["id"]) if resource["resourceType"] == "CodeSystem" else None
        if derive is not None:
            concepts = derive(mappings)
            resource = {**resource, "count": len(concepts), "concept": concepts}
        out.append(resource)
    return out
