"""Roster members in the database: who a $member-add names, and the set-based changes to the rows.

Members and providers are resolved the way the ATR IG names them: a member identifier (the payer's
member id, found on `Patient.identifier` or `Coverage.identifier`, SPEC §11 / ATR spec.md "Member
Identifier in Coverage.identifier") and the provider's NPI, or direct references. Every lookup runs
with the caller's search clauses, so a patient or provider out of the caller's reach is "not known",
exactly as if absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, Select, delete, func, insert, select, update

from server.fhir.context import RequestContext
from server.fhir.errors import FhirError
from server.fhir.service import FhirService
from server.rosters.atr import NPI_SYSTEM
from server.rosters.versions import record_removal
from server.fhir.searchparams import param_hash
from server.store.hashing import h64
from server.store.resources import chunks
from server.store.roster_schema import roster_members
from server.store.schema import idx_reference, idx_token, resources
from server.store.search import clause_sql, page_statement

m = roster_members.c
r, t, x = resources.c, idx_token.c, idx_reference.c
PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")


@dataclass(frozen=True)
class MemberKey:
    """Which member rows an operation means: a patient, optionally with a provider and a coverage."""

    patient_id: str
    provider_ref: str | None = None
    coverage_id: str | None = None

    def where(self, group_id: str) -> list:
        conditions = [m.group_id == group_id, m.patient_id == self.patient_id]
        if self.provider_ref is not None:
            conditions.append(m.provider_ref == self.provider_ref)
        if self.coverage_id is not None:
            conditions.append(m.coverage_id == self.coverage_id)
        return conditions


class Resolver:
    """Finds patients, providers and coverages within the caller's reach, on the operation's connection."""

    def __init__(self, service: FhirService, ctx: RequestContext, conn: Connection):
        self.service, self.ctx, self.conn = service, ctx, conn

    def ids(self, rtype: str, params: list[tuple[str, str]], limit: int = 2) -> list[str]:
        parsed = self.service.parse(rtype, params, strict=True)
        parsed.spec.clauses.extend(self.ctx.access.clauses(rtype, "s"))
        parsed.spec.count = limit
        return [row.rid for row in self.conn.execute(page_statement(parsed.spec, columns=(resources.c.rid,)))][:limit]

    def exists(self, rtype: str, rid: str) -> bool:
        return bool(self.ids(rtype, [("_id", rid)], 1))

    def patient_by_member_id(self, system: str | None, value: str) -> str:
        """The one Patient the member identifier names (on the Patient, or on a Coverage's identifier)."""
        token = f"{system}|{value}" if system else value
        found = self.ids("Patient", [("identifier", token)])
        if not found:
            coverages = self.ids("Coverage", [("identifier", token)])
            if len(coverages) == 1:
                found = self._beneficiary(coverages[0])
        if len(found) != 1:
            raise FhirError.of(422, "not-found", "The member identifier names no single member known to the server",
                               "Parameters.parameter[memberId]")
        return found[0]

    def _beneficiary(self, coverage_id: str) -> list[str]:
        stored = self.service.store.read("Coverage", coverage_id, self.conn)
        assert stored is not None and stored.content is not None  # just found by a search
        reference = (orjson.loads(stored.content).get("beneficiary") or {}).get("reference") or ""
        rtype, _, rid = reference.partition("/")
        return [rid] if rtype == "Patient" and self.exists("Patient", rid) else []

    def patient(self, reference: str) -> str:
        rtype, _, rid = reference.partition("/")
        if rtype != "Patient" or not rid or not self.exists("Patient", rid):
            raise FhirError.of(422, "not-found", f"{reference} is not a known patient",
                               "Parameters.parameter[patientReference]")
        return rid

    def provider_by_npi(self, system: str | None, value: str) -> str:
        if system not in (None, NPI_SYSTEM):
            raise FhirError.of(422, "invalid", f"providerNpi uses the NPI system {NPI_SYSTEM}",
                               "Parameters.parameter[providerNpi]")
        for rtype in PROVIDER_TYPES:
            found = self.ids(rtype, [("identifier", f"{NPI_SYSTEM}|{value}")])
            if len(found) == 1:
                return f"{rtype}/{found[0]}"
        raise FhirError.of(422, "not-found", "The NPI names no single provider known to the server",
                           "Parameters.parameter[providerNpi]")

    def provider(self, reference: str) -> str:
        rtype, _, rid = reference.partition("/")
        if rtype not in PROVIDER_TYPES or not rid or not self.exists(rtype, rid):
            raise FhirError.of(422, "not-found", f"{reference} is not a known Practitioner, PractitionerRole or "
                                                 "Organization", "Parameters.parameter[providerReference]")
        return reference

    # ---- set-based lookups for whole files ---------------------------------------------------------

    def _reachable(self, rtype: str) -> Select:
        """Ids of the type the caller may search (its scopes' clauses, in SQL)."""
        return select(r.rid).where(r.rtype == rtype, r.deleted.is_(False),
                                   *(clause_sql(c, rtype) for c in self.ctx.access.clauses(rtype, "s")))

    def _by_identifier(self, rtype: str, system: str | None, values: list[str]) -> dict[str, list[str]]:
        """identifier value → ids of the type carrying it (with `system`, or any system when None)."""
        column = t.h_sys_value if system else t.h_value
        by_hash = {h64(rtype, "identifier", system, v) if system else h64(rtype, "identifier", v): v for v in values}
        found: dict[str, list[str]] = {}
        for chunk in chunks(list(by_hash)):
            stmt = select(t.rid, column).where(t.rtype == rtype, column.in_(chunk), t.rid.in_(self._reachable(rtype)))
            for rid, h in self.conn.execute(stmt):
                found.setdefault(by_hash[h], []).append(rid)
        return found

    def providers_by_npi(self, npis: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for rtype in PROVIDER_TYPES:
            for npi, ids in self._by_identifier(rtype, NPI_SYSTEM, [n for n in npis if n not in out]).items():
                if len(set(ids)) == 1:
                    out[npi] = f"{rtype}/{ids[0]}"
        return out

    def coverages_of(self, patient_ids: list[str]) -> dict[str, str]:
        """patient → its most recently written Coverage."""
        latest: dict[str, tuple[int, str]] = {}
        for chunk in chunks(patient_ids):
            stmt = (select(x.target_id, r.rid, r.lu)
                    .join(resources, (r.rtype == x.rtype) & (r.rid == x.rid))
                    .where(x.rtype == "Coverage", x.h_param == param_hash("Coverage", "beneficiary"),
                           x.target_type == "Patient", x.target_id.in_(chunk), r.rid.in_(self._reachable("Coverage"))))
            for pid, rid, lu in self.conn.execute(stmt):
                if pid not in latest or lu > latest[pid][0]:
                    latest[pid] = (lu, rid)
        return {pid: rid for pid, (_lu, rid) in latest.items()}


def add_member(conn: Connection, group_id: str, values: dict) -> str:
    """Add (changeType new) or, if the same patient is already attributed to the same provider, update the
    attribution (changed). Returns the change type."""
    provider = values.get("provider_ref")
    same_provider = m.provider_ref.is_(None) if provider is None else m.provider_ref == provider
    held = conn.execute(select(m.id).where(m.group_id == group_id, m.patient_id == values["patient_id"],
                                           same_provider).limit(1)).first()
    if held is None:
        conn.execute(insert(roster_members).values(group_id=group_id, inactive=False, change_type="new", **values))
        return "new"
    conn.execute(update(roster_members).where(m.id == held.id)
                 .values(inactive=False, change_type="changed", **values))
    return "changed"


def remove_members(conn: Connection, group_id: str, key: MemberKey, status: str, today: str, stamp: dict,
                   version: int) -> int:
    """$member-remove: in `draft` the rows stay, inactive and `dropped` with their period ended; in `open`
    they are removed (ATR OperationDefinition member-remove), their removal kept in the list's history
    under `version`. Returns the rows affected."""
    where = [*key.where(group_id), m.inactive.is_(False)]
    if status == "draft":
        ended = func.coalesce(m.period_end, today)
        return conn.execute(update(roster_members).where(*where)
                            .values(inactive=True, change_type="dropped", period_end=ended, **stamp)).rowcount
    record_removal(conn, version, where, stamp)
    return conn.execute(delete(roster_members).where(*where)).rowcount


def active_count(conn: Connection, group_id: str) -> int:
    return conn.execute(select(func.count()).select_from(roster_members)
                        .where(m.group_id == group_id, m.inactive.is_(False))).scalar_one()


def member_rows(conn: Connection, group_id: str, patient_id: str | None = None) -> list:
    stmt = select(roster_members).where(m.group_id == group_id).order_by(m.id)
    if patient_id is not None:
        stmt = stmt.where(m.patient_id == patient_id)
    return list(conn.execute(stmt))
