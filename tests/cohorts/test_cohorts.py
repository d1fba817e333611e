"""Cohort Groups (SPEC §5) over real HTTP on both databases, built from a synthetic population's findings.

Membership is compared with the population's ground truth (written by scenario, not by a rules
engine); a claim that closes a non-claims SMI gap must drop that member in a new Group version while
the previous version stays readable as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import orjson
import pytest

from server.synth import generate
from server.cohorts.definitions import COHORT_CODE_SYSTEM, COHORT_IDS, COHORT_SYSTEM
from tests.support.alignment import ICD, TODAY, claim, days_ago, member_ids, post_bundles
from tests.support.auth import backend_token, bearer, register_backend
from tests.support.bulk import download, export
from tests.support.cohorts import (
    change_type,
    cohort_codes,
    current_members,
    dropped_members,
    patient_id,
    profile_violations,
    read_group,
    search_ids,
    version_of,
)
from tests.support.servers import RunningServer
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

MEMBERS = 200
SEED = 5150  # member identifiers carry the seed: this population never merges with another test's

Truth = dict[str, dict[str, Any]]


def _candidate(product: str) -> Callable[[dict[str, Any]], bool]:
    """Eligible for the product, enrolled in another one (members with no enrolled product are nobody's)."""
    return lambda t: product in t["eligible_products"] and t["enrolled_product"] not in (None, product)


# Each cohort in the ground truth's terms.
RULES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "nonclaims-smi": lambda t: "smi" in t["non_claims_categories"],
    "nonclaims-sud": lambda t: "sud" in t["non_claims_categories"],
    "misaligned": lambda t: t["status"] == "misaligned",
    **{f"candidates-{p}": _candidate(p) for p in ("ny-harp", "dsnp", "csnp")},
}


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort-population")
    generate(MEMBERS, seed=SEED, out=out, as_of=TODAY)
    return out


def _client(server: RunningServer, auth: httpx.Auth) -> httpx.Client:
    return server.http(auth, timeout=120)


@pytest.fixture(scope="module")
def loaded(population: Path, server: RunningServer) -> Truth:
    """The population ingested (clinical bundles as the clinical client, claims as the claims client);
    its ground truth by Patient id."""
    with _client(server, server.auth) as clinical, _client(server, server.claims_auth) as claims:
        post_bundles(clinical, population / "clinical")
        post_bundles(claims, population / "claims")
        truth = orjson.loads((population / "ground_truth.json").read_bytes())["members"]
        ids = {ident: pid for ident, pid in member_ids(clinical).items() if ident in truth}
    assert len(ids) == MEMBERS
    return {ids[ident]: t for ident, t in truth.items()}


def _expected(truth: Truth, cohort_id: str) -> set[str]:
    return {pid for pid, t in truth.items() if RULES[cohort_id](t)}


def test_membership_equals_ground_truth_and_groups_conform(client: httpx.Client, loaded) -> None:
    truth = loaded
    codes = cohort_codes(client, COHORT_IDS)
    for cohort_id in COHORT_IDS:
        group = read_group(client, cohort_id)
        expected = _expected(truth, cohort_id)
        assert expected, f"the population has no {cohort_id} member: the comparison would prove nothing"
        assert current_members(group) & truth.keys() == expected, cohort_id
        assert group["quantity"] == len(current_members(group))
        assert profile_violations(group, codes=codes) == [], cohort_id
        assert group["identifier"] == [{"system": COHORT_SYSTEM, "value": cohort_id}]
        assert group["code"]["coding"][0]["system"] == COHORT_CODE_SYSTEM
        assert "tag" not in group["meta"]  # the full Group is not SUBSETTED
        for member in group["member"]:
            assert change_type(member) in ("new", "nochange", "dropped")
            assert (change_type(member) == "dropped") == bool(member.get("inactive"))


def test_summary_read_is_the_subsetted_header(client: httpx.Client, loaded) -> None:
    r = client.get("/Group/misaligned", params={"_summary": "true"})
    assert r.status_code == 200, r.text
    group = r.json()
    assert "member" not in group and group["quantity"] > 0
    assert [t["code"] for t in group["meta"]["tag"]] == ["SUBSETTED"]


def test_claim_closing_a_gap_drops_the_member_in_a_new_version(client, claims_client, loaded) -> None:
    truth = loaded
    gaps = sorted(pid for pid, t in truth.items() if t["scenario"] == "harp-candidate-clinical-smi")
    first, second = gaps[0], gaps[1]
    before = read_group(client, "nonclaims-smi")
    version = int(before["meta"]["versionId"])
    assert first in current_members(before)

    claim(claims_client, first, codes=[(ICD, "F20.9")], day=days_ago(15))
    after = read_group(client, "nonclaims-smi")
    assert int(after["meta"]["versionId"]) == version + 1
    (entry,) = [m for m in after["member"] if patient_id(m) == first]
    assert change_type(entry) == "dropped" and entry["inactive"] is True and entry["period"]["end"]
    assert after["quantity"] == before["quantity"] - 1
    assert {change_type(m) for m in after["member"] if patient_id(m) != first} == {"nochange"}
    assert read_group(client, "nonclaims-smi", version) == before  # the earlier version, unchanged

    history = client.get("/Group/nonclaims-smi/_history").json()
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions[:2] == [version + 1, version] and history["total"] >= 2

    # The next change lists the dropped member no more: dropped members appear once.
    claim(claims_client, second, codes=[(ICD, "F31.9")], day=days_ago(15))
    later = read_group(client, "nonclaims-smi")
    assert int(later["meta"]["versionId"]) == version + 2
    assert dropped_members(later) == {second}
    assert first not in {patient_id(m) for m in later["member"]}
    assert "nonclaims-smi" not in search_ids(client, f"member=Patient/{first}")
    assert read_group(client, "nonclaims-smi", version + 1) == after


