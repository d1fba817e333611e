"""Da Vinci RA 2.1 StructureDefinitions (tests/data/davinci-ra, XML as the IG publishes them) in the JSON
shape `tests/support/profile_checker.py` reads, and the codes of the IG's code systems.

Only what the checker uses is converted from each differential element: id, sliceName, min, max, the
primitive fixed values, and the type with its profiles. Reference targets that are US Core profiles
become their base resource type (the checker compares the reference's type); bindings are left out,
since the IG's value sets are checked against its code systems here instead."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parents[1] / "data" / "davinci-ra"
NS = {"f": "http://hl7.org/fhir"}
BASE_TYPES = {"us-core-patient": "Patient", "us-core-organization": "Organization"}


def _value(node: ET.Element, tag: str) -> str | None:
    found = node.find(f"f:{tag}", NS)
    return None if found is None else found.get("value")


def _element(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {"id": el.get("id")}
    if el.get("id") and ":" in el.get("id").rsplit(".", 1)[-1]:
        out["sliceName"] = el.get("id").rsplit(":", 1)[-1]
    if _value(el, "min") is not None:
        out["min"] = int(_value(el, "min"))
    if _value(el, "max") is not None:
        out["max"] = _value(el, "max")
    for child in el:
        tag = child.tag.split("}")[1]
        if tag.startswith("fixed") and child.get("value") is not None:
            out[tag] = child.get("value")
    types = []
    for t in el.findall("f:type", NS):
        entry: dict[str, Any] = {"code": _value(t, "code")}
        profiles = [p.get("value") for p in t.findall("f:profile", NS)]
        if profiles:
            entry["profile"] = profiles
        if entry["code"] == "Reference":
            targets = [p.get("value").rsplit("/", 1)[-1] for p in t.findall("f:targetProfile", NS)]
            entry["targetProfile"] = [f"http://hl7.org/fhir/StructureDefinition/{BASE_TYPES.get(x, x)}" for x in targets]
        types.append(entry)
    if types:
        out["type"] = types
    return out


@lru_cache(maxsize=None)
def structure(name: str) -> dict[str, Any]:
    root = ET.parse(DATA / f"StructureDefinition-{name}.xml").getroot()
    elements = [_element(el) for el in root.findall("f:differential/f:element", NS)]
    fixed_urls = {e["id"][:-len(".url")]: e["fixedUri"] for e in elements if e["id"].endswith(".url") and "fixedUri" in e}
    for e in elements:  # a complex extension's parts are sliced by the url their `url` element fixes
        if e.get("sliceName") and not any("profile" in t for t in e.get("type", [])):
            e["type"] = [{"code": "Extension", "profile": [fixed_urls.get(e["id"], e["sliceName"])]}]
    return {"resourceType": "StructureDefinition", "url": _value(root, "url"), "type": _value(root, "type"),
            "differential": {"element": elements}}


@lru_cache(maxsize=None)
def code_system_codes() -> dict[str, set[str]]:
    """CodeSystem name (FSH) → its codes."""
    out: dict[str, set[str]] = {}
    current = None
    for line in (DATA / "CS-CodeSystems.fsh").read_text().splitlines():
        if line.startswith("CodeSystem:"):
            current = line.split(":", 1)[1].strip()
            out[current] = set()
        elif current and (m := re.match(r"\* #([\w-]+)", line)):
            out[current].add(m.group(1))
    return out
