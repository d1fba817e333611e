"""Encounter data completeness (SPEC §12, issue 22 item 2), set-based over the search-index tables.

A *clinical record* is a Condition (a clinical diagnosis) or an Encounter written by a clinical source
(the `source-kind` tag the server stamps from the writing client: EMR/HIE feeds, not claims feeds and not
patient-facing apps). Its date is the Condition's recorded date (else its onset), the Encounter's period
start; its *source organization* is the Encounter's `serviceProvider`, the Condition's asserter's
organization (a PractitionerRole's) or else the `serviceProvider` of the Encounter it was recorded in
(`Organization/<id>`), failing those the writing client's source (`meta.source`).

Encounter data reaches a plan as 837 claim/encounter submissions, which FHIR carries as Claim (and, once
adjudicated, ExplanationOfBenefit). A clinical record of member P on day d is *matched* when an active
Claim or ExplanationOfBenefit of P has a service date on day d (billable period or an item's date,
overlapping the day) and was `created` on or after d and at most `window` days after it. Its *lag* is
the days from d to the earliest such `created`. A record billed only after the window counts as
unmatched: late encounter data is missing encounter data when the plan reports it.

Per source and month (of the record's date) the result gives Conditions and Encounters seen and
matched, the share matched, and the lag's p50 and p90 (nearest rank: the value at rank ⌈p·n⌉ of the n
matched records, in days). No record passes through Python: in one rolled-back transaction, the period's
clinical records and the candidate claims' (member, service range, created) rows go into temporary tables
keyed by member, so matching is an equality join per member (a range join over the date index instead
scanned every claim created in the window for each record: minutes on SQLite at 1,000 members); the
per-record lags go into a third, which the figures (counts, and the percentiles by `row_number()` over
each source and month) read twice, per source and month and overall.

Default window: 90 days. It is PlanFit's choice, not a program rule: contracts set submission deadlines
relative to adjudication, e.g. Texas HHSC's Uniform Managed Care Contract asks for complete encounter data
no later than the 30th day after the month in which the claim was adjudicated (clause quoted at
lawinsider.com/clause/encounter-data/_8, read 2026-12-03); NY's own deadline was not confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import (BigInteger, Column, Connection, Index, Integer, MetaData, Select, String, Table, Text, and_, case,
                        func, insert, literal, select, union_all)

from server.fhir import searchparams
from server.fhir.errors import FhirError
from server.fhir.versions import SOURCE_KIND_SYSTEM
from server.measures.definitions import MEASURE_BASE, SD_BASE
from server.measures.report import populations
from server.store.schema import ID_LEN, TYPE_LEN, idx_date, idx_reference, idx_token
from server.store.statistics import analyze_written, plan_locally

DAY_US = 86_400_000_000
DEFAULT_WINDOW_DAYS = 90
MAX_WINDOW_DAYS = 730
RECORD_TYPES = ("Condition", "Encounter")
CLAIM_TYPES = ("Claim", "ExplanationOfBenefit")
PERCENTILES = (50, 90)


@dataclass(frozen=True)
class CompletenessQuery:
    start: date
    end: date  # inclusive
    window_days: int = DEFAULT_WINDOW_DAYS


@dataclass(frozen=True)
class Completeness:
    """One source's month (or, with `source` and `month` None, the whole period)."""
    source: str | None
    month: str | None
    conditions: int
    conditions_matched: int
    encounters: int
    encounters_matched: int
    lag_p50: int | None
    lag_p90: int | None

    @property
    def records(self) -> int:
        return self.conditions + self.encounters

    @property
    def matched(self) -> int:
        return self.conditions_matched + self.encounters_matched


