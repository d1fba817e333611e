"""Helpers of the measure and profile tests: calling `$evaluate-measure`, reading reports back, and
building members whose evidence is known exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.alignment import ICD, born, claim, condition, coverage, days_ago, patient

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
POPULATIONS = ("initial-population", "denominator", "numerator")


def evaluate(c: httpx.Client, measure: str, expect: int = 200, **params: str) -> dict[str, Any]:
    r = c.get(f"/Measure/{measure}/$evaluate-measure", params=params)
    assert r.status_code == expect, r.text[:2000]
    return r.json()


def counts(report: dict[str, Any]) -> dict[str, int]:
    """Population code → count of the report's first group."""
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def strata(report: dict[str, Any], stratifier: str) -> dict[str, dict[str, int]]:
    """Stratum value code (`a>b` for the component values a and b) → population code → count."""
    found = next(s for s in report["group"][0]["stratifier"] if s["code"][0]["text"] == stratifier)

    def key(stratum: dict[str, Any]) -> str:
        values = [c["value"] for c in stratum["component"]] if "component" in stratum else [stratum["value"]]
        return ">".join(v["coding"][0]["code"] for v in values)

    return {key(s): {p["code"]["coding"][0]["code"]: p["count"] for p in s["population"]}
            for s in found.get("stratum", [])}


def subject_lists(report: dict[str, Any]) -> dict[str, list[str]]:
    """Population code → the Patient ids of its contained List (in List order)."""
    lists = {f"#{c['id']}": [e["item"]["reference"].removeprefix("Patient/") for e in c.get("entry", [])]
             for c in report.get("contained", []) if c["resourceType"] == "List"}
    return {p["code"]["coding"][0]["code"]: lists[p["subjectResults"]["reference"]]
            for p in report["group"][0]["population"]}


def extension_values(report: dict[str, Any], name: str) -> list[Any]:
    url = f"https://planfit.dev/fhir/StructureDefinition/{name}"
    return [next(v for k, v in e.items() if k.startswith("value")) for e in report.get("extension", [])
            if e["url"] == url]


def mapping_file(name: str) -> Any:
    """A file of the repository's mappings/, read as plain JSON (an independent view of what the server loads)."""
    return orjson.loads((ROOT / "mappings" / name).read_bytes())


def served_definitions(c: httpx.Client) -> list[dict[str, Any]]:
    """Every resource of profiles/ as the server serves it."""
    out = []
    for path in sorted(PROFILES.glob("*.json")):
        shipped = orjson.loads(path.read_bytes())
        r = c.get(f"/{shipped['resourceType']}/{shipped['id']}")
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


@dataclass(frozen=True)
class BhMember:
    """A 30-year-old in NY mainstream Medicaid with clinical-only SMI and SUD diagnoses and a diabetes
    claim: misaligned (ny-mmc → ny-harp), non-claims SMI and SUD. `refuted` and `observation` are
    resources of the member that are not evidence."""

    patient: str
    coverage: str
    smi: str  # clinical Condition F20.9
    sud: str  # clinical Condition F11.20
    diabetes_claim: str  # Claim with E11.9 (C-SNP diabetes category: evidence, not behavioural health)
    refuted: str  # refuted F31.9 Condition: not evidence

    @property
    def evidence(self) -> set[str]:
        return {f"Condition/{self.smi}", f"Condition/{self.sud}", f"Claim/{self.diabetes_claim}",
                f"Coverage/{self.coverage}"}


def bh_member(c: httpx.Client, claims: httpx.Client) -> BhMember:
    pid = patient(c, born(30))
    cov = coverage(claims, pid, plan="ny-mmc")
    smi = condition(c, pid, [(ICD, "F20.9")])
    sud = condition(c, pid, [(ICD, "F11.20")])
    refuted = condition(c, pid, [(ICD, "F31.9")], verification="refuted")
    diabetes = claim(claims, pid, codes=[(ICD, "E11.9")], day=days_ago(40))
    return BhMember(pid, cov, smi, sud, diabetes, refuted)
