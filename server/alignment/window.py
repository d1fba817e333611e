"""The evaluation date and the lookback window, as the bounds the SQL compares against.

Dates in the search index are closed microsecond ranges (`server.fhir.dates`), so every bound here is
one too: the window is [start of the lookback start day, end of the evaluation day], and an age
threshold is the end of the day that many years before the evaluation date.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Date,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    literal,
)
from sqlalchemy.sql.elements import BindParameter

from server.fhir.dates import date_range


def today_utc() -> date:
    return datetime.now(tz=timezone.utc).date()


def months_before(day: date, months: int) -> date:
    """The same day of the month `months` earlier, clamped to the month's length (31 Mar - 1 → 28/29 Feb)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    month = month0 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def years_before(day: date, years: int) -> date:
    """`day` minus whole years; 29 February becomes 28 February in a common year."""
    return months_before(day, 12 * years)


@dataclass(frozen=True)
class EvaluationWindow:
    as_of: date
    lookback_months: int

    @property
    def lookback_start(self) -> date:
        return months_before(self.as_of, self.lookback_months)

    @property
    def start_us(self) -> int:
        return date_range(self.lookback_start.isoformat())[0]

    @property
    def as_of_lo_us(self) -> int:
        return date_range(self.as_of.isoformat())[0]

    @property
    def as_of_hi_us(self) -> int:
        return date_range(self.as_of.isoformat())[1]

    def months_back_us(self, months: int) -> int:
        """Start of the day `months` before the evaluation date."""
        return date_range(months_before(self.as_of, months).isoformat())[0]

    def born_by_us(self, years: int) -> int:
        """End of the last birth day that makes someone at least `years` old on the evaluation date."""
        return date_range(years_before(self.as_of, years).isoformat())[1]

    def month_us(self, back: int) -> tuple[int, int]:
        """[lo, hi] of the calendar month `back` months before the evaluation date's month."""
        month = months_before(self.as_of, back).replace(day=1)
        return date_range(month.isoformat())[0], date_range(months_before(month, -1).isoformat())[0] - 1

    def calendar_months(self, years: int) -> list[tuple[ColumnElement, ColumnElement]]:
        """(lo, hi) as SQL of the calendar months from `years` before the evaluation date to its month."""
        return [tuple(literal(bound, BigInteger) for bound in self.month_us(back))  # type: ignore[misc]
                for back in range(12 * years, -1, -1)]

    per_row = False

    def on(self, _source: Any) -> EvaluationWindow:
        """The bounds for the rows of `source`: the same for every row (see `RowWindow`)."""
        return self

    def subjects(self, query: Select, _patient: Any) -> Select:
        """(rid, patient_id) rows of a member's resources, as they are: one evaluation date for all."""
        return query


class WindowParameters:
    """An evaluation window whose date is not yet chosen: the same bounds as `EvaluationWindow`, as bind
    parameters, each recorded with how a date gives its value. Statements built with it say which bounds
    an evaluation reads: `RowWindow` makes those the columns of a table of dates."""

    per_row = False

    def __init__(self, lookback_months: int):
        self.lookback_months = lookback_months
        self._bounds: dict[str, Callable[[EvaluationWindow], Any]] = {}
        self._types: dict[str, Any] = {}

    def _param(self, name: str, bound: Callable[[EvaluationWindow], Any], type_: Any = BigInteger) -> Any:
        self._bounds[name], self._types[name] = bound, type_
        return bindparam(name, type_=type_)

    def on(self, _source: Any) -> WindowParameters:
        return self

    def subjects(self, query: Select, _patient: Any) -> Select:
        return query

    @property
    def as_of(self) -> BindParameter:
        return self._param("window_as_of", lambda w: w.as_of, Date)

    @property
    def lookback_start(self) -> BindParameter:
        return self._param("window_lookback_start", lambda w: w.lookback_start, Date)

    @property
    def start_us(self) -> BindParameter:
        return self._param("window_start_us", lambda w: w.start_us)

    @property
    def as_of_lo_us(self) -> BindParameter:
        return self._param("window_as_of_lo_us", lambda w: w.as_of_lo_us)

    @property
    def as_of_hi_us(self) -> BindParameter:
        return self._param("window_as_of_hi_us", lambda w: w.as_of_hi_us)

    def months_back_us(self, months: int) -> BindParameter:
        return self._param(f"window_months_back_{months}", lambda w: w.months_back_us(months))

    def born_by_us(self, years: int) -> BindParameter:
        return self._param(f"window_born_by_{years}", lambda w: w.born_by_us(years))

    def calendar_months(self, years: int) -> list[tuple[ColumnElement, ColumnElement]]:
        return [(self._param(f"window_month_lo_{back}", lambda w, b=back: w.month_us(b)[0]),
                 self._param(f"window_month_hi_{back}", lambda w, b=back: w.month_us(b)[1]))
                for back in range(12 * years, -1, -1)]



