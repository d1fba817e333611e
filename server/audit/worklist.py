"""The worklist (issue 22 item 4): members with findings, filtered, by estimated impact, a page at a time.

A page is one keyset read of `ix_findings_worklist` (impact highest first, then patient id): the cursor
holds the last row's (impact key, patient id) and the next page starts strictly after it, so page 2,000
costs what page 1 costs. Filters on the findings row are checked on the rows the index yields; filters on
a member's coverages, plan codes (`finding_plans`, written with the finding), categories or evidence are
EXISTS probes of tables keyed by patient id first. The total is one COUNT over the same filters, read first:
when the matches are too few for a walk to meet a page of them soon (fewer than `DENSE_MATCHES` per row of
the page), the page is the first rows of every match sorted, which costs what the count cost. Everything
the page shows about its (at most `MAX_COUNT`) members is then read with one IN-list query per table.

Filters (each a comma-separated list; a member matches any value of a filter and every filter given):
`status` (default: `misaligned,review`, the members with something to act on), `kind` (a reason code),
`enrolled` / `recommended` (product codes), `lob` (line of business of an active coverage), `plan` (the
plan an active coverage names: `Coverage.class` of type plan, as written, any case), `category` (a
diagnosis value set with counted evidence) and `source` (a source kind of the member's diagnosis
evidence: clinical, claims, patient-reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

import orjson
from sqlalchemy import ColumnElement, Connection, Select, exists, func, literal, or_, select, tuple_

from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import LINES_OF_BUSINESS, Mappings
from server.alignment.rules import REASONS
from server.fhir.context import PATIENT_REPORTED
from server.fhir.errors import FhirError
from server.store.alignment_schema import (
    finding_categories,
    finding_coverage,
    finding_evidence,
    finding_plans,
    findings,
)
from server.store.audit_schema import worklist_impact
from server.store.schema import idx_token, resources

STATUSES = ("misaligned", "review", "aligned", "not-evaluable")
DEFAULT_STATUSES = ("misaligned", "review")
SOURCE_KINDS = ("clinical", "claims", PATIENT_REPORTED)
DEFAULT_COUNT, MAX_COUNT = 50, 500
SORT = "-impact"  # the one order the index serves
DENSE_MATCHES = 20  # matches per row of a page at which walking the index beats sorting every match
FILTERS = ("status", "kind", "enrolled", "recommended", "lob", "plan", "category", "source")


@dataclass(frozen=True)
class WorklistQuery:
    filters: Mapping[str, tuple[str, ...]]
    count: int = DEFAULT_COUNT
    after: tuple[int, str] | None = None  # (impact key, patient id) of the previous page's last row


@dataclass
class WorklistRow:
    patient_id: str
    status: str
    enrolled: str | None
    recommended: str | None
    impact_cents: int | None
    currency: str
    reasons: tuple[str, ...]
    name: str = ""
    lines_of_business: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # counted value sets; non-claims ones marked
    non_claims: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def impact(self) -> Decimal | None:
        return None if self.impact_cents is None else Decimal(self.impact_cents) / 100


@dataclass(frozen=True)
class WorklistPage:
    total: int
    rows: list[WorklistRow]
    next_cursor: str | None


def _invalid(message: str, name: str) -> FhirError:
    return FhirError.of(400, "invalid", message, name)


def parse_query(params: Iterable[tuple[str, str]], mappings: Mappings) -> WorklistQuery:
    """The query parameters, checked against the vocabularies they name (400 for anything else)."""
    allowed = {
        "status": STATUSES, "kind": REASONS, "enrolled": tuple(p.code for p in mappings.products),
        "recommended": tuple(p.code for p in mappings.products), "lob": LINES_OF_BUSINESS,
        "category": tuple(mappings.value_sets), "source": SOURCE_KINDS,
    }
    filters: dict[str, tuple[str, ...]] = {}
    count, after = DEFAULT_COUNT, None
    for name, value in params:
        if name in FILTERS:
            values = tuple(v.strip() for v in value.split(",") if v.strip())
            unknown = [v for v in values if name in allowed and v not in allowed[name]]
            if unknown or not values or any(len(v) > 64 for v in values):
                raise _invalid(f"Unknown {name} value(s): {', '.join(unknown) or value!r}", name)
            filters[name] = (*filters.get(name, ()), *values)
        elif name == "_count":
            if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_COUNT:
                raise _invalid(f"_count must be 1 to {MAX_COUNT}", name)
            count = int(value)
        elif name == "_cursor":
            after = _decode_cursor(value)
        elif name == "_sort":
            if value != SORT:
                raise _invalid(f"The worklist is sorted by {SORT} only", name)
        elif name != "_format":
            raise FhirError.of(400, "not-supported", f"Parameter {name} is not supported by the worklist", name)
    filters.setdefault("status", DEFAULT_STATUSES)
    return WorklistQuery(filters, count, after)


def _decode_cursor(value: str) -> tuple[int, str]:
    key, _, patient_id = value.partition("_")
    body = key[1:] if key.startswith("-") else key
    if not (body.isascii() and body.isdigit()) or not patient_id or len(patient_id) > 64:
        raise _invalid("Malformed _cursor: use the next link of a previous page", "_cursor")
    return int(key), patient_id


def _encode_cursor(key: int, patient_id: str) -> str:
    return f"{key}_{patient_id}"


def _member_exists(table, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(table.c.patient_id == findings.c.patient_id, *conditions)


def _conditions(query: WorklistQuery) -> list[ColumnElement[bool]]:
    f, c = query.filters, findings.c
    where: list[ColumnElement[bool]] = [c.status.in_(f["status"])]
    if "kind" in f:
        padded = literal(" ") + c.reasons + literal(" ")
        where.append(or_(*(padded.like(f"% {kind} %") for kind in f["kind"])))
    if "enrolled" in f:
        where.append(c.enrolled_product.in_(f["enrolled"]))
    if "recommended" in f:
        where.append(c.recommended_product.in_(f["recommended"]))
    if "lob" in f:
        where.append(_member_exists(finding_coverage, finding_coverage.c.line_of_business.in_(f["lob"])))
    if "plan" in f:
        where.append(_member_exists(finding_plans, finding_plans.c.plan.in_([p.lower() for p in f["plan"]])))
    if "category" in f:
        where.append(_member_exists(finding_categories, finding_categories.c.category.in_(f["category"])))
    if "source" in f:
        where.append(_member_exists(finding_evidence, finding_evidence.c.source_kind.in_(f["source"])))
    return where


def read_page(conn: Connection, query: WorklistQuery, keys: IndexKeys) -> WorklistPage:
    where = _conditions(query)
    total = conn.execute(select(func.count()).select_from(findings).where(*where)).scalar_one()
    if total == 0:
        return WorklistPage(0, [], None)
    # Walking the index from the cursor reads about (page + 1) × candidates / matches rows; for a rare
    # filter (which the planner cannot see: a plan matches few members of the statuses asked) that is every
    # candidate, each probed. Then the matches are read as the count just read them and sorted: an order
    # the index does not give (`+ 0`) keeps the planner off the walk.
    key = worklist_impact if total >= DENSE_MATCHES * (query.count + 1) else worklist_impact + 0
    page: Select = select(key.label("key"), findings).where(*where)
    if query.after is not None:
        page = page.where(tuple_(key, findings.c.patient_id) < tuple_(*query.after))
    rows = conn.execute(page.order_by(key.desc(), findings.c.patient_id.desc()).limit(query.count + 1)).all()
    more = len(rows) > query.count
    rows = rows[:query.count]
    out = [WorklistRow(r.patient_id, r.status, r.enrolled_product, r.recommended_product, r.annual_impact_cents,
                       r.currency, tuple(r.reasons.split())) for r in rows]
    _add_details(conn, {row.patient_id: row for row in out}, keys)
    cursor = _encode_cursor(rows[-1].key, rows[-1].patient_id) if more else None
    return WorklistPage(total, out, cursor)


def _add_details(conn: Connection, by_id: dict[str, WorklistRow], keys: IndexKeys) -> None:
    """Names, coverages (line of business, plan), categories and evidence sources of a page's members."""
    if not by_id:
        return
    ids = list(by_id)
    for rid, content in conn.execute(select(resources.c.rid, resources.c.content)
                                     .where(resources.c.rtype == "Patient", resources.c.rid.in_(ids))):
        if content:
            by_id[rid].name = display_name(orjson.loads(content))
    # Simple index lookups, each keyed by the page's ids: a join here lets a planner with poor estimates
    # for an IN list scan whole tables.
    v, t = finding_coverage.c, idx_token.c
    coverages = conn.execute(select(v.patient_id, v.coverage_id, v.line_of_business)
                             .where(v.patient_id.in_(ids)).order_by(v.patient_id, v.coverage_id)).all()
    plans: dict[str, list[str]] = {}
    if coverages:
        for rid, code in conn.execute(select(t.rid, t.code).where(
                t.rtype == "Coverage", t.rid.in_([c.coverage_id for c in coverages]), t.h_param == keys.coverage_plan)
                .order_by(t.rid, t.code)):
            plans.setdefault(rid, []).append(code)
    for pid, coverage_id, lob in coverages:
        row = by_id[pid]
        _add_once(row.lines_of_business, lob)
        for code in plans.get(coverage_id, ()):
            _add_once(row.plans, code)
    c = finding_categories.c
    for pid, category, non_claims in conn.execute(select(c.patient_id, c.category, c.non_claims)
                                                  .where(c.patient_id.in_(ids)).order_by(c.patient_id, c.category)):
        by_id[pid].categories.append(category)
        if non_claims:
            by_id[pid].non_claims.append(category)
    e = finding_evidence.c
    kinds = {(pid, kind) for pid, kind in conn.execute(select(e.patient_id, e.source_kind).where(e.patient_id.in_(ids)))}
    for pid, kind in sorted(kinds):
        by_id[pid].sources.append(kind)


def _add_once(values: list[str], value: str | None) -> None:
    if value and value not in values:
        values.append(value)


def display_name(patient: dict) -> str:
    """'Family, Given Given' of the first name (official first when marked), or its text."""
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("family") or name.get("given"):
        return ", ".join(p for p in (name.get("family", ""), " ".join(name.get("given", []))) if p)
    return name.get("text", "")

