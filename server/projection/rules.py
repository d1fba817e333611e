"""The alignment rules of the projection, read from `mappings/projection/alignment.json` (each rule names
its source there): the qualifying primary care codes, the alignment period, the year weights, the
primary-care-specialist share and the eligibility flags. Pure data and date arithmetic, no SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field

from server.data_files import MappingFile, MappingModel, data_directory, read_mapping

EligibilityFlag = Literal["part_a", "part_b", "medicare_advantage", "medicare_secondary", "us_resident", "aligned_elsewhere"]
ELIGIBILITY_FLAGS: tuple[str, ...] = get_args(EligibilityFlag)
RULES_FILE = data_directory("mappings") / "projection" / "alignment.json"


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


class _Rule(MappingModel):
    source: str  # each rule names its own source (the file's `source` list names the documents)


class _Codes(_Rule):
    codes: tuple[Annotated[str, Field(pattern=r"^[0-9A-Z]{5}$")], ...] = Field(min_length=1)


class _Period(_Rule):
    months: Annotated[int, Field(gt=0)]
    endsMonthsBeforePerformanceYear: Annotated[int, Field(ge=0)]


class _Weights(_Rule):
    earlier: Annotated[int, Field(ge=0)]
    later: Annotated[int, Field(ge=0)]


class _Share(_Rule):
    percent: Annotated[int, Field(ge=0, le=100)]


class _TieBreak(_Rule):
    rule: Literal["most-recent-service"]


class _Eligibility(_Rule):
    requires: tuple[EligibilityFlag, ...]
    excludes: tuple[EligibilityFlag, ...]


class _Voluntary(_Rule):
    lostWhenOnlyOutsideServices: bool


class AlignmentFile(MappingFile):
    """`mappings/projection/alignment.json`."""

    description: str
    primaryCareCodes: _Codes
    alignmentPeriod: _Period
    yearWeights: _Weights
    primaryCareSpecialistShare: _Share
    tieBreak: _TieBreak
    eligibility: _Eligibility
    voluntaryAlignment: _Voluntary


@lru_cache(maxsize=1)
def load_rules(path: Path = RULES_FILE) -> AlignmentRules:
    doc = read_mapping(path, AlignmentFile, "projection/alignment.json")
    return AlignmentRules(
        codes=doc.primaryCareCodes.codes,
        months=doc.alignmentPeriod.months,
        ends_months_before=doc.alignmentPeriod.endsMonthsBeforePerformanceYear,
        earlier_weight=doc.yearWeights.earlier,
        later_weight=doc.yearWeights.later,
        specialist_share_percent=doc.primaryCareSpecialistShare.percent,
        requires=doc.eligibility.requires,
        excludes=doc.eligibility.excludes,
    )
