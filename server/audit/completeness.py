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
matched records, in days). Everything is one statement: the per-record matches as an aggregate over index
range joins, the percentiles by `row_number()` over each source and month, so no record passes through
Python.

Default window: 90 days. It is PlanFit's choice, not a program rule: contracts set submission deadlines
relative to adjudication, e.g. Texas HHSC's Uniform Managed Care Contract asks for complete encounter data
no later than the 30th day after the month in which the claim was adjudicated (clause quoted at
lawinsider.com/clause/encounter-data/_8, read 2026-12-03); NY's own deadline was not confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Connection, Select, and_, case, func, literal, or_, select, union_all

from server.fhir import searchparams
from server.fhir.errors import FhirError
from server.fhir.service import SOURCE_KIND_SYSTEM
from server.measures.definitions import MEASURE_BASE, SD_BASE
from server.measures.report import populations
from server.store.schema import idx_date, idx_reference, idx_token

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


def _organization_of(rtype: str, rid, param: str, via: str | None = None):
    """The Organization id a reference parameter names (`via`: first through a PractitionerRole's or an
    Encounter's own reference), as a correlated scalar subquery on the reference index."""
    first = idx_reference.alias(f"{rtype}_{param}")
    if via is None:
        return (select(func.min(first.c.target_id))
                .where(first.c.rtype == rtype, first.c.rid == rid, first.c.h_param == _h(rtype, param),
                       first.c.target_type == "Organization").scalar_subquery())
    hop_type, hop_param = via.split(".")
    second = idx_reference.alias(f"{hop_type}_{hop_param}")
    return (select(func.min(second.c.target_id))
            .select_from(first.join(second, and_(second.c.rtype == hop_type, second.c.rid == first.c.target_id,
                                                 second.c.h_param == _h(hop_type, hop_param),
                                                 second.c.target_type == "Organization")))
            .where(first.c.rtype == rtype, first.c.rid == rid, first.c.h_param == _h(rtype, param),
                   first.c.target_type == hop_type).scalar_subquery())


def _records(rtype: str, query: CompletenessQuery) -> Select:
    """One row per clinical record dated in the period: type, id, member, source, date range.

    The organization: an Encounter's `serviceProvider`; a Condition's asserter's organization (R4 lets a
    Condition be asserted by a PractitionerRole, which names its Organization), else the `serviceProvider`
    of the Encounter the Condition was recorded in."""
    tag, subject, source = (idx_token.alias(f"{rtype}_tag"), idx_reference.alias(f"{rtype}_subject"),
                            idx_token.alias(f"{rtype}_source"))
    when = idx_date.alias(f"{rtype}_when")
    if rtype == "Encounter":
        dated = [when.c.h_param == _h(rtype, "date")]
        organization = _organization_of(rtype, tag.c.rid, "service-provider")
    else:  # recorded date, else onset
        recorded = idx_date.alias("condition_recorded")
        dated = [or_(when.c.h_param == _h(rtype, "recorded-date"), and_(
            when.c.h_param == _h(rtype, "onset-date"),
            ~select(recorded.c.rid).where(recorded.c.rtype == rtype, recorded.c.rid == when.c.rid,
                                          recorded.c.h_param == _h(rtype, "recorded-date")).exists()))]
        organization = func.coalesce(_organization_of(rtype, tag.c.rid, "asserter", "PractitionerRole.organization"),
                                     _organization_of(rtype, tag.c.rid, "encounter", "Encounter.service-provider"))
    per_record = (
        select(tag.c.rid, func.min(subject.c.target_id).label("patient_id"), organization.label("organization"),
               func.min(source.c.code).label("client_source"), func.min(when.c.lo).label("lo"))
        .select_from(
            tag.join(subject, and_(subject.c.rtype == rtype, subject.c.rid == tag.c.rid,
                                   subject.c.h_param == _h(rtype, "patient"), subject.c.target_type == "Patient"))
            .join(when, and_(when.c.rtype == rtype, when.c.rid == tag.c.rid, *dated))
            .outerjoin(source, and_(source.c.rtype == rtype, source.c.rid == tag.c.rid,
                                    source.c.h_param == _h(rtype, "_source"))))
        .where(tag.c.rtype == rtype, tag.c.h_param == _h(rtype, "_tag"), tag.c.system == SOURCE_KIND_SYSTEM,
               tag.c.code == "clinical", when.c.lo >= _us(query.start), when.c.lo < _us(query.end + timedelta(days=1)))
        .group_by(tag.c.rid)
        .subquery(f"{rtype}_records")
    )
    r = per_record.c
    return select(literal(rtype).label("record_type"), r.rid, r.patient_id,
                  case((r.organization.is_not(None), literal("Organization/") + r.organization),
                       else_=func.coalesce(r.client_source, literal(""))).label("source"), r.lo)


def _lags(claim_type: str, records, window_days: int) -> Select:
    """(record, lag in days) for each clinical record a claim of this type matches (earliest `created`)."""
    subject, status, served, created = (idx_reference.alias(f"{claim_type}_patient"), idx_token.alias(f"{claim_type}_status"),
                                        idx_date.alias(f"{claim_type}_served"), idx_date.alias(f"{claim_type}_created"))
    day = (records.c.lo // DAY_US) * DAY_US  # the record's day, from midnight UTC
    return (
        select(records.c.record_type, records.c.rid, func.min((created.c.lo - day) // DAY_US).label("lag"))
        .select_from(
            records.join(subject, and_(subject.c.target_id == records.c.patient_id, subject.c.target_type == "Patient",
                                       subject.c.rtype == claim_type, subject.c.h_param == _h(claim_type, "patient")))
            .join(served, and_(served.c.rtype == claim_type, served.c.rid == subject.c.rid,
                               served.c.h_param == _h(claim_type, "service-date"),
                               served.c.lo <= day + (DAY_US - 1), served.c.hi >= day))
            .join(created, and_(created.c.rtype == claim_type, created.c.rid == subject.c.rid,
                                created.c.h_param == _h(claim_type, "created"),
                                created.c.lo >= day, created.c.lo <= day + window_days * DAY_US))
            .join(status, and_(status.c.rtype == claim_type, status.c.rid == subject.c.rid,
                               status.c.h_param == _h(claim_type, "status"), status.c.code == "active")))
        .group_by(records.c.record_type, records.c.rid)
    )


def compute(conn: Connection, query: CompletenessQuery) -> tuple[Completeness, list[Completeness]]:
    """The whole period's figures and those of each (source, month), by source then month."""
    records = union_all(*(_records(rtype, query) for rtype in RECORD_TYPES)).cte("clinical_records")
    found = union_all(*(_lags(claim_type, records, query.window_days) for claim_type in CLAIM_TYPES)).subquery("found")
    lags = (select(found.c.record_type, found.c.rid, func.min(found.c.lag).label("lag"))
            .group_by(found.c.record_type, found.c.rid).cte("record_lags"))
    per_record = (
        select(records.c.record_type, records.c.source, _month(conn, records.c.lo // DAY_US).label("month"),
               lags.c.lag)
        .select_from(records.outerjoin(lags, and_(lags.c.record_type == records.c.record_type,
                                                  lags.c.rid == records.c.rid)))
        .cte("per_record")
    )
    by_source = _figures(conn, per_record, (per_record.c.source, per_record.c.month))
    overall = _figures(conn, per_record, ())
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
