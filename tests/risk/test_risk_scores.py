"""CMS-HCC risk scores over HTTP on both databases: PlanFit's set-based SQL gives, member by member, the
score `hccinfhir` computes directly from the same diagnoses and demographics (V28, and the V24/V28
blend of payment year 2025), from claims alone and from all sources; hierarchies, interactions, dual
segments, the disabled and new-enrollee cells; payment scores with the configured normalisation and
coding intensity; the HCC list with its evidence."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Iterator

import httpx
import orjson
import pytest
from sqlalchemy import create_engine

from tests.support.alignment import TODAY, coverage
from tests.support.servers import RunningServer
from tests.support.risk import (
    MODEL,
    age_on,
    claimed,
    clinical,
    hccinfhir_score,
    medicare_member,
    read_risk,
    risk,
    value,
)
from tests.support.measures import ROOT
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)



@dataclass(frozen=True)
class Case:
    """A member: birth date, gender, dual code, codes on claims and codes only in clinical Conditions."""

    name: str
    birth: date
    gender: str
    dual: str | None
    claims: tuple[str, ...]
    clinical: tuple[str, ...]
    new_enrollee: bool = False


def _cases(year: int) -> list[Case]:
    feb1 = date(year, 2, 1)

    def born(age: int) -> date:
        return date(feb1.year - age, 6, 15)

    return [
        Case("aged-diabetes-hf-copd", born(72), "female", None, ("E11.9", "I50.9"), ("J44.9",)),
        Case("disabled-full-dual-smi-sud", born(58), "male", "02", ("F11.20",), ("F20.9",)),
        Case("partial-dual-hierarchy", born(80), "female", "03", ("E11.9", "E11.22"), ("N18.4", "I50.9")),
        Case("new-enrollee", born(67), "male", None, ("E11.9",), (), new_enrollee=True),
        Case("demographics-only", born(70), "female", None, (), ()),
        Case("many-hccs", born(77), "male", "08",
             ("E11.9", "I50.9", "J44.9", "N18.4", "F20.9", "C34.90", "G30.9", "I48.91", "L89.154", "D69.6"),
             ("F11.20", "M05.9")),
    ]


@dataclass(frozen=True)
class Loaded:
    year: int
    ids: dict[str, str]
    cases: list[Case]


def _load(c: httpx.Client, year: int) -> Loaded:
    diagnosis_year = year - 1
    day = f"{diagnosis_year}-06-01" if diagnosis_year < TODAY.year else TODAY.replace(day=1).isoformat()
    ids = {}
    cases = _cases(year)
    for case in cases:
        start = f"{diagnosis_year}-03-01" if case.new_enrollee else f"{diagnosis_year - 3}-01-01"
        pid = medicare_member(c, case.birth, case.gender, dual=case.dual, sopt="14" if case.dual else "11", start=start)
        if case.claims:
            claimed(c, pid, case.claims, day)
        for code in case.clinical:
            clinical(c, pid, code, day)
        ids[case.name] = pid
    return Loaded(year, ids, cases)


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> dict[int, Loaded]:
    with server.http(server.auth, timeout=120) as c:
        return {year: _load(c, year) for year in (TODAY.year + 1, 2025)}


def _sex(case: Case) -> str:
    return "M" if case.gender == "male" else "F"


@pytest.mark.parametrize("year_offset", [0, 1], ids=["current-v28", "py2025-blend"])
def test_scores_equal_hccinfhir(client: httpx.Client, loaded: dict[int, Loaded], year_offset: int) -> None:
    year = sorted(loaded)[::-1][year_offset]
    data = loaded[year]
    py = MODEL.years[year]
    for case in data.cases:
        served = read_risk(risk(client, data.ids[case.name], year))
        age = age_on(case.birth, date(year, 2, 1))
        for basis, codes in (("claims", case.claims), ("all", case.claims + case.clinical)):
            raw = {}
            for m in py.models:
                expected = hccinfhir_score(year, m.version, codes, age, _sex(case), case.dual, case.new_enrollee)
                assert served.raw[(basis, m.version)] == pytest.approx(expected, abs=1e-3), (case.name, basis, m.version)
                raw[m.version] = expected
            blended = sum(m.weight * raw[m.version] / m.normalization for m in py.models) * (1 - py.coding_intensity)
            assert served.payment[basis] == pytest.approx(blended, abs=1e-3), (case.name, basis)
        assert served.uplift == pytest.approx(served.payment["all"] - served.payment["claims"], abs=2e-4)


def test_categories_carry_hierarchy_and_evidence(client: httpx.Client, loaded: dict[int, Loaded]) -> None:
    year = TODAY.year + 1
    pid = loaded[year].ids["partial-dual-hierarchy"]
    served = read_risk(risk(client, pid, year))
    by_code = {c["code"]["code"]: c for c in served.categories}
    # E11.22 (HCC 37) supersedes E11.9 (HCC 38), both claimed: closed, 38 superseded.
    assert by_code["37"]["evidenceStatus"] == "closed-gap" and by_code["37"]["superseded"] is False
    assert by_code["38"]["superseded"] is True
    # N18.4 (HCC 327) and I50.9 (HCC 226) only in clinical Conditions: suspected open gaps.
    for cc in ("327", "226"):
        assert by_code[cc]["ccType"] == "suspected" and by_code[cc]["evidenceStatus"] == "open-gap"
        assert all(ref.startswith("Condition/") for ref in by_code[cc]["evidence"])
    assert all(ref.startswith("Claim/") for ref in by_code["37"]["evidence"])
    assert served.uplift > 0


def test_not_medicare_is_not_scored(client: httpx.Client) -> None:
    r = client.post("/Patient", json={"resourceType": "Patient", "gender": "female", "birthDate": "1950-01-01"})
    pid = r.json()["id"]
    body = risk(client, pid, TODAY.year + 1, expect=404)
    assert body["resourceType"] == "OperationOutcome"
    body = risk(client, pid, 1999, expect=400)
    assert "not configured" in body["issue"][0]["diagnostics"]


def test_two_levers_side_by_side(client: httpx.Client) -> None:
    """A full dual in Medicare Advantage and Medicaid: product alignment (to the D-SNP) first, then the RAF
    uplift of the clinical-only diagnoses valued at the D-SNP rate cell; on `$risk`, `$alignment` and in
    the population totals."""
    year = TODAY.year + 1
    pid = medicare_member(client, date(TODAY.year - 70, 5, 5), "female", dual="02", sopt="11")
    coverage(client, pid, sopt="21")
    clinical(client, pid, "E11.9", TODAY.replace(day=1).isoformat())
    finding = client.get(f"/Patient/{pid}/$alignment").json()["parameter"]
    values = {p["name"]: value(p) for p in finding if "part" not in p}
    assert values["recommendedProduct"] == "dsnp", values
    change = values["estimatedAnnualImpact"]["value"]
    served = risk(client, pid, year)
    levers = {p["name"]: value(p) for p in next(p for p in served["parameter"] if p["name"] == "levers")["part"]}
    rates = orjson.loads((ROOT / "mappings" / "rates.json").read_bytes())["pmpm"]
    uplift = read_risk(served).uplift
    assert uplift > 0 and levers["first"] == "product-change" and levers["rateCell"] == "dsnp"
    assert levers["productChangeAnnual"]["value"] == change
    # The served uplift score is rounded to 4 decimals: ± 0.00005 × PMPM × 12 on the annual value.
    assert levers["rafUpliftAnnual"]["value"] == pytest.approx(uplift * rates["dsnp"] * 12, abs=0.00005 * rates["dsnp"] * 12)
    on_alignment = next(p for p in client.get(f"/Patient/{pid}/$alignment").json()["parameter"] if p["name"] == "levers")
    assert {p["name"]: value(p) for p in on_alignment["part"]}["rafUpliftAnnual"] == levers["rafUpliftAnnual"]
    totals = client.post("/$risk-evaluate", params={"paymentYear": str(year)}).json()["parameter"]
    totals = {p["name"]: value(p) for p in totals}
    assert totals["rafUpliftAnnual"]["value"] >= levers["rafUpliftAnnual"]["value"] - 0.01
    assert totals["productChangeAnnual"]["value"] >= change


@contextmanager
def _risk_tables_locked(database_url: str) -> Iterator[None]:
    """Another connection holding off every write to the stored risk tables: on SQLite the database's write
    lock (BEGIN IMMEDIATE), on PostgreSQL an EXCLUSIVE lock on the four tables (reads still pass)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        engine = create_engine(database_url)
        holder = engine.raw_connection()
        holder.cursor().execute("LOCK TABLE risk_dx, risk_member, risk_cc, risk_score IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()
        if not database_url.startswith("sqlite"):
            engine.dispose()


def test_alignment_scores_without_writing(server: RunningServer, client: httpx.Client) -> None:
    """`$alignment` scores the member's RAF "as of now" into temporary copies of the risk tables, so it answers,
    with the uplift `$risk` gives, while another connection holds off writers (SQLite: its single write lock,
    which a bulk load holds for long stretches); it kept no score either."""
    pid = medicare_member(client, date(TODAY.year - 70, 5, 5), "female", dual="02", sopt="11")
    clinical(client, pid, "E11.9", TODAY.replace(day=1).isoformat())
    client.get(f"/Patient/{pid}/$alignment").raise_for_status()  # evaluated, and the token fetched, before the lock
    with _risk_tables_locked(server.database_url):
        answered = client.get(f"/Patient/{pid}/$alignment", timeout=20)
    assert answered.status_code == 200, answered.text
    levers = next(p for p in answered.json()["parameter"] if p["name"] == "levers")
    served = risk(client, pid, TODAY.year + 1)
    on_risk = next(p for p in served["parameter"] if p["name"] == "levers")
    assert {p["name"]: value(p) for p in levers["part"]}["rafUpliftAnnual"] == \
        {p["name"]: value(p) for p in on_risk["part"]}["rafUpliftAnnual"]
