"""The engine's surroundings: PlanFit search parameters, `:in` against the mapping value sets, the
CapabilityStatement, start-up with broken mappings, and the pure pieces (paths, dates)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY
from server.alignment.window import EvaluationWindow, months_before
from server.fhir import searchparams
from server.fhir.dates import date_range
from tests.support.alignment import ICD, SCT, born, claim, condition, coverage, finding, patient
from tests.support.servers import ROOT, start_server, stop_server

SMI = "https://planfit.dev/fhir/ValueSet/smi"


def _ids(c: httpx.Client, query: str) -> set[str]:
    r = c.get(query)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def test_planfit_search_parameters(client: httpx.Client, claims_client: httpx.Client) -> None:
    pid = patient(client, born(70))
    cov = coverage(claims_client, pid, plan="HMO-DSNP", sopt="141", dual="04", start="2020-01-01", end="2030-12-31")
    dx = condition(client, pid, [(ICD, "F20.9")])
    coded = claim(claims_client, pid, codes=[(ICD, "E11.9")], day="2025-03-04")
    cited = claim(claims_client, pid, references=[dx], day="2025-05-06")
    eob = claim(claims_client, pid, codes=[(ICD, "I50.9")], rtype="ExplanationOfBenefit", day="2025-05-06")

    mine = f"beneficiary=Patient/{pid}"
    assert _ids(client, f"/Coverage?{mine}&plan=HMO-DSNP") == {cov}
    assert _ids(client, f"/Coverage?{mine}&plan=MA") == set()
    assert _ids(client, f"/Coverage?{mine}&dual-status=04") == {cov}
    assert _ids(client, f"/Coverage?{mine}&period=le2025-06-01&period=ge2025-06-01") == {cov}  # in force that day
    assert _ids(client, f"/Coverage?{mine}&period=lt2019-01-01") == set()
    assert _ids(client, f"/Claim?patient={pid}&diagnosis={ICD}|E11.9") == {coded}
    assert _ids(client, f"/Claim?patient={pid}&diagnosis-reference=Condition/{dx}") == {cited}
    assert _ids(client, f"/Claim?patient={pid}&service-date=2025-05") == {cited}
    assert _ids(client, f"/ExplanationOfBenefit?patient={pid}&diagnosis=I50.9&service-date=ge2025") == {eob}


def test_in_modifier_uses_the_mapping_value_sets(client: httpx.Client) -> None:
    pid = patient(client, born(30))
    schizophrenia = condition(client, pid, [(ICD, "F20.9")])
    bipolar = condition(client, pid, [(SCT, "13746004")])
    condition(client, pid, [(ICD, "E11.9")])
    assert _ids(client, f"/Condition?patient={pid}&code:in={SMI}") == {schizophrenia, bipolar}
    assert client.get("/Condition?code:in=https://planfit.dev/fhir/ValueSet/nope").status_code == 400


def test_capability_statement_lists_parameters_and_operations(client: httpx.Client) -> None:
    statement = client.get("/metadata").json()
    rest = statement["rest"][0]
    assert {"name": "evaluate-alignment",
            "definition": "https://planfit.dev/fhir/OperationDefinition/evaluate-alignment"} in rest["operation"]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert "alignment" in {op["name"] for op in by_type["Patient"]["operation"]}
    params = {p["name"]: p for p in by_type["Coverage"]["searchParam"]}
    assert params["plan"] == {"name": "plan", "type": "token",
                              "definition": "https://planfit.dev/fhir/SearchParameter/Coverage-plan"}
    assert params["beneficiary"]["definition"] == "http://hl7.org/fhir/SearchParameter/Coverage-beneficiary"
    claim_params = {p["name"] for p in by_type["Claim"]["searchParam"]}
    assert {"diagnosis", "diagnosis-reference", "service-date"} <= claim_params
    assert "Claim:diagnosis-reference" in by_type["Claim"]["searchInclude"]


def test_broken_mapping_file_stops_the_server(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, mappings)
    products = json.loads((mappings / "products.json").read_text())
    products["products"][2]["priority"] = "70"
    (mappings / "products.json").write_text(json.dumps(products))
    env = {"PLANFIT_MAPPINGS_DIR": str(mappings)}
    with pytest.raises(RuntimeError) as exited:
        process, _url = start_server(f"sqlite:///{tmp_path / 'planfit.db'}", tmp_path / "server.log", env)
        stop_server(process)
    assert "products.json: products[2].priority: Input should be a valid integer" in str(exited.value)


def test_bad_evaluation_date_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as exited:
        process, _url = start_server(f"sqlite:///{tmp_path / 'planfit.db'}", tmp_path / "server.log",
                                     {"PLANFIT_EVALUATION_DATE": "01/01/2026"})
        stop_server(process)
    assert "PLANFIT_EVALUATION_DATE must be a date like 2026-01-01" in str(exited.value)


def test_planfit_synth_and_evaluate_commands(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "server.cli"]
    synth = subprocess.run([*run, "synth", "--members", "40", "--seed", "3", "--out", str(tmp_path / "pop")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert synth.returncode == 0, synth.stderr
    assert len(json.loads((tmp_path / "pop" / "ground_truth.json").read_text())["members"]) == 40
    env = {**os.environ, "PLANFIT_DATABASE_URL": f"sqlite:///{tmp_path / 'planfit.db'}",
           "PLANFIT_EVALUATION_DATE": "2026-01-01"}
    evaluate = subprocess.run([*run, "evaluate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stdout.startswith("0 members evaluated as of 2026-01-01 (lookback from 2024-01-01)")


# -- pure pieces -------------------------------------------------------------------------------------------


def test_nested_filter_paths() -> None:
    coverage_resource = {
        "resourceType": "Coverage",
        "class": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}]},
             "value": "G-1"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
             "value": "NY-MMC"},
        ],
        "extension": [{"url": "https://planfit.dev/fhir/StructureDefinition/dual-status-code", "valueCode": "02"},
                      {"url": "https://example.org/other", "valueCode": "x"}],
    }
    plan = searchparams.lookup("Coverage", "plan")
    dual = searchparams.lookup("Coverage", "dual-status")
    assert [v for p in plan.paths for v in searchparams.values_at(coverage_resource, p)] == ["NY-MMC"]
    assert [v for p in dual.paths for v in searchparams.values_at(coverage_resource, p)] == ["02"]
    email = searchparams.parse_path("telecom[system=email]")
    assert list(searchparams.values_at({"telecom": [{"system": "phone", "value": "1"},
                                                    {"system": "email", "value": "a@b"}]}, email)) == [
        {"system": "email", "value": "a@b"}]


def test_window_bounds() -> None:
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2024, 2, 29), 12) == date(2023, 2, 28)
    window = EvaluationWindow(date(2026, 1, 1), 24)
    assert window.lookback_start == date(2024, 1, 1)
    # born on 2005-01-01: 21 on 2026-01-01; born a day later: still 20
    assert window.born_by_us(21) == date_range("2005-01-01")[1]
    assert window.start_us == date_range("2024-01-01")[0] and window.as_of_hi_us == date_range("2026-01-01")[1]


def test_member_finding_read_in_one_statement_answers_as_a_read(client: httpx.Client, claims_client: httpx.Client) -> None:
    """`$alignment` and `$evaluate-measure` for one subject read the Patient, the caller's reach of it and
    the whole finding (products, categories, evidence, coverages) in one statement: every part comes
    back, and a deleted or unknown Patient answers 410 / 404 as a read of it does."""
    pid = patient(client, born(40))
    cov = coverage(claims_client, pid, plan="HMO-DSNP", sopt="141", dual="04", start="2020-01-01", end="2030-12-31")
    dx = condition(client, pid, [(ICD, "F20.9")])
    found = finding(client, pid)
    assert found.status and found.eligible and found.age == 40
    assert f"Condition/{dx}" in {e["resource"] for e in found.categories["smi"]["evidence"]}
    assert {c["resource"] for c in found.coverages} == {f"Coverage/{cov}"}
    report = client.get("/Measure/product-alignment/$evaluate-measure",
                        params={"subject": f"Patient/{pid}", "reportType": "subject"})
    assert report.status_code == 200 and report.json()["subject"]["reference"] == f"Patient/{pid}"
    assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    assert client.get(f"/Patient/{pid}/$alignment").status_code == 410
    gone = client.get("/Measure/product-alignment/$evaluate-measure", params={"subject": f"Patient/{pid}"})
    assert gone.status_code == 410
    assert client.get("/Patient/no-such-member/$alignment").status_code == 404