def parse_query(items: Iterable[tuple[str, str]], as_of: date) -> CompletenessQuery:
    """periodStart / periodEnd (dates; default the twelve calendar months up to `as_of`) and window (days)."""
    values: dict[str, str] = {}
    for name, value in items:
        if name in ("periodStart", "periodEnd", "window"):
            values[name] = value
        elif name not in ("_format",):
            raise FhirError.of(400, "not-supported", f"Parameter {name} is not supported by $completeness", name)
    try:
        end = date.fromisoformat(values["periodEnd"]) if "periodEnd" in values else as_of
        start = date.fromisoformat(values["periodStart"]) if "periodStart" in values else _twelve_months_to(end)
    except ValueError:
        raise FhirError.of(400, "invalid", "periodStart and periodEnd are dates (YYYY-MM-DD)", "periodStart") from None
    window = values.get("window", str(DEFAULT_WINDOW_DAYS))
    if not (window.isascii() and window.isdigit()) or not 0 <= int(window) <= MAX_WINDOW_DAYS:
        raise FhirError.of(400, "invalid", f"window is a number of days from 0 to {MAX_WINDOW_DAYS}", "window")
    if start > end:
        raise FhirError.of(400, "invalid", "periodStart is after periodEnd", "periodStart")
    return CompletenessQuery(start, end, int(window))


