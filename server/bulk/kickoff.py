"""Kick-off parameters (Bulk Data Access 2.0) → an `ExportPlan`, or a 4xx OperationOutcome.

Everything that can be wrong with a request is found here, before a job exists: a bad
`_outputFormat`, `_since` or `_typeFilter`, an unknown or unauthorised type, an unknown Group,
patients outside the Group. Under `Prefer: handling=lenient`, unknown parameters and unsupported
types are ignored instead and reported in the manifest's `error` file. `_typeFilter` problems
are never ignored: dropping a filter would export more than the client asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl

from sqlalchemy import select

from server.bulk.members import GroupMembership
from server.bulk.plan import ExportPlan, TypePlan
from server.bulk.query import patients_of
from server.fhir import searchparams
from server.fhir.context import Access, RequestContext
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError, Issue
from server.fhir.search import split_values
from server.fhir.service import FhirService
from server.store.schema import resources
from server.store.search import clause_sql

GROUP_TYPES = ("Patient", "Coverage", "Condition", "Claim", "ExplanationOfBenefit", "Group")
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
_SINGLE = ("_outputFormat", "_since")
_LISTS = ("_type", "_typeFilter", "patient")
# Result parameters make no sense inside a _typeFilter (the spec forbids _include and _sort).
_FILTER_FORBIDDEN = frozenset(
    {"_include", "_revinclude", "_sort", "_count", "_summary", "_total", "_page", "_elements", "_contained"}
)
# Queries are joined with commas, and may hold commas themselves: split only before "Type?".
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]*\?)")


@dataclass(frozen=True)
class KickOff:
    level: str  # system | patient | group
    group_id: str | None
    params: list[tuple[str, str]]
    lenient: bool
    until: str | None = None  # `_until`: Da Vinci ATR's $davinci-data-export only


@dataclass
class _Problems:
    """Raises 400 for a problem, or records it as a warning when the client asked for leniency."""

    lenient: bool
    issues: list[dict] = field(default_factory=list)

    def report(self, diagnostics: str, expression: str) -> None:
        if not self.lenient:
            raise FhirError.of(400, "not-supported", diagnostics, expression)
        self.issues.append(Issue("warning", "not-supported", diagnostics + " (ignored)", (expression,)).to_json())


def plan_export(
    service: FhirService, groups: GroupMembership, ctx: RequestContext, kick: KickOff, base: str
) -> ExportPlan:
    access = ctx.access
    problems = _Problems(kick.lenient)
    values = _collect(kick.params, problems)
    _check_output_format(values.get("_outputFormat"))
    since_us = _instant(values.get("_since"), "_since")
    until_us = _instant([kick.until] if kick.until is not None else None, "_until")
    if kick.level == "group":
        service.read("Group", kick.group_id or "", base, ctx)  # 404 unless visible, like a read
    types = _types(kick.level, values.get("_type"), access, problems)
    filters = _type_filters(service, values.get("_typeFilter", []), types, base)
    plan = ExportPlan(
        level=kick.level,
        types=tuple(TypePlan(t, tuple(access.clauses(t, "s")), filters.get(t, ())) for t in types),
        group_id=kick.group_id,
        since_us=since_us,
        until_us=until_us,
    )
    patient_ids = _patient_ids(service, groups, access, plan, values.get("patient"), problems)
    return replace(plan, patient_ids=patient_ids, warnings=tuple(problems.issues))


def _collect(params: list[tuple[str, str]], problems: _Problems) -> dict[str, list[str]]:
    """Values per known parameter; repeated list parameters are one comma-joined value (spec)."""
    values: dict[str, list[str]] = {}
    for name, raw in params:
        if name in _SINGLE:
            if name in values:
                raise FhirError.of(400, "invalid", f"{name} may be given only once", name)
            values[name] = [raw]
        elif name == "_typeFilter":
            values.setdefault(name, []).extend(q for q in _FILTER_SPLIT.split(raw) if q)
        elif name in _LISTS:
            values.setdefault(name, []).extend(v.strip() for v in split_values(raw) if v.strip())
        else:
            problems.report(f"Parameter '{name}' is not supported by $export", name)
    return values


def _check_output_format(value: list[str] | None) -> None:
    if value is not None and value[0] not in OUTPUT_FORMATS:
        raise FhirError.of(
            400, "not-supported", "_outputFormat must be application/fhir+ndjson, application/ndjson or ndjson", "_outputFormat"
        )


def _instant(value: list[str] | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return date_range(value[0])[0]
    except DateValueError:
        raise FhirError.of(400, "invalid", f"{name} must be a FHIR instant", name) from None


def _allowed_types(level: str) -> frozenset[str]:
    if level == "system":
        return searchparams.resource_types()
    compartment = frozenset(searchparams.patient_compartment()) | {"Patient"}
    return compartment | {"Group"} if level == "group" else compartment


def _types(level: str, requested: list[str] | None, access: Access, problems: _Problems) -> list[str]:
    """The exported types: as asked (each must be allowed), or every allowed type in scope."""
    allowed = _allowed_types(level)
    if requested is None:
        defaults = GROUP_TYPES if level == "group" else sorted(allowed)
        return [t for t in defaults if _permitted(access, t)]
    types = []
    for rtype in dict.fromkeys(requested):
        if rtype not in allowed:
            problems.report(f"Resource type '{rtype}' cannot be exported at this level", "_type")
            continue
        access.require(rtype, "s")
        types.append(rtype)
    return types


def _permitted(access: Access, rtype: str) -> bool:
    try:
        access.require(rtype, "s")
    except FhirError:
        return False
    return True


def _type_filters(
    service: FhirService, queries: list[str], types: list[str], base: str
) -> dict[str, tuple[tuple[object, ...], ...]]:
    """Each `Type?query` parsed by the search parser into store clauses; alternatives per type."""
    filters: dict[str, list[tuple[object, ...]]] = {}
    for query in queries:
        rtype, mark, text = query.partition("?")
        if not mark or rtype not in types:
            raise FhirError.of(400, "invalid", f"_typeFilter '{query}' does not name an exported type", "_typeFilter")
        params = parse_qsl(text, keep_blank_values=True)
        forbidden = sorted({name.partition(":")[0] for name, _ in params} & _FILTER_FORBIDDEN)
        if forbidden:
            raise FhirError.of(400, "invalid", f"_typeFilter may not use {', '.join(forbidden)}", "_typeFilter")
        parsed = service.parse(rtype, params, strict=True, base=base)
        filters.setdefault(rtype, []).append(tuple(parsed.spec.clauses))
    return {t: tuple(f) for t, f in filters.items()}


def _patient_ids(
    service: FhirService, groups: GroupMembership, access: Access, plan: ExportPlan, references: list[str] | None,
    problems: _Problems,
) -> tuple[str, ...]:
    """The POST `patient` parameter, checked against the Group, or the Patients the caller may see
    (so a caller cannot probe whether a patient outside its access exists)."""
    if references is None:
        return ()
    if plan.level == "system":
        raise FhirError.of(400, "invalid", "The patient parameter applies to Patient and Group exports only", "patient")
    wanted = []
    for ref in references:
        rtype, rid, _url = searchparams.split_reference(ref)
        if rtype != "Patient" or rid is None:
            raise FhirError.of(400, "invalid", f"patient must reference a Patient, not '{ref}'", "patient")
        wanted.append(rid)
    with service.store.connection() as conn:
        candidates = patients_of(conn, ExportPlan(plan.level, (), plan.group_id, tuple(wanted)), groups)
        assert candidates is not None
        visible = select(resources.c.rid).where(
            resources.c.rtype == "Patient",
            resources.c.rid.in_(candidates),
            *(clause_sql(c, "Patient") for c in access.clauses("Patient", "s")),
        )
        found = set(conn.execute(visible).scalars())
    for rid in wanted:
        if rid not in found:
            problems.report(f"Patient/{rid} is not a patient of this export", "patient")
    kept = tuple(rid for rid in dict.fromkeys(wanted) if rid in found)
    if not kept:
        raise FhirError.of(400, "invalid", "None of the patients given can be exported", "patient")
    return kept
