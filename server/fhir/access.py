"""What the caller may do: the interface between SMART authorization and the FHIR layer.

The REST layer asks `require` before any interaction and adds `clauses` to every query, so
access rules are SQL predicates (Medplum style) and nothing out of scope is ever selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from server.fhir.service import WriteContext


class Access(Protocol):
    write_context: WriteContext

    def require(self, rtype: str, interaction: str) -> None:
        """Raise FhirError 403 unless the interaction (c r u d s) on the type is allowed."""

    def clauses(self, rtype: str, interaction: str) -> list:
        """Store clauses every selected resource of this type must satisfy."""


@dataclass
class OpenAccess:
    """No restrictions: used when authorization is switched off."""

    write_context: WriteContext

    def require(self, rtype: str, interaction: str) -> None:
        return None

    def clauses(self, rtype: str, interaction: str) -> list:
        return []


def access_of(request: Request) -> Access:
    access = getattr(request.state, "access", None)
    if access is None:
        settings = request.app.state.settings
        access = OpenAccess(WriteContext(source=settings.default_source, source_kind=settings.default_source_kind))
    return access
