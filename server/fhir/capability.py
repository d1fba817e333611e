"""The CapabilityStatement: exactly the types, interactions and search parameters implemented."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import orjson

from server.fhir import searchparams
from server.fhir.features import Feature, capability_parts

_TYPE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")
_COMMON_PARAMS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    ("_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
)


def _resource_entry(rtype: str, params: dict) -> dict:
    reference_params = sorted(code for code, p in params.items() if p.type == "reference")
    search = [{"name": n, "type": t, "definition": d} for n, t, d in _COMMON_PARAMS]
    search += [
        {"name": code, "type": p.type, "definition": p.definition}
        for code, p in sorted(params.items())
    ]
    return {
        "type": rtype,
        "interaction": [{"code": c} for c in _TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchInclude": [f"{rtype}:{code}" for code in reference_params] + ([f"{rtype}:*"] if reference_params else []),
        "searchRevInclude": _revincludes_of(rtype),
        "searchParam": search,
    }


@lru_cache(maxsize=None)
def _revincludes_of(rtype: str) -> list[str]:
    out = []
    for source, params in searchparams.registry().items():
        for code, p in params.items():
            if p.type == "reference" and (not p.targets or rtype in p.targets):
                out.append(f"{source}:{code}")
    return sorted(out)


@lru_cache(maxsize=8)
def _statement(base: str, extras_key: tuple) -> bytes:
    registry = searchparams.registry()
    rest = {
        "mode": "server",
        "resource": [_resource_entry(rtype, registry[rtype]) for rtype in sorted(registry)],
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    for key, value in extras_key:
        if key == "resourceOperation":
            operations = orjson.loads(value)
            for entry in rest["resource"]:
                if entry["type"] in operations:
                    entry["operation"] = operations[entry["type"]]
        else:
            rest[key] = orjson.loads(value)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "PlanFit",
        "kind": "instance",
        "software": {"name": "PlanFit", "version": "0.1.0"},
        "implementation": {"description": "PlanFit FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
    return orjson.dumps(statement)


def capability_statement(base: str, features: Sequence[Feature]) -> bytes:
    """The statement of the REST API with what the features declare: operations (system level and per
    resource type) and rest-level parts such as `security`."""
    parts = capability_parts(features, base)
    return _statement(base, tuple(sorted((k, orjson.dumps(v)) for k, v in parts.items())))
