"""Search semantics over real HTTP: token, string, date, reference, _include, paging, sorting."""

from __future__ import annotations

import pytest

from tests.support.servers import unique
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"


@pytest.fixture
def member(client):
    """A patient with two conditions and one coverage, all tagged with a unique identifier."""
    tag = unique("m")
    pid = client.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test:mrn", "value": tag}],
            "name": [{"family": f"Müller-{tag}", "given": ["Zoë", "Ann"]}],
            "gender": "female",
            "birthDate": "1990-06-15",
        },
    ).json()["id"]

    def condition(code: str, system: str, onset: str, status: str, category: str) -> str:
        body = {
            "resourceType": "Condition",
            "identifier": [{"system": "urn:test:cond", "value": tag}],
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
            },
            "category": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": category}]}
            ],
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset,
            "recordedDate": onset[:10],
        }
        r = client.post("/Condition", json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    c1 = condition("F20.9", ICD, "2024-03-10T10:00:00Z", "active", "problem-list-item")
    c2 = condition("7200002", SCT, "2019-01-01", "resolved", "encounter-diagnosis")
    cov = client.post(
        "/Coverage",
        json={
            "resourceType": "Coverage",
            "identifier": [{"system": "urn:test:cov", "value": tag}],
            "status": "active",
            "type": {"coding": [{"system": "https://nahdo.org/sopt", "code": "2"}]},
            "beneficiary": {"reference": f"Patient/{pid}"},
            "payor": [{"reference": "Organization/plan-1"}],
        },
    ).json()["id"]
    return {"tag": tag, "pid": pid, "c1": c1, "c2": c2, "cov": cov}


def ids(bundle: dict, mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode}


def search(client, rtype: str, **params) -> dict:
    r = client.get(f"/{rtype}", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "searchset"
    return r.json()


def test_patient_params(client, member):
    tag, pid = member["tag"], member["pid"]
    assert ids(search(client, "Patient", identifier=f"urn:test:mrn|{tag}")) == {pid}
    assert ids(search(client, "Patient", identifier=tag)) == {pid}
    assert ids(search(client, "Patient", identifier="urn:test:other|" + tag)) == set()
    assert ids(search(client, "Patient", family=f"muller-{tag}")) == {pid}  # accent- and case-insensitive
    assert ids(search(client, "Patient", family=f"MÜLLER-{tag[:4]}", identifier=tag)) == {pid}  # prefix
    assert ids(search(client, "Patient", **{"family:exact": f"Müller-{tag}"})) == {pid}
    assert ids(search(client, "Patient", **{"family:exact": f"müller-{tag}"})) == set()
    assert ids(search(client, "Patient", **{"name:contains": tag[2:8]})) == {pid}
    assert ids(search(client, "Patient", given="zoe", identifier=tag)) == {pid}
    assert ids(search(client, "Patient", gender="female", identifier=tag)) == {pid}
    assert ids(search(client, "Patient", gender="male", identifier=tag)) == set()


@pytest.mark.parametrize(
    "value,hit",
    [
        ("1990-06-15", True),
        ("1990-06", True),
        ("1990", True),
        ("eq1990-06-16", False),
        ("ne1990-06-15", False),
        ("gt1990-06-14", True),
        ("gt1990-06-15", False),
        ("ge1990-06-15", True),
        ("lt1990-06-16", True),
        ("lt1990-06-15", False),
        ("le1990-06-15", True),
        ("sa1990-06-14", True),
        ("sa1990-06-15", False),
        ("eb1990-06-16", True),
        ("eb1990-06-15", False),
        ("ap1990-06-15", True),
    ],
)
def test_date_prefixes(client, member, value, hit):
    found = ids(search(client, "Patient", birthdate=value, identifier=member["tag"]))
    assert (member["pid"] in found) is hit


def test_condition_params(client, member):
    tag, pid, c1, c2 = member["tag"], member["pid"], member["c1"], member["c2"]
    base = {"identifier": f"urn:test:cond|{tag}"}
    assert ids(search(client, "Condition", patient=pid, **base)) == {c1, c2}
    assert ids(search(client, "Condition", subject=f"Patient/{pid}", **base)) == {c1, c2}
    assert ids(search(client, "Condition", code=f"{ICD}|F20.9", **base)) == {c1}
    assert ids(search(client, "Condition", code="7200002", **base)) == {c2}
    assert ids(search(client, "Condition", code=f"{SCT}|", **base)) == {c2}
    assert ids(search(client, "Condition", code=f"{SCT}|,{ICD}|F20.9", **base)) == {c1, c2}
    assert ids(search(client, "Condition", code=f"urn:test:nowhere|,{ICD}|", **base)) == {c1}
    assert ids(search(client, "Condition", **{"code:not": f"{SCT}|"}, **base)) == {c1}
    assert ids(search(client, "Condition", code=f"{ICD}|F20.9,{SCT}|7200002", **base)) == {c1, c2}
    assert ids(search(client, "Condition", **{"code:not": f"{ICD}|F20.9"}, **base)) == {c2}
    assert ids(search(client, "Condition", **{"clinical-status": "active"}, **base)) == {c1}
    assert ids(search(client, "Condition", category="encounter-diagnosis", **base)) == {c2}
    assert ids(search(client, "Condition", **{"onset-date": "ge2024-01-01"}, **base)) == {c1}
    assert ids(search(client, "Condition", **{"onset-date": "lt2020"}, **base)) == {c2}
    assert ids(search(client, "Condition", **{"recorded-date": "2024-03-10"}, **base)) == {c1}


def test_repeated_params_are_and(client, member):
    base = {"identifier": f"urn:test:cond|{member['tag']}"}
    r = client.get("/Condition", params=[("onset-date", "ge2018"), ("onset-date", "lt2020"), *base.items()])
    assert ids(r.json()) == {member["c2"]}


def test_coverage_params(client, member):
    tag, pid, cov = member["tag"], member["pid"], member["cov"]
    assert ids(search(client, "Coverage", beneficiary=f"Patient/{pid}")) == {cov}
    assert ids(search(client, "Coverage", patient=pid)) == {cov}
    assert ids(search(client, "Coverage", payor="Organization/plan-1", identifier=tag)) == {cov}
    assert ids(search(client, "Coverage", type="https://nahdo.org/sopt|2", identifier=tag)) == {cov}
    assert ids(search(client, "Coverage", status="active", identifier=tag)) == {cov}


def test_include_and_revinclude(client, member):
    pid, c1, c2 = member["pid"], member["c1"], member["c2"]
    bundle = search(client, "Condition", patient=pid, _include="Condition:patient")
    assert ids(bundle) == {c1, c2}
    assert ids(bundle, "include") == {pid}
    bundle = search(client, "Patient", _id=pid, _revinclude="Condition:subject")
    assert ids(bundle) == {pid} and ids(bundle, "include") == {c1, c2}
    bundle = search(client, "Patient", _id=pid, _revinclude="Coverage:beneficiary")
    assert ids(bundle, "include") == {member["cov"]}


def test_summary_count_and_total(client, member):
    bundle = search(client, "Condition", patient=member["pid"], _summary="count")
    assert bundle["total"] == 2 and "entry" not in bundle or bundle["entry"] == []


def test_paging_is_stable_and_complete(client):
    tag = unique("page")
    created = []
    for n in range(7):
        r = client.post(
            "/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:test:page", "value": tag}], "name": [{"family": f"P{n}"}]}
        )
        created.append(r.json()["id"])
    seen: list[str] = []
    bundle = search(client, "Patient", identifier=f"urn:test:page|{tag}", _count=3)
    assert bundle["total"] == 7
    # A resource created after the first page must not shift the pages.
    client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:test:page", "value": tag}]})
    while True:
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        bundle = client.get(nxt[0]).json()
    assert sorted(seen) == sorted(created) and len(seen) == 7