def _twelve_months_to(end: date) -> date:
    months = end.year * 12 + end.month - 1 - 11
    return date(months // 12, months % 12 + 1, 1)


def _us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def _h(rtype: str, code: str) -> int:
    return searchparams.param_hash(rtype, code)


def _month(conn: Connection, day):
    """'YYYY-MM' of a day number (days since 1970-01-01, UTC)."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", func.to_timestamp(day * 86400)), "YYYY-MM")
    return func.strftime("%Y-%m", day * 86400, "unixepoch")


def _organizations(rtype: str, param: str, via: str | None = None) -> Any:
    """(rid, organization) of the resources of a type: the Organization id a reference parameter names
    (`via`: first through a PractitionerRole's or an Encounter's own reference), the least of several. A
    grouped table joined by id: the planner hashes it once instead of probing the index per record."""
    name = f"{rtype}_{param}_organization".replace("-", "_")
    first = idx_reference.alias(f"{name}_first")
    if via is None:
        return (select(first.c.rid, func.min(first.c.target_id).label("organization"))
                .where(first.c.rtype == rtype, first.c.h_param == _h(rtype, param), first.c.target_type == "Organization")
                .group_by(first.c.rid).subquery(name))
    hop_type, hop_param = via.split(".")
    second = idx_reference.alias(f"{name}_second")
    return (select(first.c.rid, func.min(second.c.target_id).label("organization"))
            .select_from(first.join(second, and_(second.c.rtype == hop_type, second.c.rid == first.c.target_id,
                                                 second.c.h_param == _h(hop_type, hop_param),
                                                 second.c.target_type == "Organization")))
            .where(first.c.rtype == rtype, first.c.h_param == _h(rtype, param), first.c.target_type == hop_type)
            .group_by(first.c.rid).subquery(name))


def _dated(rtype: str, query: CompletenessQuery) -> Select:
    """(id, date) rows of the records of this type dated in the period: an Encounter's period start; a
    Condition's recorded date, else (when it has none) its onset."""
    def on(param: str):
        when = idx_date.alias(f"{rtype}_{param}")
        return when, (select(when.c.rid, when.c.lo)
                      .where(when.c.h_param == _h(rtype, param), when.c.rtype == rtype,
                             when.c.lo >= _us(query.start), when.c.lo < _us(query.end + timedelta(days=1))))
    if rtype == "Encounter":
        return on("date")[1]
    recorded, onset = idx_date.alias("condition_recorded"), on("onset-date")
    undated = ~select(recorded.c.rid).where(recorded.c.rtype == rtype, recorded.c.rid == onset[0].c.rid,
                                            recorded.c.h_param == _h(rtype, "recorded-date")).exists()
    return union_all(on("recorded-date")[1], onset[1].where(undated))


def _records(rtype: str, query: CompletenessQuery) -> Select:
    """One row per clinical record dated in the period: type, id, member, source, date range.

    The organization: an Encounter's `serviceProvider`; a Condition's asserter's organization (R4 lets a
    Condition be asserted by a PractitionerRole, which names its Organization), else the `serviceProvider`
    of the Encounter the Condition was recorded in."""
    tag, subject = idx_token.alias(f"{rtype}_tag"), idx_reference.alias(f"{rtype}_subject")
    dated = _dated(rtype, query).subquery(f"{rtype}_dated")
    if rtype == "Encounter":
        found = [_organizations(rtype, "service-provider")]
    else:
        found = [_organizations(rtype, "asserter", "PractitionerRole.organization"),
                 _organizations(rtype, "encounter", "Encounter.service-provider")]
    organization = func.coalesce(*(o.c.organization for o in found)) if len(found) > 1 else found[0].c.organization
    joined = (
        dated.join(tag, and_(tag.c.rtype == rtype, tag.c.rid == dated.c.rid, tag.c.h_param == _h(rtype, "_tag"),
                             tag.c.system == SOURCE_KIND_SYSTEM, tag.c.code == "clinical"))
        .join(subject, and_(subject.c.rtype == rtype, subject.c.rid == dated.c.rid,
                            subject.c.h_param == _h(rtype, "patient"), subject.c.target_type == "Patient"))
    )
    for table in found:
        joined = joined.outerjoin(table, table.c.rid == dated.c.rid)
    per_record = (
        select(dated.c.rid, func.min(subject.c.target_id).label("patient_id"), func.min(organization).label("organization"),
               func.min(dated.c.lo).label("lo"))
        .select_from(joined)
        .group_by(dated.c.rid)
        .subquery(f"{rtype}_records")
    )
    r = per_record.c
    # The writing client's source only for a record without an organization: a lookup of those few rather
    # than a join of every record's `_source` token (a third of the statement's heap pages).
    source = idx_token.alias(f"{rtype}_source")
    client_source = (select(func.min(source.c.code))
                     .where(source.c.rtype == rtype, source.c.rid == r.rid, source.c.h_param == _h(rtype, "_source"))
                     .scalar_subquery())
    return select(literal(rtype).label("record_type"), r.rid, r.patient_id,
                  case((r.organization.is_not(None), literal("Organization/") + r.organization),
                       else_=func.coalesce(client_source, literal(""))).label("source"), r.lo)


# Private to the computing connection, dropped by its rollback.
_temporary = MetaData()
_records_table = Table("completeness_records", _temporary, Column("record_type", String(TYPE_LEN)),
                       Column("rid", String(ID_LEN)), Column("patient_id", String(ID_LEN)), Column("source", Text),
                       Column("lo", BigInteger), Index("ix_completeness_records_patient", "patient_id"),
                       prefixes=["TEMPORARY"])
_claims_table = Table("completeness_claims", _temporary, Column("patient_id", String(ID_LEN)),
                      Column("served_lo", BigInteger), Column("served_hi", BigInteger), Column("created_lo", BigInteger),
                      Index("ix_completeness_claims_patient", "patient_id", "created_lo"), prefixes=["TEMPORARY"])
_per_record_table = Table("completeness_per_record", _temporary, Column("record_type", String(TYPE_LEN)),
                          Column("source", Text), Column("month", String(7)), Column("lag", Integer),
                          prefixes=["TEMPORARY"])


def _claim_days(claim_type: str, query: CompletenessQuery) -> Select:
    """(member, service date range, created) of each active claim of this type created in time to match a
    record of the period (an item's service date and the billable period each give a row)."""
    subject, status, served, created = (idx_reference.alias(f"{claim_type}_patient"), idx_token.alias(f"{claim_type}_status"),
                                        idx_date.alias(f"{claim_type}_served"), idx_date.alias(f"{claim_type}_created"))
    return (
        select(subject.c.target_id, served.c.lo, served.c.hi, created.c.lo)
        .select_from(
            status.join(subject, and_(subject.c.rtype == claim_type, subject.c.rid == status.c.rid,
                                      subject.c.h_param == _h(claim_type, "patient"), subject.c.target_type == "Patient"))
            .join(served, and_(served.c.rtype == claim_type, served.c.rid == status.c.rid,
                               served.c.h_param == _h(claim_type, "service-date")))
            .join(created, and_(created.c.rtype == claim_type, created.c.rid == status.c.rid,
                                created.c.h_param == _h(claim_type, "created"))))
        .where(status.c.h_param == _h(claim_type, "status"), status.c.code == "active", status.c.rtype == claim_type,
               created.c.lo >= _us(query.start),
               created.c.lo < _us(query.end + timedelta(days=query.window_days + 1)))
    )


def _materialize(conn: Connection, query: CompletenessQuery) -> None:
    """Fill the temporary tables: the records, the claims, then each record with its lag (None: unmatched).

    On PostgreSQL with hash joins only: the planner estimates the clinical records at a few hundred (the
    tag's system and code are correlated) where there are tens of thousands, and probed the grouped
    organization tables once per record (EXPLAIN ANALYZE: 174 s at 20,000 members). No JIT either: these
    few-second statements spent their time compiling."""
    plan_locally(conn, enable_nestloop="off", jit="off")
    for table in (_records_table, _claims_table, _per_record_table):
        table.create(conn)
    records, claims = _records_table.c, _claims_table.c
    conn.execute(insert(_records_table).from_select(
        ["record_type", "rid", "patient_id", "source", "lo"], union_all(*(_records(t, query) for t in RECORD_TYPES))))
    conn.execute(insert(_claims_table).from_select(
        ["patient_id", "served_lo", "served_hi", "created_lo"], union_all(*(_claim_days(t, query) for t in CLAIM_TYPES))))
    for table in (_records_table, _claims_table):  # temporary tables get no statistics unless asked
        analyze_written(conn, table.name)
    day = (records.lo // DAY_US) * DAY_US  # the record's day, from midnight UTC
    lags = (select(records.record_type, records.rid, func.min((claims.created_lo - day) // DAY_US).label("lag"))
            .select_from(_records_table.join(_claims_table, and_(
                claims.patient_id == records.patient_id, claims.created_lo >= day,
                claims.created_lo <= day + query.window_days * DAY_US,
                claims.served_lo <= day + (DAY_US - 1), claims.served_hi >= day)))
            .group_by(records.record_type, records.rid).subquery("record_lags"))
    conn.execute(insert(_per_record_table).from_select(
        ["record_type", "source", "month", "lag"],
        select(records.record_type, records.source, _month(conn, records.lo // DAY_US), lags.c.lag)
        .select_from(_records_table.outerjoin(lags, and_(lags.c.record_type == records.record_type,
                                                         lags.c.rid == records.rid)))))


def compute(conn: Connection, query: CompletenessQuery) -> tuple[Completeness, list[Completeness]]:
    """The whole period's figures and those of each (source, month), by source then month."""
    transaction = conn.begin()
    try:
        _materialize(conn, query)
        per_record = _per_record_table
        by_source = _figures(conn, per_record, (per_record.c.source, per_record.c.month))
        overall = _figures(conn, per_record, ())
    finally:
        transaction.rollback()  # drops the temporary tables
    total = overall[0] if overall else Completeness(None, None, 0, 0, 0, 0, None, None)
    return total, by_source


def _figures(conn: Connection, per_record, keys: tuple) -> list[Completeness]:
    r = per_record.c

    def count(rtype: str, matched: bool) -> Any:
        hit = and_(r.record_type == rtype, r.lag.is_not(None)) if matched else r.record_type == rtype
        return func.coalesce(func.sum(case((hit, 1), else_=0)), 0)

    partition = list(keys) or None
    ranked = (select(*keys, r.lag, func.row_number().over(partition_by=partition, order_by=r.lag).label("rank"),
                     func.count().over(partition_by=partition).label("n"))
              .where(r.lag.is_not(None)).subquery("ranked"))
    q = ranked.c
    ranks = [func.max(case((q["rank"] == (p * q.n + 99) // 100, q.lag), else_=None)).label(f"p{p}") for p in PERCENTILES]
    names = [k.name for k in keys]
    percentiles = select(*(q[name] for name in names), *ranks).group_by(*(q[name] for name in names)).subquery("pct")
    counts = (select(*keys, count("Condition", False).label("conditions"), count("Condition", True).label("cm"),
                     count("Encounter", False).label("encounters"), count("Encounter", True).label("em"))
              .group_by(*keys).subquery("counts"))
    c, p = counts.c, percentiles.c
    joined = and_(*(c[name] == p[name] for name in names)) if names else literal(True)
    rows = conn.execute(select(*(c[name] for name in names), c.conditions, c.cm, c.encounters, c.em, p.p50, p.p90)
                        .select_from(counts.outerjoin(percentiles, joined))
                        .order_by(*(c[name] for name in names))).all()
    out = []
    for row in rows:
        source, month = (row[0], row[1]) if names else (None, None)
        figures = row[len(names):]
        if not names and not figures[0] and not figures[2]:
            continue
        out.append(Completeness(source, month, *(int(v or 0) for v in figures[:4]),
                                *(None if v is None else int(v) for v in figures[4:])))
    return out


# -- the MeasureReport and the CSV ------------------------------------------------------------------------

MEASURE_ID = "encounter-completeness"
DETAIL_EXT = SD_BASE + "completeness-detail"
WINDOW_EXT = SD_BASE + "completeness-window"


def _days(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}


def _detail(c: Completeness) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"url": "conditions", "valueInteger": c.conditions}, {"url": "conditionsMatched", "valueInteger": c.conditions_matched},
        {"url": "encounters", "valueInteger": c.encounters}, {"url": "encountersMatched", "valueInteger": c.encounters_matched}]
    for name, value in (("lagP50", c.lag_p50), ("lagP90", c.lag_p90)):
        if value is not None:
            parts.append({"url": name, "valueQuantity": _days(value)})
    return [{"url": DETAIL_EXT, "extension": parts}]


def _scored(c: Completeness) -> dict[str, Any]:
    out: dict[str, Any] = {"population": populations(c.records, c.matched), "extension": _detail(c)}
    if c.records:
        out["measureScore"] = {"value": round(c.matched / c.records, 6)}
    return out


def measure_report(query: CompletenessQuery, total: Completeness, rows: list[Completeness], now: str) -> dict[str, Any]:
    """A summary MeasureReport: clinical records (initial population = denominator), matched (numerator),
    stratified by source × month; counts per record type and the lag percentiles ride in extensions."""
    strata = [{"component": [{"code": {"text": "source"}, "value": {"text": c.source or "unknown"}},
                             {"code": {"text": "month"}, "value": {"text": c.month}}], **_scored(c)} for c in rows]
    group = {"id": MEASURE_ID, **_scored(total)}
    if strata:
        group["stratifier"] = [{"code": [{"text": "source-month"}], "stratum": strata}]
    return {
        "resourceType": "MeasureReport", "status": "complete", "type": "summary",
        "measure": MEASURE_BASE + MEASURE_ID, "date": now,
        "period": {"start": query.start.isoformat(), "end": query.end.isoformat()},
        "extension": [{"url": WINDOW_EXT, "valueQuantity": _days(query.window_days)}],
        "group": [group],
    }


CSV_HEADER = ("source", "month", "conditions", "conditions_matched", "encounters", "encounters_matched", "records",
              "matched", "share_matched", "lag_p50_days", "lag_p90_days")


def csv_rows(rows: list[Completeness]) -> list[list[Any]]:
    return [[c.source, c.month, c.conditions, c.conditions_matched, c.encounters, c.encounters_matched, c.records,
             c.matched, f"{c.matched / c.records:.4f}" if c.records else "",
             "" if c.lag_p50 is None else c.lag_p50, "" if c.lag_p90 is None else c.lag_p90] for c in rows]
