"""server.fhir.validation: the write-path validator. No database, no server.

Over 450 lines on purpose: the validator's two passes (`validation.py`, `validation_walk.py`) answer as one, so
their cases (50 short tests, accepted and refused resources side by side) stay in one table.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from server.fhir.validation import RESOURCE_TYPES, ValidationIssue, validate_resource
from server.ops.logging import JsonFormatter, TextFormatter

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT.parent / "shared" / "testdata"
needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(), reason="shared/testdata is not present")
DATA_FILE = ROOT / "server" / "fhir" / "data" / "required_bindings.json"

SUBJECT = {"reference": "Patient/p1"}
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def condition(**extra) -> dict:
    return {"resourceType": "Condition", "id": "c1", "subject": SUBJECT, "code": {"text": "x"}, **extra}


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "id": "p1", **extra}


def observation(**extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **extra}


def claim(**extra) -> dict:
    base = {
        "resourceType": "Claim",
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": SUBJECT,
        "created": "2020-01-01",
        "provider": {"reference": "Organization/o1"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/cv1"}}],
    }
    base.update(extra)
    return base


def only(issues: list[ValidationIssue]) -> ValidationIssue:
    assert len(issues) == 1, issues
    return issues[0]


def expressions(issues: list[ValidationIssue]) -> set[str]:
    return {i.expression for i in issues}


# ---- the baseline resources are valid ---------------------------------------------------


@pytest.mark.parametrize("resource", [condition(), patient(), observation(), claim()], ids=lambda r: r["resourceType"])
def test_baselines_are_valid(resource):
    assert validate_resource(resource) == []


# ---- one test per row of shared/reference/validators.md -----------------------------------


def test_required_element_missing_condition_subject():
    r = condition()
    del r["subject"]
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("required", "Condition.subject")


def test_required_element_missing_claim_insurance():
    r = claim()
    del r["insurance"]
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("required", "Claim.insurance")


def test_two_values_for_one_choice_element():
    issue = only(validate_resource(condition(onsetDateTime="2020-01-01", onsetString="last spring")))
    assert (issue.code, issue.expression) == ("structure", "Condition.onset")


def test_array_expected_object_given():
    issue = only(validate_resource(patient(name={"family": "Doe"})))
    assert (issue.code, issue.expression) == ("structure", "Patient.name")


def test_object_expected_array_given():
    issue = only(validate_resource(patient(maritalStatus=[{"text": "x"}])))
    assert (issue.code, issue.expression) == ("structure", "Patient.maritalStatus")


def test_unknown_element():
    issue = only(validate_resource(patient(favouriteColour="blue")))
    assert (issue.code, issue.expression) == ("structure", "Patient.favouriteColour")


def test_unknown_resource_type():
    issue = only(validate_resource({"resourceType": "Foo", "id": "x"}))
    assert (issue.code, issue.expression) == ("invalid", "Resource.resourceType")


def test_missing_resource_type():
    issue = only(validate_resource({"id": "x"}))
    assert (issue.code, issue.expression) == ("required", "Resource.resourceType")


@pytest.mark.parametrize("bad_id", ["has space", "a" * 65, "under_score", "é"])
def test_invalid_id(bad_id):
    issue = only(validate_resource(patient(id=bad_id)))
    assert (issue.code, issue.expression) == ("value", "Patient.id")
    assert bad_id not in issue.diagnostics


def test_id_of_64_characters_is_valid():
    assert validate_resource(patient(id="A-z.9" + "a" * 59)) == []


def test_impossible_date():
    issue = only(validate_resource(patient(birthDate="2020-02-30")))
    assert (issue.code, issue.expression) == ("value", "Patient.birthDate")
    assert "2020-02-30" not in issue.diagnostics


def test_impossible_date_in_datetime_period_and_instant():
    r = observation(effectivePeriod={"start": "2021-02-29T10:00:00Z"}, issued="2021-04-31T10:00:00Z")
    assert expressions(validate_resource(r)) == {"Observation.effectivePeriod.start", "Observation.issued"}


def test_leap_day_is_valid():
    assert validate_resource(patient(birthDate="2020-02-29")) == []


def test_datetime_with_time_but_no_zone():
    issue = only(validate_resource(condition(onsetDateTime="2020-01-01T10:00:00")))
    assert (issue.code, issue.expression) == ("value", "Condition.onsetDateTime")
    assert "timezone" in issue.diagnostics


def test_decimal_given_as_json_string():
    issue = only(validate_resource(observation(valueQuantity={"value": "12", "unit": "mg"})))
    assert (issue.code, issue.expression) == ("value", "Observation.valueQuantity.value")


def test_empty_object():
    issue = only(validate_resource(patient(name=[{}])))
    assert (issue.code, issue.expression) == ("structure", "Patient.name[0]")


def test_empty_array():
    issue = only(validate_resource(patient(name=[{"family": "Doe", "given": []}])))
    assert (issue.code, issue.expression) == ("structure", "Patient.name[0].given")


def test_empty_string():
    issue = only(validate_resource(patient(name=[{"family": ""}])))
    assert (issue.code, issue.expression) == ("value", "Patient.name[0].family")


@pytest.mark.parametrize(
    "resource, expression",
    [
        (patient(meta={}), "Patient.meta"),
        (patient(birthDate="2000", _birthDate={}), "Patient._birthDate"),
        (patient(name=[{"given": ["a"], "_given": [{}]}]), "Patient.name[0]._given[0]"),
        (patient(extension=[{"url": "http://x", "valueCodeableConcept": {}}]),
         "Patient.extension[0].valueCodeableConcept"),
        (patient(maritalStatus={"coding": [{}]}), "Patient.maritalStatus.coding[0]"),
        (patient(contained=[{"resourceType": "Organization", "id": "o", "name": ""}]), "Patient.contained[0].name"),
        (condition(subject={}), "Condition.subject"),
    ],
    ids=["meta", "primitive-ext", "_given", "ext-value", "coding", "contained", "reference"],
)
def test_empty_values_anywhere(resource, expression):
    assert expression in expressions(validate_resource(resource))


# ---- codes outside a required binding: 12 resource types -----------------------------------


def test_binding_patient_gender():
    issue = only(validate_resource(patient(gender="x")))
    assert (issue.code, issue.expression) == ("code-invalid", "Patient.gender")
    assert "administrative-gender" in issue.diagnostics


def test_binding_claim_status():
    issue = only(validate_resource(claim(status="zzz")))
    assert (issue.code, issue.expression) == ("code-invalid", "Claim.status")


def test_binding_condition_clinical_status_coding():
    r = condition(clinicalStatus={"coding": [{"system": COND_CLINICAL, "code": "zzz"}]})
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("code-invalid", "Condition.clinicalStatus.coding[0].code")


def test_binding_condition_clinical_status_second_coding():
    r = condition(clinicalStatus={"coding": [{"system": "http://example.org/local", "code": "A"},
                                             {"system": COND_CLINICAL, "code": "gone"}]})
    issue = only(validate_resource(r))
    assert issue.expression == "Condition.clinicalStatus.coding[1].code"


def test_binding_condition_clinical_status_no_coding_from_value_set():
    r = condition(clinicalStatus={"coding": [{"system": "http://example.org/local", "code": "A"}]})
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("code-invalid", "Condition.clinicalStatus")


def test_binding_condition_clinical_status_valid_and_text_only():
    assert validate_resource(condition(clinicalStatus={"coding": [{"system": COND_CLINICAL, "code": "active"}]})) == []
    assert validate_resource(condition(clinicalStatus={"text": "active"})) == []


def test_binding_coverage_status():
    r = {
        "resourceType": "Coverage",
        "status": "current",
        "beneficiary": SUBJECT,
        "payor": [{"reference": "Organization/o1"}],
    }
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("code-invalid", "Coverage.status")
    r["status"] = "active"
    assert validate_resource(r) == []


def test_binding_bundle_type():
    issue = only(validate_resource({"resourceType": "Bundle", "type": "pile"}))
    assert (issue.code, issue.expression) == ("code-invalid", "Bundle.type")


def test_binding_bundle_http_verb():
    r = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:2", "resource": patient(), "request": {"method": "FETCH", "url": "Patient"}},
        ],
    }
    issue = only(validate_resource(r))
    assert (issue.code, issue.expression) == ("code-invalid", "Bundle.entry[1].request.method")


def test_binding_inside_bundle_entry_resource():
    r = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient(gender="M")}]}
    assert only(validate_resource(r)).expression == "Bundle.entry[0].resource.gender"


def test_binding_encounter_status():
    r = {"resourceType": "Encounter", "status": "done",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    assert only(validate_resource(r)).expression == "Encounter.status"


def test_binding_observation_status():
    r = observation(status="complete")
    assert only(validate_resource(r)).expression == "Observation.status"


@needs_testdata
def test_binding_explanation_of_benefit_outcome():
    eob = json.loads(sorted((TESTDATA / "synthea-r4").glob("*.json"))[0].read_text())
    r = next(e["resource"] for e in eob["entry"] if e["resource"]["resourceType"] == "ExplanationOfBenefit")
    assert validate_resource(r) == []
    r = copy.deepcopy(r)
    r["outcome"] = "done"
    assert only(validate_resource(r)).expression == "ExplanationOfBenefit.outcome"


def test_binding_group_type():
    r = {"resourceType": "Group", "type": "people", "actual": True}
    assert only(validate_resource(r)).expression == "Group.type"


def test_binding_measure_report_type_and_status():
    r = {"resourceType": "MeasureReport", "status": "complete", "type": "individually",
         "measure": "http://example.org/Measure/m", "period": {"start": "2020-01-01", "end": "2020-12-31"}}
    assert only(validate_resource(r)).expression == "MeasureReport.type"


def test_binding_measure_status():
    r = {"resourceType": "Measure", "status": "published"}
    assert only(validate_resource(r)).expression == "Measure.status"


def test_binding_provenance_entity_role():
    r = {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/p1"}],
        "recorded": "2020-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Organization/o1"}}],
        "entity": [{"role": "source", "what": {"reference": "DocumentReference/d1"}}],
    }
    assert validate_resource(r) == []
    r["entity"][0]["role"] = "origin"
    assert only(validate_resource(r)).expression == "Provenance.entity[0].role"


def test_binding_on_datatype_element():
    issue = only(validate_resource(patient(name=[{"use": "formal", "family": "Doe"}])))
    assert (issue.code, issue.expression) == ("code-invalid", "Patient.name[0].use")


def test_binding_in_contained_resource():
    r = patient(contained=[{"resourceType": "Patient", "id": "c", "gender": "boy"}], link=[{"other": {"reference": "#c"}, "type": "seealso"}])
    assert only(validate_resource(r)).expression == "Patient.contained[0].gender"


def test_contained_invariants():
    ref = {"link": [{"other": {"reference": "#c"}, "type": "seealso"}]}
    assert validate_resource(patient(contained=[{"resourceType": "Patient", "id": "c"}], **ref)) == []
    unreferenced = only(validate_resource(patient(contained=[{"resourceType": "Patient", "id": "c"}])))
    assert unreferenced.expression == "Patient.contained[0]" and "dom-3" in unreferenced.diagnostics
    assert only(validate_resource(patient(contained=[{"resourceType": "Patient"}]))).expression == "Patient.contained[0].id"
    nested = {"resourceType": "Patient", "id": "c", "contained": [{"resourceType": "Patient", "id": "d"}]}
    assert "Patient.contained[0]" in expressions(validate_resource(patient(contained=[nested], **ref)))
    versioned = {"resourceType": "Patient", "id": "c", "meta": {"versionId": "1"}}
    assert only(validate_resource(patient(contained=[versioned], **ref))).expression == "Patient.contained[0].meta"


def test_codes_are_case_sensitive():
    assert only(validate_resource(patient(gender="Male"))).expression == "Patient.gender"


# ---- diagnostics never repeat the offending value ----------------------------------------


@pytest.mark.parametrize(
    "resource, secret",
    [
        (patient(birthDate="1961-13-01"), "1961-13-01"),
        (patient(birthDate="1961-02-30"), "1961-02-30"),
        (condition(onsetDateTime="1961-02-03T10:00:00"), "1961-02-03T10:00:00"),
        (patient(id="john smith"), "john smith"),
        (patient(gender="john smith"), "john smith"),
        (patient(multipleBirthInteger=4294967296), "4294967296"),
        (patient(multipleBirthInteger=2.5), "2.5"),
        (patient(photo=[{"size": -123456}]), "123456"),
        ({"resourceType": "JohnSmith"}, "JohnSmith"),
        (patient(contained=[{"resourceType": "JohnSmith"}]), "JohnSmith"),
        (observation(valueTime="25:61:00"), "25:61"),
    ],
)
def test_diagnostics_do_not_contain_the_value(resource, secret):
    issues = validate_resource(resource)
    assert issues
    for issue in issues:
        assert secret not in issue.diagnostics


# ---- R4 (4.0.1), not R4B --------------------------------------------------------------------


def test_r4_only_resource_types_are_accepted():
    assert validate_resource({"resourceType": "MedicinalProduct", "name": [{"productName": "x"}]}) == []
    assert "EffectEvidenceSynthesis" in RESOURCE_TYPES
    assert len(RESOURCE_TYPES) == 146


def test_r4b_only_resource_type_is_refused():
    issue = only(validate_resource({"resourceType": "AdministrableProductDefinition", "status": "active"}))
    assert issue.expression == "Resource.resourceType"


# ---- real data ------------------------------------------------------------------------------

# DEQM examples written against an earlier MeasureReport: measureScore as a bare number,
# stratifier.code as one object and stratum.value as a string. R4 has Quantity, a list of
# CodeableConcept and CodeableConcept.
KNOWN_INVALID = {
    "hl7-examples/davinci-deqm/MeasureReport-indv-measurereport01.json": {
        "MeasureReport.group[0].measureScore",
    },
    "hl7-examples/davinci-deqm/MeasureReport-summ-measurereport01.json": {
        "MeasureReport.group[0].stratifier[0].code",
        "MeasureReport.group[0].stratifier[0].stratum[0].value",
    },
}


def _testdata_files() -> list[Path]:
    return sorted(TESTDATA.rglob("*.json"))


@needs_testdata
def test_all_testdata_validates():
    files = _testdata_files()
    assert len(files) >= 180
    seen_types: set[str] = set()
    count = 0
    problems: dict[str, set[str]] = {}
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rel = path.relative_to(TESTDATA).as_posix()
        resources = [doc]
        if doc.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in doc.get("entry", []) if "resource" in e]
        for resource in resources:
            count += 1
            seen_types.add(resource["resourceType"])
            for issue in validate_resource(resource):
                problems.setdefault(rel, set()).add(issue.expression)
    assert problems == KNOWN_INVALID
    assert count > 14_000
    assert {"Patient", "Coverage", "Condition", "Claim", "ExplanationOfBenefit", "Encounter", "Observation",
            "Group", "MeasureReport", "Measure", "Bundle"} <= seen_types


# ---- never raises ---------------------------------------------------------------------------


def _nested_dict(depth: int, leaf) -> dict:
    x = leaf
    for _ in range(depth):
        x = {"a": x}
    return x


def _nested_list(depth: int) -> list:
    x: list = []
    for _ in range(depth):
        x = [x]
    return x


def _nested_extension(depth: int) -> dict:
    x = {"url": "http://x", "valueString": "y"}
    for _ in range(depth):
        x = {"url": "http://x", "extension": [x]}
    return patient(extension=[x])


ODD_INPUTS = [
    None, [], [patient()], 0, -1, 1.5, True, "", "Patient", "\x00", b"{}", 10**400, float("nan"), float("inf"),
    {}, {"resourceType": None}, {"resourceType": ""}, {"resourceType": ["Patient"]}, {"resourceType": {"a": 1}},
    {"resourceType": "Patient\x00"}, {"resourceType": "Resource"}, {"resourceType": "DomainResource"},
    _nested_dict(200, {}), patient(foo=_nested_dict(200, {})), patient(foo=_nested_dict(5000, 1)),
    patient(extension=_nested_list(200)), patient(extension=_nested_list(5000)),
    _nested_extension(200), _nested_extension(5000), patient(contained=[_nested_dict(200, patient())]),
    patient(name=[{"family": "a\x00b"}]), patient(id="\x00"), patient(gender="\x00"),
    patient(name=[{"family": "\ud800"}]),
    patient(**{"\x00": "x"}), patient(**{"\ud800": ""}),
    patient(multipleBirthInteger=10**400), patient(multipleBirthInteger=-(10**400)),
    observation(valueQuantity={"value": 10**400}), observation(valueQuantity={"value": float("inf")}),
    observation(valueQuantity={"value": float("nan")}), observation(valueInteger=2**63),
    {"resourceType": "Patient", 1: "x"}, {"resourceType": "Patient", None: "x"}, {("a",): 1},
    patient(contained=[None, 1, "x", [], {}, {"resourceType": 5}]),
    patient(_birthDate=[None]), patient(_birthDate="x"), patient(birthDate=12), patient(birthDate=["2020"]),
    condition(clinicalStatus={"coding": [None, 1, [], {"system": [], "code": {}},
                                         {"system": COND_CLINICAL, "code": 5}]}),
    condition(clinicalStatus={"coding": {"system": COND_CLINICAL}}), condition(clinicalStatus="active"),
    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": "x"}, {"resource": []}, None]},
    {"resourceType": "Bundle", "type": ["collection"], "entry": {"request": {"method": ["GET"]}}},
    patient(meta={"lastUpdated": {"a": 1}, "versionId": []}),
]


@pytest.mark.parametrize("value", ODD_INPUTS, ids=lambda v: type(v).__name__)
def test_never_raises(value):
    issues = validate_resource(value)
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, ValidationIssue)
        assert issue.code in {"structure", "required", "value", "code-invalid", "invalid"}
        issue.expression.encode("utf-8")
        issue.diagnostics.encode("utf-8")
    if not isinstance(value, dict) or value.get("resourceType") != "Patient" or value == patient():
        return
    assert issues, "every odd Patient above is invalid"


def test_odd_inputs_are_refused():
    valid = [v for v in ODD_INPUTS if validate_resource(v) == []]
    # FHIR decimals have no range limit: 1e400 written out in digits is a valid decimal
    assert valid == [observation(valueQuantity={"value": 10**400})]


# ---- the data file and its generator -----------------------------------------------------------


def test_bindings_file_is_consistent():
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert data["fhirVersion"] == "4.0.1"
    assert len(data["resources"]) == 146
    assert data["bindings"]["Patient.gender"] == "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert data["bindings"]["DetectedIssue.status"] == "http://hl7.org/fhir/ValueSet/observation-status"
    for url in data["bindings"].values():
        assert data["valueSets"][url]
    # not enumerable here: mime types, currencies, UCUM, a LOINC answer list
    assert "Attachment.contentType" in data["skipped"]
    assert "Money.currency" in data["skipped"]
    assert not set(data["skipped"]) & set(data["bindings"])
    assert "definitionByCombination" not in json.dumps(data["elements"])


def _load_generator():
    spec = importlib.util.spec_from_file_location("build_bindings", ROOT / "tools" / "build_bindings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_on_minimal_definitions(tmp_path):
    def bundle(*resources):
        return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}

    def sd(name, kind, elements):
        return {"resourceType": "StructureDefinition", "id": name, "fhirVersion": "4.0.1", "kind": kind,
                "derivation": "specialization", "snapshot": {"element": [{"path": name}, *elements]}}

    types = bundle(sd("Element", "complex-type", [{"path": "Element.extension", "type": [{"code": "Extension"}]}]),
                   sd("Extension", "complex-type", [{"path": "Extension.valueDate", "type": [{"code": "date"}]}]))
    resources = bundle(sd("Thing", "resource", [
        {"path": "Thing.id", "type": [{"code": "http://hl7.org/fhirpath/System.String"}]},
        {"path": "Thing.status", "type": [{"code": "code"}],
         "binding": {"strength": "required", "valueSet": "http://x/ValueSet/s|4.0.1"}},
        {"path": "Thing.kind", "type": [{"code": "code"}],
         "binding": {"strength": "required", "valueSet": "http://x/ValueSet/mime|4.0.1"}},
        {"path": "Thing.when[x]", "type": [{"code": "date"}, {"code": "string"}]},
        {"path": "Thing.part", "max": "*", "type": [{"code": "BackboneElement"}]},
        {"path": "Thing.part.state", "type": [{"code": "code"}],
         "binding": {"strength": "required", "valueSet": "http://x/ValueSet/sub"}},
    ]))
    valuesets = bundle(
        {"resourceType": "CodeSystem", "url": "http://x/cs", "content": "complete",
         "concept": [{"code": "a", "concept": [{"code": "a1"}]}, {"code": "b"}]},
        {"resourceType": "ValueSet", "url": "http://x/ValueSet/s", "compose": {"include": [{"system": "http://x/cs"}]}},
        {"resourceType": "ValueSet", "url": "http://x/ValueSet/sub",
         "compose": {"include": [{"system": "http://x/cs",
                                  "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}]}},
        {"resourceType": "ValueSet", "url": "http://x/ValueSet/mime",
         "compose": {"include": [{"system": "urn:ietf:bcp:13"}]}},
    )
    for name, content in [("profiles-types.json", types), ("profiles-resources.json", resources),
                          ("valuesets.json", valuesets)]:
        (tmp_path / name).write_text(json.dumps(content))
    out = _load_generator().build(str(tmp_path))
    assert out["resources"] == ["Thing"]
    assert out["bindings"] == {"Thing.status": "http://x/ValueSet/s", "Thing.part.state": "http://x/ValueSet/sub"}
    assert out["valueSets"]["http://x/ValueSet/s"] == {"http://x/cs": ["a", "a1", "b"]}
    assert out["valueSets"]["http://x/ValueSet/sub"] == {"http://x/cs": ["a", "a1"]}
    assert "urn:ietf:bcp:13" in out["skipped"]["Thing.kind"]
    assert out["elements"]["Thing"] == {"id": "id", "status": "code", "whenDate": "date", "part": "Thing.part"}
    assert out["elements"]["Extension"] == {"valueDate": "date"}


_QUOTED_DATA = "Zebedee Quartermaine 1961-07-14"


class _Faulty(dict):
    """A mapping whose reads fail inside the validator, as a bug of ours would; its message quotes data."""

    def get(self, key, default=None):
        if key == "contained":
            raise RuntimeError(_QUOTED_DATA)
        return super().get(key, default)


def test_an_internal_validator_error_is_logged_as_ours_and_refuses_the_resource(caplog):
    with caplog.at_level("ERROR", logger="planfit.validation"):
        issues = validate_resource(_Faulty(resourceType="Patient", id="p1"))
    assert [(i.code, i.expression) for i in issues] == [("invalid", "Resource")]
    (record,) = caplog.records
    assert record.exc_info and record.exc_info[0] is RuntimeError
    for formatter in (JsonFormatter(), TextFormatter()):
        text = formatter.format(record)
        assert "RuntimeError" in text and "validation.py" in text and _QUOTED_DATA not in text
