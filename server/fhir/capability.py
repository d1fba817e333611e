"""The CapabilityStatement: exactly the types, interactions and search parameters implemented.

Built with the fhir.resources R4B models (typed, and they drop the empty arrays FHIR JSON forbids),
once per FHIR base and set of features: it is cached, so the models' cost (~0.1 s for ~700 kB) is paid
at the first `/metadata` only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import orjson
from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementImplementation,
    CapabilityStatementRest,
    CapabilityStatementRestInteraction,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceOperation,
    CapabilityStatementRestResourceSearchParam,
    CapabilityStatementSoftware,
)

from server.fhir import searchparams
from server.fhir.features import Feature, capability_parts

_TYPE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")
_SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
_COMMON_PARAMS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    ("_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
)


def _resource_entry(rtype: str, params: dict, operations: list[dict]) -> CapabilityStatementRestResource:
    reference_params = sorted(code for code, p in params.items() if p.type == "reference")
    search = [CapabilityStatementRestResourceSearchParam(name=n, type=t, definition=d) for n, t, d in _COMMON_PARAMS]
    search += [
        CapabilityStatementRestResourceSearchParam(name=code, type=p.type, definition=p.definition)
        for code, p in sorted(params.items())
    ]
    return CapabilityStatementRestResource(
        type=rtype,
        interaction=[CapabilityStatementRestResourceInteraction(code=c) for c in _TYPE_INTERACTIONS],
        versioning="versioned-update",
        readHistory=True,
        updateCreate=True,
        conditionalCreate=True,
        conditionalRead="not-supported",
        conditionalUpdate=True,
        conditionalDelete="single",
        referencePolicy=["literal", "logical"],
        searchInclude=[f"{rtype}:{code}" for code in reference_params] + ([f"{rtype}:*"] if reference_params else []),
        searchRevInclude=_revincludes_of(rtype),
        searchParam=search,
        operation=[CapabilityStatementRestResourceOperation.model_validate(op) for op in operations],
    )


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
    extras = {key: orjson.loads(value) for key, value in extras_key}
    by_type = extras.pop("resourceOperation", {})
    rest = CapabilityStatementRest.model_validate({"mode": "server", **extras})
    rest.resource = [_resource_entry(rtype, registry[rtype], by_type.get(rtype, [])) for rtype in sorted(registry)]
    rest.interaction = [CapabilityStatementRestInteraction(code=c) for c in _SYSTEM_INTERACTIONS]
    statement = CapabilityStatement(
        status="active",
        date="2026-11-23",
        publisher="PlanFit",
        kind="instance",
        software=CapabilityStatementSoftware(name="PlanFit", version="0.1.0"),
        implementation=CapabilityStatementImplementation(description="PlanFit FHIR R4 server", url=base),
        fhirVersion="4.0.1",
        format=["application/fhir+json", "json"],
        rest=[rest],
    )
    return statement.model_dump_json().encode()


def capability_statement(base: str, features: Sequence[Feature]) -> bytes:
    """The statement of the REST API with what the features declare: operations (system level and per
    resource type) and rest-level parts such as `security`."""
    parts = capability_parts(features, base)
    return _statement(base, tuple(sorted((k, orjson.dumps(v)) for k, v in parts.items())))