def test_no_new_version_when_membership_does_not_change(client: httpx.Client, loaded) -> None:
    truth = loaded
    assert client.post("/$evaluate-alignment", timeout=300).status_code == 200  # whatever else the server holds
    versions = {c: version_of(client, c) for c in COHORT_IDS}
    member = next(pid for pid, t in truth.items() if t["status"] == "misaligned")
    patient = client.get(f"/Patient/{member}").json()
    gender = "other" if patient.get("gender") == "unknown" else "unknown"
    r = client.put(f"/Patient/{member}", json={**patient, "gender": gender})
    assert r.status_code == 200, r.text  # a write that re-evaluates the member: its findings stay the same
    assert client.post("/$evaluate-alignment", timeout=300).status_code == 200
    assert {c: version_of(client, c) for c in COHORT_IDS} == versions


def test_clients_cannot_write_cohort_groups_but_may_create_their_own(client: httpx.Client, loaded) -> None:
    group = read_group(client, "misaligned")
    assert client.put("/Group/misaligned", json=group).status_code == 405
    assert client.delete("/Group/misaligned").status_code == 405
    assert client.put(f"/Group?identifier={COHORT_SYSTEM}|misaligned", json={**group, "name": "x"}).status_code == 405
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Group", "id": "nonclaims-sud", "type": "person", "actual": True},
         "request": {"method": "PUT", "url": "Group/nonclaims-sud"}}]}
    assert client.post("", json=bundle).status_code in (403, 405)
    assert client.patch("/Group/misaligned", json=[]).status_code in (403, 405)
    assert version_of(client, "misaligned") == int(group["meta"]["versionId"])

    mine = {"resourceType": "Group", "type": "person", "actual": True,
            "member": [{"entity": {"reference": f"Patient/{patient_id(group['member'][0])}"}}]}
    r = client.post("/Group", json=mine)
    assert r.status_code == 201, r.text
    assert client.get(f"/Group/{r.json()['id']}").json()["member"] == mine["member"]


def test_search_by_identifier_code_and_member(client: httpx.Client, loaded) -> None:
    truth = loaded
    assert search_ids(client, f"identifier={COHORT_SYSTEM}|candidates-dsnp") == {"candidates-dsnp"}
    assert search_ids(client, f"code={COHORT_CODE_SYSTEM}|nonclaims-sud") == {"nonclaims-sud"}
    member = next(pid for pid, t in truth.items() if t["scenario"] == "harp-candidate-clinical-sud")
    expected = {c for c in COHORT_IDS if RULES[c](truth[member])}
    assert expected >= {"nonclaims-sud", "misaligned", "candidates-ny-harp"}
    assert search_ids(client, f"member=Patient/{member}") & set(COHORT_IDS) == expected
    found = [e["resource"] for e in client.get(f"/Group?member=Patient/{member}").json()["entry"]]
    assert all([t["code"] for t in g["meta"]["tag"]] == ["SUBSETTED"] for g in found if g["id"] in COHORT_IDS)


def _read_with_scope(server: RunningServer, scope: str) -> httpx.Response:
    token = backend_token(server, register_backend(server, scope), scope)
    with server.http(None, bearer(token)) as c:
        return c.get("/Group/candidates-csnp")


def test_reading_needs_group_read_scope(server: RunningServer, loaded) -> None:
    assert _read_with_scope(server, "system/Patient.rs").status_code == 403
    full = _read_with_scope(server, "system/Group.rs")
    assert full.status_code == 200 and full.json()["member"]
    # A token confined by a filter (or to a patient's compartment) gets the header only: the member
    # list names patients beyond what it may see.
    confined = _read_with_scope(server, "system/Group.rs?type=person")
    assert confined.status_code == 200, confined.text
    assert "member" not in confined.json() and confined.json()["quantity"] == full.json()["quantity"]


def test_group_export_covers_the_cohort_members(client: httpx.Client, loaded) -> None:
    group = read_group(client, "candidates-csnp")
    manifest = export(client, "/Group/candidates-csnp/$export", {"_type": "Patient,Group"})
    lines = download(client, manifest)
    assert {orjson.loads(line)["id"] for line in lines["Patient"]} == current_members(group)
    (exported,) = [orjson.loads(line) for line in lines["Group"]]
    assert exported["id"] == "candidates-csnp" and exported["quantity"] == group["quantity"]
