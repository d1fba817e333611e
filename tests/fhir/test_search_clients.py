"""The searches real clients send (issue 19 item 5), through fhirpy, a real FHIR client library:
`_sort` on search parameters (several keys, descending, paged), chained parameters and `_has`, with the
caller's scopes applied at every hop, and parameters that cannot be applied reported (or refused under
`Prefer: handling=strict`). httpx is used where fhirpy hides what is asserted (status, outcome entries).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fhirpy import SyncFHIRClient

from tests.support.auth import backend_token, bearer, create, register_backend
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import RunningServer, unique

MRN = "urn:test:mrn"


@dataclass
class Family:
    """Four patients sharing an identifier value; ids in the order of `birth_dates`."""

    tag: str
    patients: list[str]
    conditions: list[str]  # one per patient
    observed: str  # the one patient with an Observation
    practitioner: str  # general practitioner of patients[0]


BIRTH_DATES = ["1970-03-01", "1990-01-01", None, "1980-07-15"]
FAMILIES = ["bravo", "Alpha", "charlie", "Älpha-b"]
GENDERS = ["male", "female", "female", "male"]


@pytest.fixture(scope="module")
def family(server: RunningServer) -> Family:
    tag = unique("sc")
    with server.http(server.auth) as client:
        practitioner = create(client, {"resourceType": "Practitioner", "name": [{"family": f"Gp-{tag}"}]})
        patients = []
        for i, (born, name, gender) in enumerate(zip(BIRTH_DATES, FAMILIES, GENDERS)):
            body = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": tag}],
                    "name": [{"family": f"{name}-{tag}"}], "gender": gender}
            if born:
                body["birthDate"] = born
            if i == 0:
                body["generalPractitioner"] = [{"reference": f"Practitioner/{practitioner}"}]
            patients.append(create(client, body))
        conditions = [create(client, {"resourceType": "Condition", "identifier": [{"system": MRN, "value": tag}],
                                      "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F20.9"}]},
                                      "subject": {"reference": f"Patient/{pid}"}}) for pid in patients]
        create(client, {"resourceType": "Observation", "status": "final",
                        "identifier": [{"system": MRN, "value": tag}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                        "subject": {"reference": f"Patient/{patients[1]}"}})
    return Family(tag, patients, conditions, patients[1], practitioner)


def _fhirpy(server: RunningServer) -> SyncFHIRClient:
    return SyncFHIRClient(server.fhir, authorization=f"Bearer {server.auth.token()}")


def _ids(resources) -> list[str]:
    return [r.id for r in resources]


def test_fhirpy_sort_by_birthdate_descending_and_ascending_across_pages(server, family):
    fhir = _fhirpy(server)
    mine = fhir.resources("Patient").search(identifier=f"{MRN}|{family.tag}")
    p = family.patients
    # Pages of one: the keyset cursor carries the birth date, including past the patient who has none.
    assert _ids(mine.sort("-birthdate").limit(1).fetch_all()) == [p[1], p[3], p[0], p[2]]
    assert _ids(mine.sort("birthdate").limit(1).fetch_all()) == [p[0], p[3], p[1], p[2]]  # no date: last


def test_fhirpy_sort_by_several_keys_string_and_token(server, family):
    fhir = _fhirpy(server)
    mine = fhir.resources("Patient").search(identifier=f"{MRN}|{family.tag}")
    p = family.patients
    assert _ids(mine.sort("gender", "-birthdate").fetch_all()) == [p[1], p[2], p[3], p[0]]
    # Strings sort case- and accent-insensitively (the form the default string search matches).
    # ("Älpha-b-…" < "alpha-…": the normalised forms differ first at "b" < the tag's "s").
    assert _ids(mine.sort("family").limit(3).fetch_all()) == [p[3], p[1], p[0], p[2]]
    assert _ids(mine.sort("-family").fetch_all()) == [p[2], p[0], p[1], p[3]]


def test_fhirpy_chained_search(server, family):
    fhir = _fhirpy(server)
    conditions = fhir.resources("Condition").search(identifier=f"{MRN}|{family.tag}")
    p, c = family.patients, family.conditions
    assert _ids(conditions.search(subject__Patient__name=f"Alpha-{family.tag}").fetch_all()) == [c[1]]
    assert sorted(_ids(conditions.search(subject__Patient__birthdate__lt="1985").fetch_all())) == sorted([c[0], c[3]])
    # Untyped chain, and two links: Condition → Patient → Practitioner.
    assert set(_ids(conditions.search(**{"subject.gender": "female"}).fetch_all())) == {c[1], c[2]}
    two_links = conditions.search(subject__Patient__general_practitioner__Practitioner__name=f"Gp-{family.tag}")
    assert _ids(two_links.fetch_all()) == [c[0]]
    assert p[0] in _ids(fhir.resources("Patient").search(**{"general-practitioner._id": family.practitioner}).fetch_all())


def test_fhirpy_has_search(server, family):
    fhir = _fhirpy(server)
    mine = fhir.resources("Patient").search(identifier=f"{MRN}|{family.tag}")
    assert _ids(mine.has("Observation", "subject", code="http://loinc.org|8867-4").fetch_all()) == [family.observed]
    assert _ids(mine.has("Observation", "subject", code="http://loinc.org|0000-0").fetch_all()) == []
    gp = fhir.resources("Practitioner").has("Patient", "general-practitioner", identifier=f"{MRN}|{family.tag}")
    assert _ids(gp.fetch_all()) == [family.practitioner]
    # Nested: the practitioner of a patient with a Condition of the family (patients[0]), and of a patient
    # with the Observation (patients[1], who has no practitioner).
    practitioners = fhir.resources("Practitioner")
    nested = practitioners.has("Patient", "general-practitioner", "Condition", "subject", identifier=f"{MRN}|{family.tag}")
    assert _ids(nested.fetch_all()) == [family.practitioner]
    none = practitioners.has("Patient", "general-practitioner", "Observation", "subject", identifier=f"{MRN}|{family.tag}")
    assert _ids(none.fetch_all()) == []


def test_scopes_apply_at_every_hop(server, family):
    """A hop into a type the token may not search is refused; a filtered scope confines the hop."""
    key = register_backend(server, "system/Condition.rs system/Patient.rs?gender=female")
    token = backend_token(server, key, "system/Condition.rs system/Patient.rs?gender=female")
    with server.http(None, headers=bearer(token)) as http:
        mine = {"identifier": f"{MRN}|{family.tag}"}
        visible = http.get("/Condition", params={**mine, "subject:Patient.identifier": f"{MRN}|{family.tag}"})
        assert visible.status_code == 200, visible.text
        found = {e["resource"]["id"] for e in visible.json().get("entry", []) if e["search"]["mode"] == "match"}
        assert found == {family.conditions[1], family.conditions[2]}  # the male patients lie beyond the hop
        male = http.get("/Condition", params={**mine, "subject:Patient.name": f"bravo-{family.tag}"})
        assert male.status_code == 200 and not male.json().get("entry")
        has = http.get("/Patient", params={"_has:Observation:subject:code": "8867-4"})
        assert has.status_code == 403  # the token reads no Observation
        chained = http.get("/Patient", params={"general-practitioner:Practitioner.name": "x"})
        assert chained.status_code == 403  # nor Practitioner


@pytest.mark.parametrize("query", [
    {"_sort": "no-such-parameter"},
    {"subject.no-such-parameter": "1"},
    {"_has:Observation:no-such-parameter:code": "1"},
    {"subject:Observation.code": "1"},  # Condition.subject never refers to an Observation
])
def test_parameter_that_cannot_be_applied_is_reported_or_refused(client, family, query):
    params = {"identifier": f"{MRN}|{family.tag}", **query}
    lenient = client.get("/Condition", params=params)
    assert lenient.status_code == 200, lenient.text
    entries = lenient.json()["entry"]
    outcome = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1 and outcome[0]["issue"][0]["code"] == "not-supported"
    assert outcome[0]["issue"][0]["expression"] == [next(iter(query))]
    # The unapplied criterion is reported, the others still apply: the four conditions of the family.
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"} == set(family.conditions)
    strict = client.get("/Condition", params=params, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"


def test_chain_is_refused_where_no_search_runs(client, family):
    """Conditional requests carry no hop check, so a chain there is refused, not run unconfined."""
    body = {"resourceType": "Condition", "subject": {"reference": f"Patient/{family.patients[0]}"}}
    r = client.post("/Condition", json=body, headers={"If-None-Exist": f"subject.name=Alpha-{family.tag}"})
    assert r.status_code == 400
