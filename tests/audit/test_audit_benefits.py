"""The benefit matrix (`mappings/benefits.json`) is checked when the server starts: the shipped file loads,
and a broken one stops the server (a real `planfit serve` process) with a message naming file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY, MappingError, load_mappings
from server.audit.benefits import load_benefits
from tests.support.servers import start_server, stop_server


def test_shipped_matrix_loads_and_covers_the_spec_example():
    matrix = load_benefits(load_mappings())
    assert matrix.category("H0036", None) == "bh-hcbs-core"  # SPEC §12: CPST
    assert matrix.covered("ny-harp", "bh-hcbs-core") and not matrix.covered("ny-mmc", "bh-hcbs-core")
    assert matrix.category(None, "0914") == "outpatient-bh" and matrix.category("99213", None) is None
    assert matrix.carc_class["197"] == "authorization" and matrix.carc_class["16"] == "coding"
    assert "204" not in matrix.carc_class  # a benefit denial: other, unless the product explains it


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        data = json.loads((root / "benefits.json").read_text())
        change(data)
        (root / "benefits.json").write_text(json.dumps(data))
    return apply


BROKEN = [
    ("unknown-product", _edit(lambda d: d["coverage"].update({"gold-plan": ["outpatient-bh"]})),
     "benefits.json: coverage.gold-plan: not a product of products.json"),
    ("undefined-category", _edit(lambda d: d["coverage"]["ny-mmc"].append("spa-days")),
     "benefits.json: coverage.ny-mmc: undefined categories ['spa-days']"),
    ("code-twice", _edit(lambda d: d["categories"][1]["procedure_codes"].append("H0036")),
     "benefits.json: categories[1].procedure_codes[6]: H0036 is already in category bh-hcbs-core"),
    ("bad-code", _edit(lambda d: d["categories"][0]["procedure_codes"].append("H00")),
     "benefits.json: categories[0].procedure_codes[4]: 'H00' is not a valid code"),
    ("unknown-class", _edit(lambda d: d["carc_classes"].update({"eligibility": ["27"]})),
     "benefits.json: carc_classes.eligibility: classes are coding, authorization"),
    ("no-source", _edit(lambda d: d.update({"source": []})),
     "benefits.json: source: List should have at least 1 item"),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_broken_matrix_names_file_and_field(tmp_path: Path, mutate, expected: str):
    root = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, root)
    mutate(root)
    with pytest.raises(MappingError) as info:
        load_benefits(load_mappings(root))
    assert str(info.value).startswith(expected), str(info.value)


def test_a_broken_matrix_stops_the_server(tmp_path: Path):
    root = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, root)
    BROKEN[0][1](root)
    with pytest.raises(RuntimeError) as info:
        process, _url = start_server(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "server.log",
                                     {"PLANFIT_MAPPINGS_DIR": str(root)})
        stop_server(process)
    assert "cannot start: benefits.json: coverage.gold-plan: not a product of products.json" in str(info.value)
