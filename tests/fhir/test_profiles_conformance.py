"""Every PlanFit output conforms to the profile it names, and every shipped definition is valid FHIR.

Outputs checked on both databases: individual, summary and subject-list MeasureReports of both measures,
and the six cohort Groups (full reads). `tests/support/profile_checker.py` checks each against its profile's
differential with the value sets and code systems as the server serves them; the checker is shown to
catch violations too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import orjson
import pytest

from server.alignment.mappings import load_mappings
from server.cohorts.definitions import COHORT_IDS
from server.fhir.validation import validate_resource
from server.measures.definitions import BASE, DERIVED, PROFILES_DIR
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.measures import PROFILES, bh_member, evaluate, served_definitions
from tests.support.profile_checker import ProfileChecker

MEASURES = ("product-alignment", "nonclaims-bh-dx")


def test_shipped_definitions_are_valid_fhir(client: httpx.Client) -> None:
    """Each file of profiles/ and its served form (code systems completed by the server) is valid FHIR,
    and every binding and extension profile a StructureDefinition names is shipped."""
    served = served_definitions(client)
    for path, resource in zip(sorted(PROFILES.glob("*.json")), served):
        shipped = orjson.loads(path.read_bytes())
        assert path.name == f"{shipped['resourceType']}-{shipped['id']}.json"
        assert shipped["url"] == f"{BASE}/{shipped['resourceType']}/{shipped['id']}"
        assert validate_resource(shipped) == [], path.name
        assert validate_resource(resource) == [], path.name
        assert {k: v for k, v in resource.items() if k not in ("meta", "concept", "count")} == \
            {k: v for k, v in shipped.items() if k not in ("concept", "count")}
    checker = ProfileChecker(served)
    for sd in checker.structures.values():
        for element in sd["differential"]["element"]:
            assert element["path"].split(".")[0] == sd["type"] and element["id"].startswith(sd["type"])
            binding = element.get("binding", {})
            if binding.get("strength") == "required":
                assert checker.codes(binding["valueSet"]), binding  # shipped and not empty
            for t in element.get("type", []):
                for profile in t.get("profile", []):
                    assert not profile.startswith(BASE) or profile in checker.structures, profile


@pytest.fixture
def checker(client: httpx.Client) -> ProfileChecker:
    return ProfileChecker(served_definitions(client))


def _conforms(checker: ProfileChecker, resource: dict[str, Any]) -> None:
    assert validate_resource(resource) == []
    assert checker.check(resource) == []


def test_measure_reports_conform(checker: ProfileChecker, client: httpx.Client, claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    r = client.post("/Group", json={"resourceType": "Group", "type": "person", "actual": True,
                                    "member": [{"entity": {"reference": f"Patient/{member.patient}"}}]})
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    for measure in MEASURES:
        individual = evaluate(client, measure, subject=f"Patient/{member.patient}")
        summary = evaluate(client, measure)
        subject_list = evaluate(client, measure, subject=f"Group/{group}", reportType="subject-list")
        for report, kind in ((individual, "individual"), (summary, "summary"), (subject_list, "subject-list")):
            assert report["meta"]["profile"] == [f"{BASE}/StructureDefinition/alignment-measurereport-{kind}"]
            _conforms(checker, report)


def test_cohort_groups_conform(checker: ProfileChecker, client: httpx.Client, claims_client: httpx.Client) -> None:
    bh_member(client, claims_client)  # so that the cohorts have members
    for cohort in COHORT_IDS:
        r = client.get(f"/Group/{cohort}")
        assert r.status_code == 200, r.text
        group = r.json()
        assert group["meta"]["profile"] == [f"{BASE}/StructureDefinition/cohort-group"]
        _conforms(checker, group)


def test_the_checker_finds_violations(checker: ProfileChecker, client: httpx.Client,
                                      claims_client: httpx.Client) -> None:
    member = bh_member(client, claims_client)
    report = evaluate(client, "product-alignment", subject=f"Patient/{member.patient}")

    def problems(change) -> list[str]:
        broken = copy.deepcopy(report)
        change(broken)
        return checker.check(broken)

    def drop_status(r: dict) -> None:
        r["extension"] = [e for e in r["extension"] if not e["url"].endswith("/alignment-status")]

    def bad_product(r: dict) -> None:
        next(e for e in r["extension"] if e["url"].endswith("/enrolled-product"))["valueCoding"]["code"] = "x"

    def bad_population(r: dict) -> None:
        r["group"][0]["population"][0]["code"]["coding"][0]["code"] = "measure-observation"

    cases = {
        "MeasureReport.type": lambda r: r.update(type="summary"),
        "MeasureReport.extension:alignmentStatus": drop_status,
        "is not in https://planfit.dev/fhir/ValueSet/product": bad_product,
        "is not in https://planfit.dev/fhir/ValueSet/measure-population": bad_population,
        "MeasureReport.subject": lambda r: r.update(subject={"reference": "Group/x"}),
        "MeasureReport.group.population.subjectResults": lambda r: r["group"][0]["population"][0].update(
            subjectResults={"reference": "#x"}),
        "has no shipped definition": lambda r: r["extension"].append(
            {"url": f"{BASE}/StructureDefinition/unknown", "valueCode": "x"}),
        "meta.profile": lambda r: r.pop("meta"),
    }
    for expected, change in cases.items():
        found = problems(change)
        assert any(expected in p for p in found), (expected, found)

    group = client.get("/Group/misaligned").json()
    assert group.get("member"), "the misaligned cohort has members"
    group["member"][0].pop("extension")
    assert any("Group.member.extension:changeType" in p for p in checker.check(group))


def test_shipped_code_systems_list_the_concepts_the_server_publishes() -> None:
    """profiles/ CodeSystems are complete as files, not empty shells, and agree with what the server emits."""
    mappings = load_mappings()
    for path in sorted(PROFILES_DIR.glob("CodeSystem-*.json")):
        shipped = json.loads(path.read_text())
        assert shipped.get("concept") and shipped["count"] == len(shipped["concept"]), path.name
        if shipped["id"] in DERIVED:
            assert shipped["concept"] == DERIVED[shipped["id"]](mappings), path.name
