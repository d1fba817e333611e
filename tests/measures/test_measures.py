"""`$evaluate-measure` over HTTP on both databases: seeded definitions, summary and subject-list reports
against a synthetic population's ground truth and the cohort Groups, individual reports with their exact
evidence, SMART patient confinement, and storing and searching reports."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from server.alignment.rules import REASONS
from server.synth import generate
from server.cohorts.definitions import COHORT_IDS
from tests.support.alignment import ICD, TODAY, claim, condition, finding, member_ids, post_bundles
from tests.support.auth import APP_SCOPE, app_token, bearer, register_app, register_user
from tests.support.servers import RunningServer
from tests.support.measures import (
    PROFILES,
    ROOT,
    bh_member,
    counts,
    evaluate,
    extension_values,
    mapping_file,
    strata,
    subject_lists,
)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

MEMBERS = 200
SEED = 5151


@dataclass(frozen=True)
class Population:
    truth: dict[str, dict[str, Any]]  # Patient id → ground truth
    group: str  # a client Group of exactly these members


@pytest.fixture(scope="module")
def population(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Population:
    out = tmp_path_factory.mktemp("measure-population")
    generate(MEMBERS, seed=SEED, out=out, as_of=TODAY)
    with server.http(server.auth, timeout=120) as c, \
            server.http(server.claims_auth, timeout=120) as claims:
        post_bundles(c, out / "clinical")
        post_bundles(claims, out / "claims")
        truth = orjson.loads((out / "ground_truth.json").read_bytes())["members"]
        ids = member_ids(c)
        by_patient = {ids[ident]: expected for ident, expected in truth.items()}
        group = {"resourceType": "Group", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in by_patient]}
        r = c.post("/Group", json=group)
        assert r.status_code == 201, r.text
    return Population(by_patient, r.json()["id"])


def _tally(values: list[str | None]) -> dict[str, int]:
    return dict(Counter("unknown" if v is None else v for v in values))


# ---- definitions --------------------------------------------------------------------------------------


def test_definitions_are_seeded_served_and_protected(client: httpx.Client) -> None:
    refused_types = set()
    for path in sorted(PROFILES.glob("*.json")):
        shipped = orjson.loads(path.read_bytes())
        rtype = shipped["resourceType"]
        r = client.get(f"/{rtype}/{shipped['id']}")
        assert r.status_code == 200, path.name
        served = r.json()
        assert served["url"] == shipped["url"] and served["meta"]["versionId"] == "1"  # restarts are no-ops
        if rtype not in refused_types:  # one write per type is enough to show the guard
            r = client.put(f"/{rtype}/{shipped['id']}", json=served)
            assert r.status_code == 405, r.text
            refused_types.add(rtype)
    assert refused_types == {"CodeSystem", "Measure", "StructureDefinition", "ValueSet"}
    assert client.delete("/Measure/product-alignment").status_code == 405
    concepts = {cs: [c["code"] for c in client.get(f"/CodeSystem/{cs}").json()["concept"]]
                for cs in ("product", "alignment-reason", "cohort", "diagnosis-category", "dual-status")}
    products = mapping_file("products.json")
    assert set(concepts["product"]) == {p["code"] for p in products["products"]}
    assert concepts["alignment-reason"] == list(REASONS)
    assert concepts["cohort"] == list(COHORT_IDS)
    assert set(concepts["diagnosis-category"]) == {p.stem for p in (ROOT / "mappings" / "valuesets").glob("*.json")}
    assert set(concepts["dual-status"]) == {c["code"] for c in products["dual_status"]["codes"]}
    found = client.get("/Measure", params={"url": "https://planfit.dev/fhir/Measure/nonclaims-bh-dx"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["nonclaims-bh-dx"]
    measure = client.get("/Measure/product-alignment").json()
    assert [p["code"]["coding"][0]["code"] for p in measure["group"][0]["population"]] == \
        ["initial-population", "denominator", "numerator"]
    assert [s["id"] for s in measure["group"][0]["stratifier"]] == \
        ["enrolled-product", "recommended-product", "enrolled-recommended", "status"]


# ---- population ------------------------------------------------------------------------------------------


def test_summary_counts_equal_ground_truth(population: Population, client: httpx.Client) -> None:
    truth = population.truth.values()
    covered = [t for t in truth if t["status"] != "not-evaluable"]
    misaligned = [t for t in covered if t["status"] == "misaligned"]
    report = evaluate(client, "product-alignment", subject=f"Group/{population.group}")
    assert report["type"] == "summary" and report["subject"]["reference"] == f"Group/{population.group}"
    assert counts(report) == {"initial-population": len(covered), "denominator": len(covered),
                              "numerator": len(misaligned)}
    for stratifier, key in (("enrolled-product", "enrolled_product"), ("recommended-product", "recommended_product")):
        got = strata(report, stratifier)
        assert {v: c["initial-population"] for v, c in got.items()} == _tally([t[key] for t in covered])
        assert {v: c["numerator"] for v, c in got.items() if c["numerator"]} == _tally([t[key] for t in misaligned])
    flows = strata(report, "enrolled-recommended")
    assert {v: c["numerator"] for v, c in flows.items() if c["numerator"]} == \
        _tally([f"{t['enrolled_product'] or 'unknown'}>{t['recommended_product'] or 'unknown'}" for t in misaligned])
    assert {v: c["initial-population"] for v, c in strata(report, "status").items()} == \
        _tally([t["status"] for t in covered])

    report = evaluate(client, "nonclaims-bh-dx", subject=f"Group/{population.group}")
    gaps = [t for t in truth if t["non_claims_categories"]]
    assert counts(report)["numerator"] == len(gaps)
    by_category = strata(report, "category")
    assert {v: c["numerator"] for v, c in by_category.items() if c["numerator"]} == \
        dict(Counter(cat for t in gaps for cat in t["non_claims_categories"]))
    # The initial population (a counted SMI/SUD diagnosis from any source) is not in the ground truth:
    # check it against each member's own finding.
    with ThreadPoolExecutor(max_workers=8) as pool:
        findings = list(pool.map(lambda pid: finding(client, pid), population.truth))
    # Categories with qualifying evidence (suspect-only ones are shown with clinical and claims false).
    qualifying = [{c for c, v in f.categories.items() if v["clinical"] or v["claims"]} for f in findings]
    with_bh = [cats for cats in qualifying if {"smi", "sud"} & cats]
    assert counts(report)["initial-population"] == len(with_bh)
    assert {v: c["initial-population"] for v, c in by_category.items()} == \
        dict(Counter(cat for cats in with_bh for cat in {"smi", "sud"} & cats))


def test_summary_counts_equal_cohort_group_quantities(population: Population, client: httpx.Client) -> None:
    def quantity(cohort: str) -> int:
        r = client.get(f"/Group/{cohort}", params={"_summary": "true"})
        assert r.status_code == 200, r.text
        return r.json()["quantity"]

    assert counts(evaluate(client, "product-alignment"))["numerator"] == quantity("misaligned")
    report = evaluate(client, "nonclaims-bh-dx")
    for category, c in strata(report, "category").items():
        assert c["numerator"] == quantity(f"nonclaims-{category}")
    # A cohort Group as the subject: its current members, every one of them in the numerator.
    for measure, cohort in (("product-alignment", "misaligned"), ("nonclaims-bh-dx", "nonclaims-smi")):
        got = counts(evaluate(client, measure, subject=f"Group/{cohort}"))
        assert got["numerator"] == got["initial-population"] == quantity(cohort) > 0


def test_summary_total_impact_is_the_numerators_impact(population: Population, client: httpx.Client) -> None:
    report = evaluate(client, "product-alignment", subject=f"Group/{population.group}")
    ids = [pid for pid, t in population.truth.items() if t["status"] == "misaligned"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        impacts = [f.impact for f in pool.map(lambda pid: finding(client, pid), ids) if f.impact is not None]
    (money,) = extension_values(report, "estimated-annual-impact")
    assert money["currency"] == "USD"
    assert Decimal(str(money["value"])) == sum(Decimal(str(v)) for v in impacts)


def test_subject_list_lists_exactly_the_expected_subjects(population: Population, client: httpx.Client) -> None:
    report = evaluate(client, "product-alignment", subject=f"Group/{population.group}", reportType="subject-list")
    assert report["type"] == "subject-list"
    lists = subject_lists(report)
    truth = population.truth
    assert sorted(lists["initial-population"]) == sorted(p for p, t in truth.items() if t["status"] != "not-evaluable")
    assert lists["denominator"] == lists["initial-population"]
    assert sorted(lists["numerator"]) == sorted(p for p, t in truth.items() if t["status"] == "misaligned")
    assert {k: len(v) for k, v in lists.items()} == counts(report)

    report = evaluate(client, "nonclaims-bh-dx", subject=f"Group/{population.group}", reportType="subject-list")
    lists = subject_lists(report)
    assert sorted(lists["numerator"]) == sorted(p for p, t in truth.items() if t["non_claims_categories"])
    assert set(lists["numerator"]) <= set(lists["initial-population"])
    assert {k: len(v) for k, v in lists.items()} == counts(report)


# ---- individual ------------------------------------------------------------------------------------------


def test_individual_report_lists_exactly_its_evidence(client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    report = evaluate(client, "product-alignment", subject=f"Patient/{member.patient}")
    assert report["type"] == "individual" and report["subject"]["reference"] == f"Patient/{member.patient}"
    assert counts(report) == {"initial-population": 1, "denominator": 1, "numerator": 1}
    plans = {"InsurancePlan/ny-harp", "InsurancePlan/ny-mmc"}  # the recommended and the enrolled plan
    assert {e["reference"] for e in report["evaluatedResource"]} == member.evidence | plans
    assert len(report["evaluatedResource"]) == len(member.evidence | plans)
    assert extension_values(report, "alignment-status") == ["misaligned"]
    assert [c["code"] for c in extension_values(report, "enrolled-product")] == ["ny-mmc"]
    assert [c["code"] for c in extension_values(report, "recommended-product")] == ["ny-harp"]
    rates = mapping_file("rates.json")
    (money,) = extension_values(report, "estimated-annual-impact")
    assert money == {"value": (rates["pmpm"]["ny-harp"] - rates["pmpm"]["ny-mmc"]) * 12, "currency": rates["currency"]}
    assert "higher-priority-eligible" in [c["code"] for c in extension_values(report, "alignment-reason")]


def test_individual_report_names_the_categories_met_with_their_evidence_and_the_kind(
        client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    suspect = condition(client, member.patient, [(ICD, "F33.2")], verification="provisional")
    report = evaluate(client, "product-alignment", subject=f"Patient/{member.patient}")
    assert extension_values(report, "alignment-kind") == ["opportunity"]
    groups = [g["id"] for g in report["group"][1:]]
    assert groups == ["csnp-diabetes", "csnp-mental-health", "csnp-substance-dependence", "smi", "sud"]
    supporting = {category: [e["reference"] for e in report["evaluatedResource"]
                             if any(x["valueString"] == category for x in e.get("extension", []))]
                  for category in groups}
    assert supporting["smi"] == [f"Condition/{member.smi}"] and supporting["sud"] == [f"Condition/{member.sud}"]
    assert f"Condition/{suspect}" not in {e["reference"] for e in report["evaluatedResource"]}  # never qualifying


def test_nonclaims_individual_report_has_an_open_gap_per_category(client: httpx.Client,
                                                                  claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    report = evaluate(client, "nonclaims-bh-dx", subject=f"Patient/{member.patient}")
    assert counts(report) == {"initial-population": 1, "denominator": 1, "numerator": 1}
    gaps = {g["id"]: g for g in report["group"][1:]}
    assert set(gaps) == {"smi", "sud"}
    ra = "http://hl7.org/fhir/us/davinci-ra/StructureDefinition/"
    for category, condition, code in (("smi", member.smi, "F20.9"), ("sud", member.sud, "F11.20")):
        ext = {e["url"].removeprefix(ra): e for e in gaps[category]["extension"]}
        assert ext["ra-evidenceStatus"]["valueCodeableConcept"]["coding"][0]["code"] == "open-gap"
        assert ext["ra-ccType"]["valueCodeableConcept"]["coding"][0]["code"] == "suspected"
        assert ext["ra-evidenceStatusDate"]["valueDate"] == TODAY.isoformat()
        assert ext["ra-dxCode"]["valueCodeableConcept"]["coding"][0]["code"] == code
        supporting = [e["reference"] for e in report["evaluatedResource"]
                      if any(x["valueString"] == category for x in e.get("extension", []))]
        assert supporting == [f"Condition/{condition}"]
    # only behavioural-health evidence: not the diabetes claim, the coverage or the refuted condition
    assert {e["reference"] for e in report["evaluatedResource"]} == {f"Condition/{member.smi}",
                                                                    f"Condition/{member.sud}"}


def test_a_claim_closes_the_gap_in_the_individual_report(client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    closing = claim(claims_client, member.patient, codes=[(ICD, "F20.9")])
    report = evaluate(client, "nonclaims-bh-dx", subject=f"Patient/{member.patient}")
    assert [g["id"] for g in report["group"][1:]] == ["sud"]
    assert f"Claim/{closing}" in {e["reference"] for e in report["evaluatedResource"]}


def test_post_with_parameters_equals_get(client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    params = {"periodStart": TODAY.replace(month=1, day=1).isoformat(), "periodEnd": TODAY.isoformat(),
              "subject": f"Patient/{member.patient}"}
    got = evaluate(client, "product-alignment", **params)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": params["periodStart"]},
        {"name": "periodEnd", "valueDate": params["periodEnd"]},
        {"name": "subject", "valueReference": {"reference": params["subject"]}},
        {"name": "reportType", "valueCode": "subject"}]}
    r = client.post("/Measure/product-alignment/$evaluate-measure", json=body)
    assert r.status_code == 200, r.text
    posted = r.json()
    assert posted["period"] == {"start": params["periodStart"], "end": params["periodEnd"]}
    assert {**posted, "date": None} == {**got, "date": None}


@pytest.mark.parametrize(("params", "status"), [
    ({"periodStart": "2001", "periodEnd": "2002"}, 400),  # does not overlap the evaluation window
    ({"periodStart": "2026-13-01"}, 400),
    ({"periodStart": TODAY.isoformat(), "periodEnd": "2001"}, 400),
    ({"subject": "Patient"}, 400),
    ({"subject": "Encounter/x"}, 400),
    ({"reportType": "subject"}, 400),  # no Patient subject
    ({"reportType": "summary"}, 400),
    ({"practitioner": "Practitioner/x"}, 400),
    ({"subject": "Patient/does-not-exist"}, 404),
    ({"subject": "Group/does-not-exist"}, 404),
])
def test_bad_requests(client: httpx.Client, params: dict[str, str], status: int) -> None:
    body = evaluate(client, "product-alignment", expect=status, **params)
    assert body["resourceType"] == "OperationOutcome"


def test_unknown_measure_is_not_found(client: httpx.Client) -> None:
    assert evaluate(client, "no-such-measure", expect=404)["resourceType"] == "OperationOutcome"


# ---- SMART -----------------------------------------------------------------------------------------------


def test_patient_token_gets_its_own_report_only(server: RunningServer, client: httpx.Client,
                                                claims_client: httpx.Client) -> None:
    mine, other = bh_member(client, claims_client), bh_member(client, claims_client)
    app = register_app(server, APP_SCOPE)
    user = register_user(server, f"Patient/{mine.patient}", [])
    token = app_token(server, app, "launch/patient patient/*.rs", user)
    assert token["patient"] == mine.patient
    with server.http(None, bearer(token["access_token"])) as patient_app:
        for measure in ("product-alignment", "nonclaims-bh-dx"):
            own = evaluate(patient_app, measure, subject=f"Patient/{mine.patient}")
            assert own == {**evaluate(client, measure, subject=f"Patient/{mine.patient}"), "date": own["date"]}
            hidden = evaluate(patient_app, measure, expect=404, subject=f"Patient/{other.patient}")
            missing = evaluate(patient_app, measure, expect=404, subject="Patient/no-such-patient")
            assert hidden["issue"][0]["code"] == missing["issue"][0]["code"] == "not-found"
            for report_type in ("population", "subject-list"):
                evaluate(patient_app, measure, expect=403, reportType=report_type)
            evaluate(patient_app, measure, expect=403, subject="Group/misaligned")

    # The reports show diagnoses: a token that may not read the patient's Conditions gets none (SPEC §6).
    narrow = app_token(server, app, "launch/patient patient/Patient.rs patient/MeasureReport.rs patient/Coverage.rs",
                       user)
    with server.http(None, bearer(narrow["access_token"])) as patient_app:
        for measure in ("product-alignment", "nonclaims-bh-dx"):
            refused = evaluate(patient_app, measure, expect=403, subject=f"Patient/{mine.patient}")
            assert refused["issue"][0]["code"] == "forbidden"


# ---- storing and searching reports -------------------------------------------------------------------------


def test_reports_are_stored_and_searched(client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    report = evaluate(client, "product-alignment", subject=f"Patient/{member.patient}")
    r = client.post("/MeasureReport", json=report)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    summary = client.post("/MeasureReport", json=evaluate(client, "nonclaims-bh-dx"))
    assert summary.status_code == 201, summary.text

    def found(**params: str) -> set[str]:
        bundle = client.get("/MeasureReport", params={**params, "_count": "1000"}).json()
        return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}

    assert found(subject=f"Patient/{member.patient}") == {rid}
    assert found(patient=member.patient) == {rid}
    assert rid in found(measure="https://planfit.dev/fhir/Measure/product-alignment", date=f"ge{TODAY.isoformat()}")
    assert rid not in found(measure="https://planfit.dev/fhir/Measure/nonclaims-bh-dx")
    assert summary.json()["id"] in found(measure="https://planfit.dev/fhir/Measure/nonclaims-bh-dx", status="complete")
    assert rid not in found(date="lt2001-01-01")
