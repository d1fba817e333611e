"""The evaluation date and the lookback window, as the bounds the SQL compares against.

Dates in the search index are closed microsecond ranges (`server.fhir.dates`), so every bound here is
one too: the window is [start of the lookback start day, end of the evaluation day], and an age
threshold is the end of the day that many years before the evaluation date.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable

from sqlalchemy import BigInteger, ColumnElement, Date, bindparam, literal
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


class WindowParameters:
    """An evaluation window whose date is not yet chosen: the same bounds as `EvaluationWindow`, as bind
    parameters. Statements built with it once run as of any date, given `values(window)`: evaluating as
    of many past dates (`AlignmentEngine.evaluate_as_of`) then costs no statement building or compiling
    per date, which otherwise took four fifths of the time."""

    def __init__(self, lookback_months: int):
        self.lookback_months = lookback_months
        self._bounds: dict[str, Callable[[EvaluationWindow], Any]] = {}

    def _param(self, name: str, bound: Callable[[EvaluationWindow], Any], type_: Any = BigInteger) -> BindParameter:
        self._bounds[name] = bound
        return bindparam(name, type_=type_)

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

    def values(self, window: EvaluationWindow) -> dict[str, Any]:
        """The parameters' values as of `window`'s date (every bound the built statements asked for)."""
        if window.lookback_months != self.lookback_months:
            raise ValueError("the window's lookback differs from the statements'")
        return {name: bound(window) for name, bound in self._bounds.items()}
