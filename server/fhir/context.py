"""The request context: who is asking and what they may do, handed explicitly to every interaction.

The auth middleware authenticates the caller and builds one `RequestContext` per FHIR request (Medplum's
"one repository per request"). Routes pass it into `FhirService` and its `Writer`, the operations and
the export jobs; nothing below reads it from a global. Its `Access` is the one authorization check:

* `require(type, interaction)`: may the caller do this at all (SMART scopes), else 403;
* `clauses(type, interaction)`: SQL predicates every selected resource must satisfy (compartment,
  granular filters), appended to every query, so nothing out of reach is ever selected;
* `check_write` / `may_change`: the writer's check of the final resource it stages (after fullUrl and
  conditional-reference rewriting) and of the stored version it replaces, inside the write transaction;
* `sees_version`: whether one stored version (vread, history) lies within the caller's reach;
* `require_system`: for answers about the whole server.

Operations declare what their answer reveals as `Reads`, checked through the same `Access`.

`FullAccess` allows everything. It exists for two explicit cases only: `PLANFIT_AUTH=off`, and the
server's own writes (`RequestContext.server`). A request without a context is refused (`context_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request

from server.fhir.errors import FhirError, Issue
from server.fhir.searchparams import IndexRows
from server.fhir.types import WriteContext
from server.store.search import AllOfClause, AnyOfClause, CompartmentClause

# Evidence kind of what patient-facing tokens write (SPEC §6): shown, never qualifying.
PATIENT_REPORTED = "patient-reported"


@dataclass
class AuditRecord:
    """One FHIR interaction. `entities` is filled while the request runs (writes add versions)."""

    recorded_us: int
    interaction: str  # http://hl7.org/fhir/restful-interaction code, or "operation"
    client_id: str | None = None
    username: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    rtype: str | None = None
    rid: str | None = None
    query: str | None = None
    remote_addr: str | None = None
    status: int = 0
    entities: list[str] = field(default_factory=list)


def forbidden(message: str) -> FhirError:
    return FhirError(403, Issue("error", "forbidden", message), {"WWW-Authenticate": 'Bearer error="insufficient_scope"'})


class Access(Protocol):
    def require(self, rtype: str, interaction: str) -> None:
        """Raise 403 unless the interaction (c r u d s) on the type is allowed ("*": every type)."""

    def clauses(self, rtype: str, interaction: str) -> list:
        """Store clauses every selected resource of this type must satisfy ([]: unrestricted)."""

    def require_system(self) -> None:
        """Raise 403 unless the caller holds a `system/` scope (server-wide facts)."""

    def check_write(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> None:
        """Raise 403 unless the caller may store a version with these index rows."""

    def may_change(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> bool:
        """Whether the caller may update (u) or delete (d) the stored version with these index rows."""

    def sees_version(self, rtype: str, rid: str, rows: IndexRows) -> bool:
        """Whether the caller may read a (possibly old) version with these index rows."""


class FullAccess:
    """No restriction: PLANFIT_AUTH=off, or the server writing its own resources."""

    def require(self, rtype: str, interaction: str) -> None:
        return None

    def clauses(self, rtype: str, interaction: str) -> list:
        return []

    def require_system(self) -> None:
        return None

    def check_write(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> None:
        return None

    def may_change(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> bool:
        return True

    def sees_version(self, rtype: str, rid: str, rows: IndexRows) -> bool:
        return True


@dataclass
class RequestContext:
    """Everything an interaction needs to know about its caller."""

    access: Access
    writer: WriteContext
    audit: AuditRecord
    username: str | None = None
    patient: str | None = None  # the token's patient context
    publishing: bool = False  # the server writing what it publishes: write guards do not apply


    @property
    def client_id(self) -> str | None:
        return self.writer.client_id

    @classmethod
    def server(cls, source: str) -> "RequestContext":
        """The server itself, writing what it publishes (seeded definitions); never audited."""
        return cls(FullAccess(), WriteContext(source=source), AuditRecord(0, "operation"), publishing=True)


def context_of(request: Request) -> RequestContext:
    """The request's context. Without one nothing is allowed: a wiring error, answered 500 and logged."""
    ctx = getattr(request.state, "context", None)
    if ctx is None:
        raise RuntimeError("no RequestContext: the auth middleware did not run for this request")
    return ctx


@dataclass(frozen=True)
class Reads:
    """What an operation's answer reveals, by resource type: `Patient/{id}/$alignment` shows diagnoses
    (Condition, Claim, ExplanationOfBenefit) and products (Coverage), so it reads those types."""

    types: tuple[str, ...]

    def require_for_patient(self, access: Access, patient_id: str) -> None:
        """403 unless the caller may read every resource of each type in that patient's compartment:
        a granular filter (`patient/Condition.rs?category=…`) sees only some of the diagnoses the
        answer summarises, so it is not enough. The caller must already have read the Patient (404)."""
        for rtype in self.types:
            access.require(rtype, "r")
            if not all(_covers(clause, patient_id) for clause in access.clauses(rtype, "r")):
                raise forbidden(f"The access token may not read every {rtype} of this patient, which this answer shows")

    def require_for_population(self, access: Access) -> None:
        """403 unless the caller may search every resource of each type (SPEC §6: population and
        subject-list reports count members, so they need user/ or system/ access to all of them)."""
        for rtype in ("Patient", *self.types):
            access.require(rtype, "s")
            if access.clauses(rtype, "s"):
                raise forbidden(f"Population reports need a user/ or system/ {rtype} scope that is not confined "
                                "to a compartment or a filter")


def _covers(clause: object, patient_id: str) -> bool:
    """Whether a clause admits every resource of its type in the patient's compartment."""
    if isinstance(clause, CompartmentClause):
        return patient_id in clause.patient_ids and not clause.exclusive
    if isinstance(clause, AnyOfClause):
        return any(_covers(c, patient_id) for c in clause.clauses)
    if isinstance(clause, AllOfClause):
        return all(_covers(c, patient_id) for c in clause.clauses)
    return False  # a filter (token, date, string…) or NoneClause: only some, or none
