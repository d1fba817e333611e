"""The savings terms of `mappings/savings/terms.json` as validated pydantic models: MSSP tracks with their
sharing and loss rates, the minimum savings rate table, the MSR/MLR corridor choices, the risk-score growth
caps and the payment-assurance settings. Each value's source is named in the file; `load_terms` runs at
server start-up, so a bad edit stops the server instead of skewing a settlement."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.data_files import MappingFile, data_directory, read_mapping

Percent = Decimal


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Cap(_Strict):
    percent: Percent = Field(ge=0, le=100)
    symmetric: bool


class Caps(_Strict):
    mssp: Cap
    reach: Cap
    voluntaryExempt: bool


class MsrRow(_Strict):
    from_: int = Field(alias="from", ge=1)
    to: int | None
    high: Percent = Field(gt=0, le=100)
    low: Percent = Field(gt=0, le=100)


class Track(_Strict):
    sided: Literal["one", "two"]
    sharingPercent: Percent = Field(gt=0, le=100)
    paymentLimitPercentOfBenchmark: Percent = Field(gt=0, le=100)
    lossSharingPercent: Percent | None = Field(default=None, gt=0, le=100)
    lossLimitPercentOfBenchmark: Percent | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _losses_only_two_sided(self) -> "Track":
        two = self.sided == "two"
        if two != (self.lossSharingPercent is not None) or two != (self.lossLimitPercentOfBenchmark is not None):
            raise ValueError("a two-sided track (and only one) states lossSharingPercent and lossLimitPercentOfBenchmark")
        return self


class Mssp(_Strict):
    msrTable: tuple[MsrRow, ...]
    corridorChoices: tuple[Percent, ...]
    tracks: dict[str, Track]

    @model_validator(mode="after")
    def _table_is_contiguous(self) -> "Mssp":
        rows = self.msrTable
        for before, after in zip(rows, rows[1:]):
            if before.to is None or after.from_ != before.to + 1 or before.low != after.high:
                raise ValueError(f"msrTable: row from {after.from_} does not continue the row before it")
        if rows[-1].to is not None:
            raise ValueError("msrTable: the last row must be open-ended (to: null)")
        return self

    def minimum_savings_rate(self, beneficiaries: int) -> Percent | None:
        """The one-sided MSR (percent) for this many assigned beneficiaries; None below the table (such an
        ACO is not eligible): linear between the row's high and low over its range."""
        for row in self.msrTable:
            if row.from_ <= beneficiaries and (row.to is None or beneficiaries <= row.to):
                if row.to is None or row.to == row.from_:
                    return row.low
                share = Decimal(beneficiaries - row.from_) / Decimal(row.to - row.from_)
                return row.high - (row.high - row.low) * share
        return None


class Assurance(_Strict):
    runOutMonths: int = Field(ge=1, le=36)
    minimumCompletionPercent: Percent = Field(ge=0, le=100)
    openQuestions: tuple[str, ...]


class Terms(MappingFile):
    """The file; its parts keep a `...Source` note beside each value (ignored fields), the file its `source` list."""

    description: str = ""
    riskScoreCaps: Caps
    mssp: Mssp
    assurance: Assurance


@lru_cache(maxsize=1)
def load_terms() -> Terms:
    return read_mapping(data_directory("mappings") / "savings" / "terms.json", Terms, "savings/terms.json")
