"""Reading cohort Groups over HTTP and checking them against the cohort-group profile, for test_cohorts.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson

from server.cohorts.definitions import COHORT_CODE_SYSTEM
from tests.support.servers import ROOT

CHANGE_TYPE = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType"
PROFILES = ROOT / "profiles"
COHORT_PROFILE = PROFILES / "StructureDefinition-cohort-group.json"


def read_group(c: httpx.Client, cohort_id: str, version: int | None = None) -> dict[str, Any]:
    path = f"/Group/{cohort_id}" + (f"/_history/{version}" if version is not None else "")
    r = c.get(path)
    assert r.status_code == 200, r.text
    group = r.json()
    assert r.headers["ETag"] == f'W/"{group["meta"]["versionId"]}"'
    return group


def version_of(c: httpx.Client, cohort_id: str) -> int:
    r = c.get(f"/Group/{cohort_id}", params={"_summary": "true"})
    assert r.status_code == 200, r.text
    return int(r.json()["meta"]["versionId"])


def change_type(member: dict[str, Any]) -> str:
    (code,) = [e["valueCode"] for e in member.get("extension", []) if e["url"] == CHANGE_TYPE]
    return code


def patient_id(member: dict[str, Any]) -> str:
    reference = member["entity"]["reference"]
    assert reference.startswith("Patient/"), reference
    return reference.removeprefix("Patient/")


def current_members(group: dict[str, Any]) -> set[str]:
    return {patient_id(m) for m in group.get("member", []) if not m.get("inactive")}


def dropped_members(group: dict[str, Any]) -> set[str]:
    return {patient_id(m) for m in group.get("member", []) if m.get("inactive")}


def search_ids(c: httpx.Client, query: str) -> set[str]:
    r = c.get(f"/Group?{query}")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"}


# -- conformance to the profile's differential ---------------------------------------------------------


def _values(node: Any, steps: list[str]) -> Iterator[Any]:
    """FHIRPath-like descent through lists; `extension:slice` keeps the extensions of the slice's URL."""
    if not steps:
        yield node
        return
    step, rest = steps[0], steps[1:]
    items = node if isinstance(node, list) else [node]
    for item in items:
        if not isinstance(item, dict):
            continue
        name, _, url = step.partition("@")
        value = item.get(name)
        if value is None:
            continue
        for child in value if isinstance(value, list) else [value]:
            if url and not (isinstance(child, dict) and child.get("url") == url):
                continue
            yield from _values(child, rest)


def _contexts_and_leaf(resource: dict, element: dict) -> tuple[list[Any], str]:
    """The parent nodes of the element's path and the element's own name (slice resolved to a URL)."""
    steps = element["path"].split(".")[1:]
    if element.get("sliceName"):
        url = element["type"][0]["profile"][0]
        steps[-1] = f"{steps[-1]}@{url}"
    return list(_values(resource, steps[:-1])), steps[-1]


def profile_violations(resource: dict[str, Any], profile_path: Path = COHORT_PROFILE,
                       codes: dict[str, set[str]] | None = None) -> list[str]:
    """Cardinality, fixed values and required bindings of the differential, checked on the resource.
    `codes` maps a bound ValueSet URL to the codes it allows."""
    profile = orjson.loads(profile_path.read_bytes())
    problems = []
    if profile["url"] not in resource.get("meta", {}).get("profile", []):
        problems.append(f"meta.profile lacks {profile['url']}")
    for element in profile["differential"]["element"][1:]:
        parents, leaf = _contexts_and_leaf(resource, element)
        for parent in parents:
            found = list(_values(parent, [leaf]))
            if len(found) < element.get("min", 0):
                problems.append(f"{element['id']}: {len(found)} < min {element['min']}")
            if element.get("max") not in (None, "*") and len(found) > int(element["max"]):
                problems.append(f"{element['id']}: {len(found)} > max {element['max']}")
            for key, fixed in element.items():
                if key.startswith("fixed") and any(v != fixed for v in found):
                    problems.append(f"{element['id']}: not fixed to {fixed!r}: {found!r}")
            binding = element.get("binding", {})
            if binding.get("strength") == "required" and codes and binding["valueSet"] in codes:
                allowed = codes[binding["valueSet"]]
                for value in found:
                    if not any(c.get("code") in allowed for c in value.get("coding", [])):
                        problems.append(f"{element['id']}: {value!r} outside {binding['valueSet']}")
    return problems


def cohort_codes(c: httpx.Client, cohort_ids: tuple[str, ...]) -> dict[str, set[str]]:
    """The codes of the cohort ValueSet: the concepts of the cohort CodeSystem the server serves (the
    ValueSet includes that whole system), or the cohort ids while no server serves the CodeSystem."""
    found = c.get("/CodeSystem", params={"url": COHORT_CODE_SYSTEM})
    systems = [e["resource"] for e in found.json().get("entry", [])] if found.status_code == 200 else []
    concepts = {concept["code"] for system in systems for concept in system.get("concept", [])}
    return {"https://planfit.dev/fhir/ValueSet/cohort": concepts or set(cohort_ids)}
