"""The evaluation date and the lookback window, as the bounds the SQL compares against.

Dates in the search index are closed microsecond ranges (`server.fhir.dates`), so every bound here is
one too: the window is [start of the lookback start day, end of the evaluation day], and an age
threshold is the end of the day that many years before the evaluation date.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timezone

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