AS_OF_MEMBERS = "as_of_members"  # temporary tables of a `RowWindow` evaluation
AS_OF_DATES = "as_of_dates"
MONTH_BOUNDS = "window_month_"  # `calendar_months` bounds: a RowWindow spans its dates' months instead


class RowWindow(WindowParameters):
    """Every row evaluated as of its own date: (member, date) pairs, each evaluated like a member keyed
    `member_key`, in one pass of the same statements (issue 22: the finding on each date of service).

    The bounds are columns, not parameters: `as_of_dates` holds one row per date with each bound's value,
    `as_of_members` the pairs (key, patient, date). `subjects` joins them to a
    member's resources, so every row carries its pair's key as `patient_id` and its bounds; a statement
    reads the bounds of the rows of `source` through `on(source)`. The bounds' names and types are those
    of statements built with `probe` (a `WindowParameters`): the same builders ask for the same bounds."""

    per_row = True

    def __init__(self, probe: WindowParameters, days: Iterable[date], source: Any = None):
        super().__init__(probe.lookback_months)
        self.days = sorted(set(days))
        self._source = source
        self._bounds = {n: b for n, b in probe._bounds.items() if not n.startswith(MONTH_BOUNDS)}
        self._types = {n: probe._types[n] for n in self._bounds}
        meta = MetaData()
        self.pairs = Table(AS_OF_MEMBERS, meta, Column("member_key", String(64), primary_key=True),
                             Column("patient_id", String(64), nullable=False), Column("as_of", Date, nullable=False),
                             prefixes=["TEMPORARY"])
        self.dates = Table(AS_OF_DATES, meta, Column("as_of", Date, primary_key=True),
                           *(Column(name, self._types[name]) for name in self._bounds if name != "window_as_of"),
                           prefixes=["TEMPORARY"])

    def _param(self, name: str, bound: Callable[[EvaluationWindow], Any], type_: Any = BigInteger) -> Any:
        if self._source is None:
            raise ValueError("a RowWindow's bounds are read through on(source)")
        return self._source.c["as_of" if name == "window_as_of" else name]

    def on(self, source: Any) -> RowWindow:
        bound = RowWindow.__new__(RowWindow)
        bound.__dict__.update(self.__dict__)
        bound._source = source
        return bound

    def bound_columns(self) -> list[Any]:
        """The dates table's bound columns, carried on the rows `subjects` returns."""
        return [c for c in self.dates.c if c.name != "as_of"] + [self.dates.c.as_of]

    def subjects(self, query: Select, patient: Any) -> Select:
        p, w = self.pairs, self.dates
        rid = query.selected_columns[0]
        return (query.with_only_columns(rid, p.c.member_key.label("patient_id"), *self.bound_columns())
                .select_from(patient.table.join(p, p.c.patient_id == patient).join(w, w.c.as_of == p.c.as_of)))

    def calendar_months(self, years: int) -> list[tuple[ColumnElement, ColumnElement]]:
        """Every calendar month of any pair's window: a row is joined to the month holding it, and each
        pair's own bounds keep only rows inside its window."""
        last = EvaluationWindow(self.days[-1], self.lookback_months)
        span = _month_number(self.days[-1]) - _month_number(months_before(self.days[0], 12 * years))
        return [tuple(literal(bound, BigInteger) for bound in last.month_us(back))  # type: ignore[misc]
                for back in range(span, -1, -1)]

    def date_rows(self) -> list[dict[str, Any]]:
        """The `as_of_dates` rows: each date's bound values."""
        rows = []
        for day in self.days:
            window = EvaluationWindow(day, self.lookback_months)
            rows.append({("as_of" if n == "window_as_of" else n): bound(window) for n, bound in self._bounds.items()})
        return rows


def _month_number(day: date) -> int:
    return day.year * 12 + day.month - 1
