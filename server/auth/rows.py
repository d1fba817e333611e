"""Store clauses evaluated over one resource version's index rows, in Python.

Reads of current versions are confined in SQL. Three checks cannot be: the version a writer is about
to stage (a confined token must write what it could read back), the stored version it replaces (read
through the write transaction's own connection), and an old version read by `vread` or `_history`
(the index tables hold current versions only). All have the version's index rows
(`searchparams.index_rows`, the very rows the SQL clauses match once stored), and this module
evaluates store clauses over them with the semantics of `server.store.search.clause_sql`.

Clauses that depend on what only the store knows (`_lastUpdated`) evaluate to False: fail closed.
"""

from __future__ import annotations

from server.fhir import searchparams
from server.fhir.searchparams import IndexRows
from server.store.search import (
    AllOfClause,
    AnyOfClause,
    CompartmentClause,
    DateClause,
    IdClause,
    NoneClause,
    NumberClause,
    ReferenceClause,
    StringClause,
    TokenClause,
    TokenSetClause,
)

_TOKEN_COLUMNS = {"h_value": 1, "h_sys_value": 2, "h_sys": 3}  # positions in IndexRows.tokens
# The parameters that say whom a resource is about (FHIR: Resource.subject / .patient).
_SUBJECT_PARAMS = ("patient", "subject")


def about(rtype: str, rid: str | None, rows: IndexRows, patients: tuple[str, ...]) -> bool:
    """Whether the resource is about these patients only: a Patient among them, or a resource whose
    subject/patient names one of them and whose every compartment reference to a Patient is one of
    them. (Compartment membership alone is wider: `Condition.asserter` puts a diagnosis of patient C
    in the compartment of the patient A who asserted it.)"""
    if rtype == "Patient":
        return rid is not None and rid in patients
    params = searchparams.registry().get(rtype, {})
    subject = {searchparams.param_hash(rtype, p) for p in _SUBJECT_PARAMS if p in params}
    compartment = {searchparams.param_hash(rtype, p) for p in searchparams.patient_compartment().get(rtype, ())}
    named = [(hp, tid) for hp, ttype, tid, _url in rows.references if ttype == "Patient"]
    subjects = [tid for hp, tid in named if hp in subject]
    others = [tid for hp, tid in named if hp in compartment]
    return bool(subjects) and all(tid in patients for tid in subjects + others)


def admits(clauses: list, rtype: str, rid: str | None, rows: IndexRows) -> bool:
    """True if a resource with these index rows satisfies every clause (AND)."""
    return all(_holds(c, rtype, rid, rows) for c in clauses)


def _holds(clause: object, rtype: str, rid: str | None, rows: IndexRows) -> bool:
    if isinstance(clause, AnyOfClause):
        return any(_holds(c, rtype, rid, rows) for c in clause.clauses)
    if isinstance(clause, AllOfClause):
        return all(_holds(c, rtype, rid, rows) for c in clause.clauses)
    if isinstance(clause, NoneClause):
        return False
    if isinstance(clause, IdClause):
        return rid is not None and rid in clause.ids
    if isinstance(clause, CompartmentClause):
        return _in_compartment(clause, rtype, rid, rows)
    if isinstance(clause, TokenClause):
        hit = any(row[_TOKEN_COLUMNS[col]] == h for col, h in clause.alternatives for row in rows.tokens)
        return hit != clause.negate
    if isinstance(clause, TokenSetClause):
        return _token_set(clause, rows) != clause.negate
    if isinstance(clause, StringClause):
        return any(_string_match(clause, norm, exact) for hp, norm, exact in rows.strings if hp == clause.h_param)
    if isinstance(clause, DateClause):
        return any(
            _date_match(op, lo, hi, plo, phi)
            for hp, lo, hi in rows.dates
            if hp == clause.h_param
            for op, plo, phi in clause.alternatives
        )
    if isinstance(clause, NumberClause):
        return any(r.holds(x) for hp, x in rows.numbers if hp == clause.h_param for r in clause.alternatives)
    if isinstance(clause, ReferenceClause):
        return any(_reference_match(clause, row) for row in rows.references)
    return False


def _in_compartment(clause: CompartmentClause, rtype: str, rid: str | None, rows: IndexRows) -> bool:
    named = [tid for hp, ttype, tid, _url in rows.references if hp in clause.h_params and ttype == "Patient" and tid]
    if clause.exclusive and any(tid not in clause.patient_ids for tid in named):
        return False
    if clause.is_patient_type and rid is not None and rid in clause.patient_ids:
        return True
    return any(tid in clause.patient_ids for tid in named)


def _token_set(clause: TokenSetClause, rows: IndexRows) -> bool:
    for hp, _v, _sv, _s, system, code in rows.tokens:
        if hp != clause.h_param or code is None:
            continue
        if any(system == s and code == c for s, c in clause.exact):
            return True
        if any(system == s and code.startswith(p) for s, p in clause.prefixes):
            return True
    return False


def _string_match(clause: StringClause, norm: str, exact: str) -> bool:
    if clause.mode == "exact":
        return exact in clause.values
    if clause.mode == "contains":
        return any(v in norm for v in clause.values)
    return any(norm.startswith(v) for v in clause.values)


def _date_match(op: str, lo: int, hi: int, plo: int, phi: int) -> bool:
    """`server.store.search._date_predicate`, over one stored range."""
    return {
        "eq": lo >= plo and hi <= phi,
        "ne": lo < plo or hi > phi,
        "gt": hi > phi,
        "lt": lo < plo,
        "ge": hi >= plo,
        "le": lo <= phi,
        "sa": lo > phi,
        "eb": hi < plo,
        "ap": lo <= phi and hi >= plo,
    }.get(op, False)


def _reference_match(clause: ReferenceClause, row: tuple) -> bool:
    hp, ttype, tid, url = row
    if hp not in clause.h_params:
        return False
    if any(tid == want_id and (want_type is None or ttype == want_type) for want_type, want_id in clause.targets):
        return True
    return url is not None and url in clause.urls
