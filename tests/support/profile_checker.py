"""A small checker of resources against PlanFit's StructureDefinitions (their differentials).

It checks what PlanFit's profiles constrain: cardinality (min/max per parent element), fixed values,
Reference target types, extension slices (matched by the extension profile's URL), required bindings
to the value sets PlanFit ships (expanded from its code systems, as the server serves them), and every
PlanFit extension found anywhere in the resource against its own extension definition. It is not a
general FHIR validator: the structure itself is checked by `server.fhir.validation.validate_resource`.
"""

from __future__ import annotations

from typing import Any, Iterator

PLANFIT = "https://planfit.dev/fhir/"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class ProfileChecker:
    def __init__(self, definitions: list[dict[str, Any]]):
        by_type: dict[str, dict[str, dict[str, Any]]] = {}
        for resource in definitions:
            by_type.setdefault(resource["resourceType"], {})[resource["url"]] = resource
        self.structures = by_type.get("StructureDefinition", {})
        self.value_sets = by_type.get("ValueSet", {})
        self.code_systems = by_type.get("CodeSystem", {})

    # -- value sets ------------------------------------------------------------------------------------

    def codes(self, value_set: str) -> set[tuple[str, str]]:
        """(system, code) pairs of a shipped value set; KeyError if it is not shipped."""
        out = set()
        for include in self.value_sets[value_set]["compose"]["include"]:
            system = include["system"]
            concepts = include.get("concept") or self.code_systems[system]["concept"]
            out |= {(system, c["code"]) for c in concepts}
        return out

    def _binding_problems(self, where: str, value: Any, value_set: str) -> list[str]:
        allowed = self.codes(value_set)
        if isinstance(value, str):
            ok = value in {code for _, code in allowed}
        elif isinstance(value, dict) and "coding" in value:
            ok = any((c.get("system"), c.get("code")) in allowed for c in value["coding"])
        elif isinstance(value, dict):
            ok = (value.get("system"), value.get("code")) in allowed
        else:
            ok = False
        return [] if ok else [f"{where}: {value!r} is not in {value_set}"]

    # -- paths -----------------------------------------------------------------------------------------

    @staticmethod
    def _children(node: Any, step: str, slice_url: str | None) -> list[Any]:
        if not isinstance(node, dict):
            return []
        if step.endswith("[x]"):
            prefix = step[:-3]
            values = [v for k, v in node.items() if k.startswith(prefix) and k[len(prefix):][:1].isupper()]
        else:
            values = _as_list(node.get(step))
        if slice_url is not None:
            values = [v for v in values if isinstance(v, dict) and v.get("url") == slice_url]
        return values

    def _resolve(self, roots: list[Any], steps: list[tuple[str, str | None]]) -> list[Any]:
        nodes = roots
        for step, slice_url in steps:
            nodes = [child for node in nodes for child in self._children(node, step, slice_url)]
        return nodes

    @staticmethod
    def _steps(element_id: str, slice_urls: dict[str, str]) -> list[tuple[str, str | None]]:
        """`MeasureReport.extension:status.value[x]` → [("extension", <status url>), ("value[x]", None)]."""
        steps = []
        parts = element_id.split(".")
        for i, part in enumerate(parts[1:], start=1):
            name, _, slice_name = part.partition(":")
            steps.append((name, slice_urls[".".join(parts[:i + 1])] if slice_name else None))
        return steps

    # -- checking --------------------------------------------------------------------------------------

    def check(self, resource: dict[str, Any]) -> list[str]:
        """Problems of `resource` against every profile in its meta.profile and of each PlanFit extension."""
        profiles = resource.get("meta", {}).get("profile", [])
        problems = [] if profiles else ["meta.profile is missing"]
        for url in profiles:
            sd = self.structures.get(url)
            if sd is None:
                problems.append(f"meta.profile {url} is not a shipped StructureDefinition")
            elif sd["type"] != resource.get("resourceType"):
                problems.append(f"{url} profiles {sd['type']}, not {resource.get('resourceType')}")
            else:
                problems += self.check_against(resource, sd)
        for where, extension in _extensions(resource, resource.get("resourceType", "")):
            url = extension.get("url", "")
            if url.startswith(PLANFIT):
                sd = self.structures.get(url)
                if sd is None:
                    problems.append(f"{where}: extension {url} has no shipped definition")
                else:
                    problems += [f"{where}: {p}" for p in self.check_against(extension, sd)]
        return problems

    def check_against(self, instance: dict[str, Any], sd: dict[str, Any]) -> list[str]:
        elements = sd["differential"]["element"]
        slice_urls = {e["id"]: e["type"][0]["profile"][0] for e in elements if e.get("sliceName")}
        problems: list[str] = []
        for element in elements:
            steps = self._steps(element["id"], slice_urls)
            if not steps:
                continue
            where = element["id"]
            for parent in self._resolve([instance], steps[:-1]):
                values = self._children(parent, *steps[-1])
                problems += self._element_problems(where, element, values)
        return problems

    def _element_problems(self, where: str, element: dict[str, Any], values: list[Any]) -> list[str]:
        problems = []
        low, high = element.get("min", 0), element.get("max", "*")
        if len(values) < low:
            problems.append(f"{where}: {len(values)} values, at least {low} required")
        if high != "*" and len(values) > int(high):
            problems.append(f"{where}: {len(values)} values, at most {high} allowed")
        for key, fixed in element.items():
            if key.startswith("fixed"):
                problems += [f"{where}: {v!r} is not the fixed value {fixed!r}" for v in values if v != fixed]
        targets = [p.rsplit("/", 1)[-1] for t in element.get("type", []) for p in t.get("targetProfile", [])]
        if targets:
            problems += [f"{where}: reference {v.get('reference')!r} is not to {targets}" for v in values
                         if not str(v.get("reference", "")).split("/")[0] in targets]
        binding = element.get("binding", {})
        if binding.get("strength") == "required":
            for value in values:
                problems += self._binding_problems(where, value, binding["valueSet"])
        return problems


def _extensions(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every extension in the resource, with its path (contained resources included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            for i, item in enumerate(_as_list(value)):
                path = f"{where}.{key}[{i}]" if isinstance(value, list) else f"{where}.{key}"
                if key in ("extension", "modifierExtension") and isinstance(item, dict):
                    yield path, item
                yield from _extensions(item, path)
