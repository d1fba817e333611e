"""Seeding the published definitions as ordinary stored resources, and keeping clients off them.

Each definition is written with PUT semantics at start-up: an unchanged definition is a no-op (the
store keeps its version), a changed one (new PlanFit release, replaced mappings) becomes a new version.
Writes are serialised by the store's write lock, so servers starting together cannot conflict. After
seeding, a write guard refuses every client write to these ids (405), as for the cohort Groups.
"""

from __future__ import annotations

import logging
from typing import Any

from server.fhir.context import RequestContext
from server.fhir.errors import FhirError
from server.fhir.service import FhirService

log = logging.getLogger("planfit.measures")
SOURCE = "urn:planfit:definitions"


def seed_definitions(service: FhirService, resources: list[dict[str, Any]]) -> None:
    ctx = RequestContext.server(SOURCE)
    for resource in resources:
        service.update(resource["resourceType"], resource["id"], resource, ctx, "", None, "return=minimal")
    log.info("definitions seeded: %d resources", len(resources))


def refuse_writes_to(resources: list[dict[str, Any]]):
    """A `FhirService.write_guards` entry protecting the seeded resources."""
    owned = frozenset((r["resourceType"], r["id"]) for r in resources)

    def guard(rtype: str, rid: str, method: str, _resource: dict | None) -> None:
        if (rtype, rid) in owned:
            raise FhirError.of(405, "not-supported", f"{rtype}/{rid} is published by the server: it cannot be "
                                                     f"written ({method})")

    return guard
