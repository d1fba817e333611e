"""A synthetic population of 2,000 members evaluates to exactly its ground truth, on both databases:
first as kept current while its bundles are ingested over HTTP, then after a full re-evaluation.

The ground truth is built from scenarios, not by a rules engine (`server/synth/`); the
population is generated for today's date, the date the test servers evaluate on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.synth import generate
from tests.support.alignment import TODAY, Finding, finding, member_ids, post_bundles

MEMBERS = 2000
pytestmark = pytest.mark.heavy  # tests/conftest.py schedules it first
# On the process tier: in process its CPU was the same (the work is the server's) and one GIL held both sides.


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("population")
    generate(MEMBERS, seed=4242, out=out, as_of=TODAY)
    return out


def _as_truth(f: Finding) -> dict[str, Any]:
    """The finding in the ground truth's terms."""
    csnp = sorted(value for name, value, _ in f.eligible.get("csnp", []) if name == "valueset")
    return {
        "age": f.age,
        "enrolled_product": f.enrolled,
        "status": f.status,
        "recommended_product": f.recommended,
        "recommended_plan": f.recommended_plan.removeprefix("InsurancePlan/") if f.recommended_plan else None,
        "enrolled_plan": f.enrolled_plan.removeprefix("InsurancePlan/") if f.enrolled_plan else None,
        "enrolled_rate_cell": _enrolled_rate_cell(f),
        "eligible_products": list(f.eligible),
        "non_claims_categories": sorted(f.non_claims),
        "csnp_categories": csnp,
        "dual_level": f.dual_level,
        "kind": f.kind,
        "reasons": f.reasons,
        "risk_factors": {_part(p, "code"): _part(p, "days") or _part(p, "months")
                         for p in f.raw["parameter"] if p["name"] == "riskFactor"},
    }


def _enrolled_rate_cell(f: Finding) -> str | None:
    """The enrolled side's `rateCell` as rates.json keys it: the product code alone, or
    `product/region/segment[/age band]` with `*` for a part left out."""
    cell = next((p for p in f.raw["parameter"] if p["name"] == "rateCell" and _part(p, "role") == "enrolled"), None)
    if cell is None:
        return None
    product, region = _part(cell, "product"), _part(cell, "region")
    segment, band = _part(cell, "segment") or _part(cell, "aidCategory"), _part(cell, "ageBand")
    if not (region or segment or band):
        return product
    return "/".join([product, region or "*", segment or "*"] + ([band] if band else []))


def _part(param: dict[str, Any], name: str) -> Any:
    return next((next(v for k, v in x.items() if k.startswith("value")) for x in param["part"] if x["name"] == name),
                None)


def _mismatches(c: httpx.Client, truth: dict[str, dict[str, Any]], ids: dict[str, str]) -> list[tuple]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(zip(truth, pool.map(lambda ident: _as_truth(finding(c, ids[ident])), truth)))
    bad = []
    for ident, expected in truth.items():
        got = found[ident]
        differs = {key: (want, got[key]) for key, want in expected.items()
                   if key not in ("scenario", "reasons") and got[key] != want}
        if not set(expected["reasons"]) <= set(got["reasons"]):  # the engine may add reasons of its own
            differs["reasons"] = (expected["reasons"], got["reasons"])
        if differs:
            bad.append((ident, expected["scenario"], differs))
    return bad


def test_population_matches_ground_truth_incrementally_and_after_full_run(
    population: Path, client: httpx.Client, claims_client: httpx.Client
) -> None:
    post_bundles(client, population / "clinical")
    post_bundles(claims_client, population / "claims")
    truth = orjson.loads((population / "ground_truth.json").read_bytes())["members"]
    ids = member_ids(client)
    assert set(ids) >= set(truth) and len(truth) == MEMBERS

    bad = _mismatches(client, truth, ids)
    assert not bad, f"{len(bad)} members differ after ingest, e.g. {bad[:5]}"

    r = client.post("/$evaluate-alignment", timeout=600)
    assert r.status_code == 200, r.text
    bad = _mismatches(client, truth, ids)
    assert not bad, f"{len(bad)} members differ after the full run, e.g. {bad[:5]}"
