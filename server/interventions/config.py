"""The priority configuration (`mappings/interventions/priority.json`), validated when the server starts:
tiers ordered by descending cut-point down to 0, each with its Task due-date rule; the look-back windows;
how old each input may be; an owner's open-Task capacity; the codes that make an ED visit or an
inpatient stay."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from server.data_files import MappingFile, MappingModel, data_directory, read_mapping

INPUTS = ("risk", "encounters", "claims", "carePlans")


class _Data(MappingModel):
    model_config = ConfigDict(populate_by_name=True)


class Tier(_Data):
    code: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    display: str
    min_score: float = Field(alias="minScore", ge=0)
    due_days: int = Field(alias="dueDays", ge=0, le=365)
    high_priority: bool = Field(alias="highPriority")


class Windows(_Data):
    ed_days: int = Field(alias="edDays", ge=1, le=730)
    inpatient_days: int = Field(alias="inpatientDays", ge=1, le=730)


class MaxAge(_Data):
    risk: int = Field(ge=0)
    encounters: int = Field(ge=0)
    claims: int = Field(ge=0)
    care_plans: int = Field(alias="carePlans", ge=0)

    def days(self, name: str) -> int:
        return {"risk": self.risk, "encounters": self.encounters, "claims": self.claims,
                "carePlans": self.care_plans}[name]


class Utilization(_Data):
    encounter_classes: list[str] = Field(alias="encounterClasses", min_length=1)
    places_of_service: list[str] = Field(alias="placesOfService", min_length=1)
    revenue_codes: list[str] = Field(alias="revenueCodes", default_factory=list)
    source: str


class PriorityConfig(MappingFile, _Data):
    description: str = ""
    tiers: list[Tier] = Field(min_length=1)
    windows: Windows
    max_age_days: MaxAge = Field(alias="maxAgeDays")
    owner_capacity: int = Field(alias="ownerCapacity", ge=1)
    ed: Utilization
    inpatient: Utilization

    @model_validator(mode="after")
    def tiers_cover_every_score(self) -> "PriorityConfig":
        cuts = [t.min_score for t in self.tiers]
        if cuts != sorted(set(cuts), reverse=True):
            raise ValueError("tiers must be listed by strictly descending minScore")
        if cuts[-1] != 0:
            raise ValueError("the last tier must start at minScore 0, so every score has a tier")
        if len({t.code for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier codes must be unique")
        return self

    def tier(self, code: str) -> Tier:
        return next(t for t in self.tiers if t.code == code)


def load_priority_config(directory: str | Path | None = None) -> PriorityConfig:
    """`directory/interventions/priority.json` (a mappings directory) when present, else the shipped file;
    a broken file raises `MappingError` naming the JSON path (the server does not start)."""
    own = Path(directory) / "interventions" / "priority.json" if directory else None
    path = own if own is not None and own.is_file() else data_directory("mappings") / "interventions" / "priority.json"
    return read_mapping(path, PriorityConfig, "interventions/priority.json")
