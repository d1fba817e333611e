"""Plan benefit packages with their own rules (SPEC §4.3, issue 17): a catalogue whose C-SNP is approved
for one condition grouping and whose D-SNPs differ in integration level and the dual levels they accept.

The catalogue is the shipped one with `csnp` and `dsnp` replaced by plans, as a plan would configure it
(`PLANFIT_MAPPINGS_DIR`): in 2026 most C-SNPs are approved for diabetes + chronic heart failure +
cardiovascular disorders (PBP condition position 19, reference/domain.md §2.3); FIDE D-SNPs (and NY
Medicaid Advantage Plus) take full-benefit duals only, coordination-only D-SNPs any dual (42 CFR 422.2,
rules-v2-leads.md, read 2026-12-03).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY
from tests.support.alignment import ICD, born, condition, coverage, finding, fhir_client, own_server, patient

PLAN_RATES = {"csnp-dm-chf-cvd": 1750.0, "dsnp-fide": 2300.0, "dsnp-coordination": 1900.0}


def _plan_catalogue(directory: Path) -> Path:
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    doc = json.loads((directory / "products.json").read_text())
    products = {p["code"]: p for p in doc["products"]}
    csnp, dsnp = products.pop("csnp"), products.pop("dsnp")
    grouped = copy.deepcopy(csnp)
    grouped.update(code="csnp-dm-chf-cvd", display="C-SNP approved for diabetes + CHF + cardiovascular",
                   coverage_area=[{"state": "NY"}])
    del grouped["plans"]  # a product that is itself one plan, as a catalogue without `plans` describes it
    grouped["eligibility"]["requires_any_valueset"] = ["csnp-diabetes", "csnp-chf", "csnp-cardiovascular"]
    fide = copy.deepcopy(dsnp)
    fide.update(code="dsnp-fide", display="FIDE D-SNP (full-benefit duals only)", priority=95)
    fide["eligibility"]["dual_levels"] = ["full"]
    fide["aliases"] = {"plan": ["FIDE-SNP"], "sopt": ["142"]}
    coordination = copy.deepcopy(dsnp)
    coordination.update(code="dsnp-coordination", display="Coordination-only D-SNP (any dual)")
    coordination["aliases"] = {"plan": ["D-SNP"], "sopt": ["14", "141"]}
    doc["products"] = [*products.values(), grouped, fide, coordination]
    (directory / "products.json").write_text(json.dumps(doc))
    rates = json.loads((directory / "rates.json").read_text())
    for code in ("csnp", "dsnp"):
        del rates["pmpm"][code]
        rates["basis"].pop(code, None)
    rates["pmpm"].update(PLAN_RATES)
    rates["cells"] = [c for c in rates["cells"] if c["product"] not in ("dsnp", *(p["id"] for p in csnp["plans"]))]
    (directory / "rates.json").write_text(json.dumps(rates))
    benefits = json.loads((directory / "benefits.json").read_text())  # the plans cover what their product did
    covered = benefits["coverage"]
    covered["csnp-dm-chf-cvd"] = covered.pop("csnp")
    covered["dsnp-fide"] = covered["dsnp-coordination"] = covered.pop("dsnp")
    (directory / "benefits.json").write_text(json.dumps(benefits))
    return directory


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def plan_server(request, tmp_path_factory: pytest.TempPathFactory,
                backend_client_keys: Any) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    work = tmp_path_factory.mktemp(f"plans-{request.param}")
    env = {"PLANFIT_MAPPINGS_DIR": str(_plan_catalogue(work / "mappings"))}
    with own_server(request.param, work, backend_client_keys, env) as (url, _):
        with fhir_client(url, backend_client_keys[0]) as clinical, fhir_client(url, backend_client_keys[1]) as claims:
            yield clinical, claims


def test_csnp_approved_for_a_grouping_does_not_take_a_member_with_another_condition(
        plan_server: tuple[httpx.Client, httpx.Client]) -> None:
    client, claims_client = plan_server
    copd = patient(client, born(72))
    coverage(claims_client, copd, plan="MA")
    condition(client, copd, [(ICD, "J44.9")])  # chronic lung disorder: not in the plan's grouping
    f = finding(client, copd)
    assert (f.status, f.kind, f.recommended) == ("aligned", None, "ma")
    assert "csnp-dm-chf-cvd" not in f.eligible and "csnp-lung" in f.categories

    diabetic = patient(client, born(72))
    coverage(claims_client, diabetic, plan="MA")
    condition(client, diabetic, [(ICD, "E11.9")])
    f = finding(client, diabetic)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "csnp-dm-chf-cvd")


def test_csnp_member_outside_the_plans_grouping_is_a_compliance_finding(
        plan_server: tuple[httpx.Client, httpx.Client]) -> None:
    client, claims_client = plan_server
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="csnp-dm-chf-cvd")
    condition(client, pid, [(ICD, "J44.9")])
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "compliance", "csnp-dm-chf-cvd", "ma")


@pytest.mark.parametrize(("code", "plan"), [("02", "dsnp-fide"), ("03", "dsnp-coordination")])
def test_partial_and_full_duals_by_the_plans_integration_level(plan_server: tuple[httpx.Client, httpx.Client],
                                                                code: str, plan: str) -> None:
    client, claims_client = plan_server
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="MA", dual=code)
    f = finding(client, pid)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", plan)
    assert ("dsnp-fide" in f.eligible) == (code == "02")
    assert f.impact == (PLAN_RATES[plan] - 1250.0) * 12  # the plan's own rate, not one D-SNP figure


def test_partial_dual_in_a_fide_dsnp_is_a_compliance_finding(plan_server: tuple[httpx.Client, httpx.Client]) -> None:
    client, claims_client = plan_server
    pid = patient(client, born(72))
    coverage(claims_client, pid, plan="FIDE-SNP", dual="01")
    f = finding(client, pid)
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "compliance", "dsnp-fide",
                                                             "dsnp-coordination")
