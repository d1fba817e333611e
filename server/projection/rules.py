"""The alignment rules of the projection, read from `mappings/projection/alignment.json` (each rule names
its source there): the qualifying primary care codes, the alignment period, the year weights, the
primary-care-specialist share and the eligibility flags. Pure data and date arithmetic, no SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from server.data_files import data_directory

ELIGIBILITY_FLAGS = ("part_a", "part_b", "medicare_advantage", "medicare_secondary", "us_resident", "aligned_elsewhere")


@dataclass(frozen=True)
class AlignmentPeriod:
    """Two consecutive alignment years, as inclusive ISO dates (compared as text in SQL)."""

    start: str  # first day of the earlier alignment year
    later_start: str  # first day of the later alignment year
    end: str  # last day of the later alignment year


@dataclass(frozen=True)
class AlignmentRules:
    codes: tuple[str, ...]
    months: int
    ends_months_before: int
    earlier_weight: int
    later_weight: int
    specialist_share_percent: int
    requires: tuple[str, ...]
    excludes: tuple[str, ...]

    def period(self, performance_year: int) -> AlignmentPeriod:
        """The alignment period of a performance year: `months` months ending `ends_months_before` months
        before 1 January of the performance year (PY 2026 → 2023-07-01 … 2025-06-30)."""
        end_exclusive = _add_months(date(performance_year, 1, 1), -self.ends_months_before)
        start = _add_months(end_exclusive, -self.months)
        later = _add_months(end_exclusive, -self.months // 2)
        last = date.fromordinal(end_exclusive.toordinal() - 1)
        return AlignmentPeriod(start.isoformat(), later.isoformat(), last.isoformat())


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


@lru_cache(maxsize=1)
def load_rules() -> AlignmentRules:
    doc = json.loads((data_directory("mappings") / "projection" / "alignment.json").read_text())
    eligibility = doc["eligibility"]
    unknown = set(eligibility["requires"]) | set(eligibility["excludes"])
    if not unknown <= set(ELIGIBILITY_FLAGS):
        raise ValueError(f"projection/alignment.json: eligibility names unknown flags {sorted(unknown - set(ELIGIBILITY_FLAGS))}")
    return AlignmentRules(
        codes=tuple(doc["primaryCareCodes"]["codes"]),
        months=int(doc["alignmentPeriod"]["months"]),
        ends_months_before=int(doc["alignmentPeriod"]["endsMonthsBeforePerformanceYear"]),
        earlier_weight=int(doc["yearWeights"]["earlier"]),
        later_weight=int(doc["yearWeights"]["later"]),
        specialist_share_percent=int(doc["primaryCareSpecialistShare"]["percent"]),
        requires=tuple(eligibility["requires"]),
        excludes=tuple(eligibility["excludes"]),
    )
