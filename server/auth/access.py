"""SMART scopes as store clauses: what a verified token may do, expressed as SQL predicates.

A `Grant` is what one access token allows (client, scopes, user, patient context). `ScopeClauses`
turns it into the store clauses each selected resource must satisfy, per (type, interaction):

* every context (`system`, `user`, `patient`) whose scopes permit the interaction contributes one
  alternative; the alternatives are OR-ed (`AnyOfClause`), so any permitting scope suffices;
* a granular scope (`patient/Condition.rs?category=…`) becomes the search clauses of its parameters,
  parsed by the FHIR search parser exactly as a client's search would be, AND-ed (`AllOfClause`);
  a parameter the parser cannot turn into a clause makes that alternative match nothing (fail closed);
* the `patient` context adds the patient's compartment (`CompartmentClause` over the hashed
  compartment parameters); types outside the Patient compartment match nothing for it;
* the `user` context is confined to the user's patients unless the user may open any patient;
* resources that name several patients (Group members, Provenance targets, AuditEvent entities) are
  in a confined token's reach only when every patient they name is (an *exclusive* compartment), and
  the Provenance the server records per transaction never is: it lists whatever the transaction wrote.
  FHIR's compartment definition admits them when any one patient matches; we follow the stricter rule
  (SPEC §6: they "never reveal another patient").

The REST layer appends these clauses to every query, so out-of-scope resources are never selected:
a read of one is 404 and a search simply does not return it, with `_include`/`_revinclude` targets
filtered the same way. `SmartAccess` is the request's `server.fhir.context.Access`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from server.auth.rows import about, admits
from server.auth.scopes import Interaction, ScopeSet
from server.fhir import searchparams
from server.fhir.context import forbidden
from server.fhir.errors import FhirError
from server.fhir.search import ParsedSearch, token_clause
from server.fhir.searchparams import IndexRows
from server.fhir.versions import RECORDED_BY_SERVER
from server.store.search import AllOfClause, AnyOfClause, CompartmentClause, NoneClause

ParseSearch = Callable[[str, list[tuple[str, str]]], ParsedSearch]

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
# Result parameters shape the answer, not the selection: in a scope they would restrict nothing.
_RESULT_PARAMS = frozenset({"_count", "_sort", "_summary", "_total", "_include", "_revinclude", "_page",
                            "_format", "_pretty", "_elements", "_contained", "_containedType"})


@dataclass(frozen=True)
class Grant:
    """What one verified access token allows; cached per token until `expires_at`."""

    client_id: str
    scopes: ScopeSet
    expires_at: float
    username: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    # Patients the user's `user/` scopes reach; None when the user may open any patient.
    user_patients: tuple[str, ...] | None = None
    # The user's registration version (`updated_us`) the token was issued for: a removed or changed
    # user's tokens stop working.
    user_version: int | None = None

    @property
    def contexts(self) -> frozenset[str]:
        """Scope contexts this token can use: `patient/` scopes need a patient in context and
        `user/` scopes a signed-in user; without them those scopes grant nothing."""
        kinds = {"system"}
        if self.username is not None:
            kinds.add("user")
        if self.patient is not None:
            kinds.add("patient")
        return frozenset(kinds)

    @property
    def reach(self) -> tuple[str, ...] | None:
        """The patients a compartment-confined token is confined to (None: no compartment confinement)."""
        ids = [self.patient] if self.patient is not None else []
        if self.username is not None and self.user_patients is not None:
            ids += self.user_patients
        return tuple(dict.fromkeys(ids)) or None


# Types whose one resource can name several patients.
MULTI_PATIENT_TYPES = frozenset({"Group", "Provenance", "AuditEvent"})


def compartment_clause(rtype: str, patient_ids: tuple[str, ...]) -> object:
    """Resources of `rtype` in the compartment of any of these patients (nothing if none)."""
    params = searchparams.patient_compartment().get(rtype, ())
    if rtype != "Patient" and not params:
        return NoneClause()
    hashes = tuple(searchparams.param_hash(rtype, code) for code in params)
    clause = CompartmentClause(patient_ids, hashes, rtype == "Patient", exclusive=rtype in MULTI_PATIENT_TYPES)
    if rtype != "Provenance":
        return clause
    system, code = RECORDED_BY_SERVER
    return AllOfClause((clause, token_clause(rtype, "_tag", [f"{system}|{code}"], negate=True)))


class ScopeClauses:
    """The clauses of one grant, computed once per (type, interaction) and kept with the grant."""

    def __init__(self, grant: Grant, parse: ParseSearch):
        self.grant = grant
        self._parse = parse
        self._memo: dict[tuple[str, str], list] = {}

    def __call__(self, rtype: str, interaction: Interaction) -> list:
        key = (rtype, interaction)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._build(rtype, interaction)
        return found

    def _build(self, rtype: str, interaction: Interaction) -> list:
        alternatives = []
        for context in sorted(self.grant.contexts):
            filters = self.grant.scopes.filters_for(rtype, interaction, context_kinds=context)
            if not filters:
                continue
            restriction = [c for c in (self._confinement(context, rtype), self._filter(rtype, filters)) if c is not None]
            if not restriction:
                return []  # an unrestricted scope permits this: no clause at all
            alternatives.append(restriction[0] if len(restriction) == 1 else AllOfClause(tuple(restriction)))
        if not alternatives:
            return [NoneClause()]
        return [alternatives[0] if len(alternatives) == 1 else AnyOfClause(tuple(alternatives))]

    def _confinement(self, context: str, rtype: str) -> object | None:
        if context == "patient":
            return compartment_clause(rtype, (self.grant.patient,))  # type: ignore[arg-type]
        if context == "user" and self.grant.user_patients is not None:
            return compartment_clause(rtype, self.grant.user_patients)
        return None

    def _filter(self, rtype: str, filters: list[list[tuple[str, str]]]) -> object | None:
        """OR over the granular alternatives, each an AND of its parameters; None if unrestricted."""
        if filters == [[]]:
            return None
        options = [self._conditions(rtype, conditions) for conditions in filters]
        return options[0] if len(options) == 1 else AnyOfClause(tuple(options))

    def _conditions(self, rtype: str, conditions: list[tuple[str, str]]) -> object:
        if rtype == "*" or any(name.partition(":")[0] in _RESULT_PARAMS for name, _ in conditions):
            return NoneClause()
        try:
            parsed = self._parse(rtype, conditions)
        except FhirError:
            return NoneClause()
        clauses = parsed.spec.clauses
        if len(clauses) != len(conditions) or parsed.includes or parsed.revincludes or parsed.warnings:
            return NoneClause()
        return clauses[0] if len(clauses) == 1 else AllOfClause(tuple(clauses))


class SmartAccess:
    """The `server.fhir.context.Access` of a request made with a SMART access token."""

    def __init__(self, grant: Grant, clauses: ScopeClauses):
        self.grant = grant
        self._clauses = clauses

    def require(self, rtype: str, interaction: str) -> None:
        """403 unless some usable scope permits the interaction. `*` (system-level history or
        search) needs an unrestricted `*` scope: it cannot be confined to a compartment."""
        allowed = self.grant.scopes.allows(self.grant.contexts, rtype, interaction)  # type: ignore[arg-type]
        if allowed and rtype == "*":
            allowed = not self._clauses("*", interaction)  # type: ignore[arg-type]
        if not allowed:
            what = "all types" if rtype == "*" else rtype
            raise forbidden(f"The access token's scopes do not allow {_VERBS.get(interaction, interaction)} on {what}")

    def clauses(self, rtype: str, interaction: str) -> list:
        return self._clauses(rtype, interaction)  # type: ignore[arg-type]

    def require_system(self) -> None:
        if not any(scope.context == "system" for scope in self.grant.scopes.resource_scopes):
            raise forbidden("This operation reports on the whole server: it needs a system/ scope")

    def check_write(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> None:
        """A confined token writes only what it could read back and, confined to patients, only
        resources about them (SPEC §6): checked on the final resource the writer stages."""
        if not self.may_change(rtype, rid, rows, interaction):
            raise forbidden(f"{rtype} would lie outside what the access token may write: a patient- or "
                            "user-confined token writes only resources about its patients (subject or patient)")

    def may_change(self, rtype: str, rid: str, rows: IndexRows, interaction: str) -> bool:
        clauses = self.clauses(rtype, interaction)
        if not clauses:
            return True
        reach = self.grant.reach
        return admits(clauses, rtype, rid, rows) and (reach is None or about(rtype, rid, rows, reach))

    def sees_version(self, rtype: str, rid: str, rows: IndexRows) -> bool:
        clauses = self.clauses(rtype, "r")
        return not clauses or admits(clauses, rtype, rid, rows)
