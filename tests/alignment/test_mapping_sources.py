"""Every mapping file loads through a pydantic model on one base (`server/data_files.py`): a wrong field in
any file family fails naming the file and its JSON path, and a file that does not name its sources does
not load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY, MappingError, load_mappings
from server.alignment.risk_factors import load_risk_factors
from server.audit.benefits import load_benefits
from server.data_files import read_mapping
from server.interventions.config import load_priority_config
from server.projection.rules import load_rules
from server.risk.model import load_risk_model
from server.rosters.reconcile import PilotRules
from server.savings.terms import Terms

Loader = Callable[[Path], object]
LOADERS: dict[str, Loader] = {
    "products.json": load_mappings,
    "rates.json": load_mappings,
    "lifelong.json": load_mappings,
    "valuesets/": load_mappings,
    "benefits.json": lambda root: load_benefits(load_mappings(root)),
    "risk/": load_risk_model,
    "projection/alignment.json": lambda root: load_rules.__wrapped__(root / "projection" / "alignment.json"),
    "roster/pilot-rules.json": lambda root: PilotRules.load(root / "roster" / "pilot-rules.json"),
    "harp_risk_factors.json": load_risk_factors,
    "interventions/priority.json": load_priority_config,
    "savings/terms.json": lambda root: read_mapping(root / "savings" / "terms.json", Terms, "savings/terms.json"),
}
FILES = sorted(str(p.relative_to(DEFAULT_DIRECTORY)) for p in DEFAULT_DIRECTORY.rglob("*.json"))


def _loader(relative: str) -> Loader:
    return next(load for prefix, load in LOADERS.items() if relative.startswith(prefix))


def _broken(tmp_path: Path, relative: str, change: Callable[[Any], object]) -> MappingError:
    root = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, root)
    doc = json.loads((root / relative).read_text())
    change(doc)
    (root / relative).write_text(json.dumps(doc))
    with pytest.raises(MappingError) as info:
        _loader(relative)(root)
    return info.value


def test_every_shipped_file_has_a_loader_and_loads() -> None:
    assert len(FILES) >= 24
    for relative in FILES:
        _loader(relative)(DEFAULT_DIRECTORY)  # raises StopIteration for a file no loader reads


@pytest.mark.parametrize("relative", FILES)
def test_a_file_without_its_source_does_not_load(tmp_path: Path, relative: str) -> None:
    """A value set (a FHIR resource) names its sources in `mapping-source` extensions, the others in `source`."""
    key = "extension" if relative.startswith("valuesets/") or relative == "lifelong.json" else "source"
    error = _broken(tmp_path, relative, lambda d: d.pop(key))
    assert str(error) == f"{relative}: {key}: Field required"


@pytest.mark.parametrize("relative", ["products.json", "risk/interactions.json", "valuesets/smi.json"])
def test_a_source_needs_its_read_date(tmp_path: Path, relative: str) -> None:
    if relative.startswith("valuesets/"):
        error = _broken(tmp_path, relative, lambda d: d["extension"][0].update(
            extension=[part for part in d["extension"][0]["extension"] if part["url"] != "read"]))
        assert str(error).startswith(f"{relative}: extension: source part read: Field required"), str(error)
        return
    error = _broken(tmp_path, relative, lambda d: d["source"][1].update(read="3 December"))
    assert str(error).startswith(f"{relative}: source[1].read: Input should be a valid date"), str(error)


def _set(path: list[str | int], value: Any) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value
    return change


WRONG_FIELD = [
    ("products.json", _set(["products", 3, "coverage_area"], [{"state": "ny"}]),
     "products.json: products[3].coverage_area[0].state: 'ny' is not a USPS state code"),
    ("rates.json", _set(["currency"], "dollars"), "rates.json: currency: 'dollars' is not an ISO 4217 code"),
    ("valuesets/csnp-chf.json", _set(["compose", "include", 0, "filter", 0, "property"], "parent"),
     "valuesets/csnp-chf.json: compose.include[0].filter[0].property: Input should be 'concept'"),
    ("lifelong.json", _set(["status"], "final"),
     "lifelong.json: status: Input should be 'draft', 'active', 'retired' or 'unknown'"),
    ("benefits.json", _set(["categories", 1, "display"], 5),
     "benefits.json: categories[1].display: Input should be a valid string"),
    ("risk/payment_years.json", _set(["payment_years", 0, "models", 1, "weight"], "0.67"),
     "risk/payment_years.json: payment_years[0].models[1].weight: Input should be a valid number"),
    ("risk/interactions.json", _set(["models", "28", "interactions", 0, "disabled"], "yes"),
     "risk/interactions.json: models.28.interactions[0].disabled: Input should be a valid boolean"),
    ("projection/alignment.json", _set(["alignmentPeriod", "months"], "24"),
     "projection/alignment.json: alignmentPeriod.months: Input should be a valid integer"),
    ("roster/pilot-rules.json", _set(["authorization_valid_days"], 0),
     "roster/pilot-rules.json: authorization_valid_days: Input should be greater than 0"),
    ("harp_risk_factors.json", _set(["factors", 1, "at_least"], "3"),
     "harp_risk_factors.json: factors[1].at_least: Input should be a valid integer"),
    ("savings/terms.json", _set(["assurance", "runOutMonths"], 0),
     "savings/terms.json: assurance.runOutMonths: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("relative", "change", "expected"), WRONG_FIELD, ids=[w[0] for w in WRONG_FIELD])
def test_a_wrong_field_names_file_and_json_path(tmp_path: Path, relative: str, change, expected: str) -> None:
    error = _broken(tmp_path, relative, change)
    assert str(error).startswith(expected), str(error)
    assert error.file == relative