def test_sort(client):
    tag = unique("sort")
    made = [
        client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:test:sort", "value": tag}]}).json()["id"]
        for _ in range(4)
    ]
    asc = [e["resource"]["id"] for e in search(client, "Patient", identifier=tag, _sort="_lastUpdated")["entry"]]
    desc = [e["resource"]["id"] for e in search(client, "Patient", identifier=tag, _sort="-_lastUpdated")["entry"]]
    assert asc == made and desc == made[::-1]
    by_id = [e["resource"]["id"] for e in search(client, "Patient", identifier=tag, _sort="_id")["entry"]]
    assert by_id == sorted(made)
    paged = search(client, "Patient", identifier=tag, _sort="-_lastUpdated", _count=3)
    nxt = [link["url"] for link in paged["link"] if link["relation"] == "next"][0]
    rest = [e["resource"]["id"] for e in client.get(nxt).json()["entry"]]
    assert [e["resource"]["id"] for e in paged["entry"]] + rest == made[::-1]


def test_last_updated(client, member):
    stamp = client.get(f"/Patient/{member['pid']}").json()["meta"]["lastUpdated"]
    assert member["pid"] in ids(search(client, "Patient", _lastUpdated=f"ge{stamp}", identifier=member["tag"]))
    assert ids(search(client, "Patient", _lastUpdated="lt2000-01-01", identifier=member["tag"])) == set()


def test_post_search(client, member):
    r = client.post(
        "/Condition/_search",
        content=f"patient={member['pid']}&code=F20.9".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and ids(r.json()) == {member["c1"]}


def test_unknown_param_warns_or_fails_strict(client):
    r = client.get("/Patient", params={"nonsense": "1", "_count": 1})
    assert r.status_code == 200
    outcomes = [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and outcomes[0]["resource"]["issue"][0]["severity"] == "warning"
    r = client.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_bad_search_values_are_400(client):
    assert client.get("/Patient", params={"birthdate": "notadate"}).status_code == 400
    assert client.get("/Patient", params={"_count": "-1"}).status_code == 400
    assert client.get("/Patient", params={"_page": "garbage"}).status_code == 400
    assert client.get("/Patient", params={"_include": "Observation:subject"}).status_code == 400
    big = client.get("/Patient", params={"_count": "100000"})
    assert big.status_code == 200
