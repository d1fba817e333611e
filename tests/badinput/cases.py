"""The bad-input corpus: generated cases plus the hand-written files beside this module.

Every case is a request a hostile or broken client might send. The server must answer each with
a 4xx and an OperationOutcome, store nothing, and keep serving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FILES = Path(__file__).parent / "files"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": FHIR_JSON})
    params: tuple[tuple[str, str], ...] = ()


VALID_PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:test:bad", "value": "b-1"}],
    "active": True,
    "name": [{"family": "Corpus", "given": ["Bad"]}],
    "gender": "female",
    "birthDate": "1980-04-02",
    "telecom": [{"system": "phone", "value": "555"}],
}
VALID_CONDITION = {
    "resourceType": "Condition",
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F20.9"}]},
    "subject": {"reference": "Patient/x"},
    "onsetDateTime": "2024-01-01T10:00:00Z",
}


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _post(name: str, rtype: str, value) -> Case:
    return Case(name, "POST", f"/{rtype}", _json(value))


def truncated() -> list[Case]:
    text = _json(VALID_PATIENT)
    cuts = sorted({1, 2, 5, 17, 30, len(text) // 3, len(text) // 2, len(text) - 20, len(text) - 2, len(text) - 1})
    cases = [Case(f"truncated-at-{n}", "POST", "/Patient", text[:n]) for n in cuts]
    cases += [
        Case("empty-body", "POST", "/Patient", b""),
        Case("whitespace-body", "POST", "/Patient", b"   \n"),
        Case("trailing-garbage", "POST", "/Patient", text + b"}"),
        Case("two-documents", "POST", "/Patient", text + text),
        Case("single-quotes", "POST", "/Patient", b"{'resourceType': 'Patient'}"),
        Case("trailing-comma", "POST", "/Patient", b'{"resourceType":"Patient",}'),
        Case("nan-literal", "POST", "/Observation", b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":NaN}}'),
        Case("comment", "POST", "/Patient", b'{"resourceType":"Patient" /* c */}'),
        Case("invalid-utf8", "POST", "/Patient", b'{"resourceType":"Patient","name":[{"family":"\xff\xfe"}]}'),
        Case("overlong-utf8", "POST", "/Patient", b'{"resourceType":"Patient","name":[{"family":"\xc0\xaf"}]}'),
    ]
    return cases


WRONG_TYPES = [
    ("gender", 1),
    ("gender", ["female"]),
    ("active", "true"),
    ("active", 1),
    ("birthDate", 19800402),
    ("birthDate", {"value": "1980"}),
    ("name", "Corpus"),
    ("name", {"family": "Corpus"}),
    ("identifier", {"value": "x"}),
    ("telecom", [{"system": "phone", "value": 555}]),
    ("name", [{"family": ["a", "b"]}]),
    ("name", [{"given": "Bad"}]),
    ("resourceType", 5),
    ("id", 7),
    ("meta", []),
    ("meta", {"lastUpdated": 5}),
    ("extension", {"url": "x", "valueString": "y"}),
    ("extension", [{"url": 1, "valueString": "y"}]),
    ("multipleBirthBoolean", "yes"),
    ("deceasedBoolean", None),
]


def wrong_types() -> list[Case]:
    return [_post(f"wrong-type-{field}-{i}", "Patient", {**VALID_PATIENT, field: value}) for i, (field, value) in enumerate(WRONG_TYPES)]


def structural() -> list[Case]:
    return [
        _post("unknown-element", "Patient", {**VALID_PATIENT, "favouriteColour": "blue"}),
        _post("unknown-nested-element", "Patient", {**VALID_PATIENT, "name": [{"family": "x", "nickname": "y"}]}),
        _post("unknown-resource-type", "Patient", {"resourceType": "Patientx"}),
        _post("no-resource-type", "Patient", {"name": [{"family": "x"}]}),
        _post("array-body", "Patient", [VALID_PATIENT]),
        _post("string-body", "Patient", "Patient"),
        _post("number-body", "Patient", 42),
        _post("null-body", "Patient", None),
        _post("empty-object", "Patient", {}),
        _post("empty-name-object", "Patient", {**VALID_PATIENT, "name": [{}]}),
        _post("empty-array", "Patient", {**VALID_PATIENT, "identifier": []}),
        _post("empty-string", "Patient", {**VALID_PATIENT, "gender": ""}),
        _post("condition-missing-subject", "Condition", {k: v for k, v in VALID_CONDITION.items() if k != "subject"}),
        _post("choice-two-values", "Condition", {**VALID_CONDITION, "onsetString": "last year"}),
        _post("decimal-as-string", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "12"}}),
        _post("wrong-type-for-url", "Patient", VALID_CONDITION),
        _post("contained-invalid", "Patient", {**VALID_PATIENT, "contained": [{"resourceType": "Patient", "gender": "x", "id": "c"}]}),
        _post("contained-no-id", "Patient", {**VALID_PATIENT, "contained": [{"resourceType": "Patient"}]}),
        _post("primitive-extension-empty", "Patient", {**VALID_PATIENT, "_gender": {}}),
        _post("reference-not-string", "Condition", {**VALID_CONDITION, "subject": {"reference": 5}}),
    ]


BAD_DATES = ["2020-02-30", "2020-13-01", "2020-00-10", "20200101", "2020-1-1", "2020-01-01T10:00:00", "2020-01-01T25:00:00Z",
             "2020-01-01T10:61:00Z", "2021-02-29", "tomorrow", "2020-01-01Z", "0000", "2020-01-01T10:00:00+25:00", ""]
BAD_CODES = [
    ("Patient", "gender", "x"),
    ("Patient", "gender", "FEMALE"),
    ("Coverage", "status", "maybe"),
    ("Claim", "status", "zzz"),
    ("Condition", "clinicalStatus", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "sort-of"}]}),
    ("Condition", "verificationStatus", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "perhaps"}]}),
    ("Group", "type", "crowd"),
    ("MeasureReport", "status", "done"),
    ("Encounter", "status", "happening"),
    ("Observation", "status", "guess"),
]
BAD_IDS = ["has space", "a" * 65, "sla/sh", "dollar$", "ünicode", "semi;colon", "..%2F..", "<script>", "under_score", ""]


def invalid_values() -> list[Case]:
    cases = [_post(f"bad-birthdate-{i}", "Patient", {**VALID_PATIENT, "birthDate": d}) for i, d in enumerate(BAD_DATES)]
    cases += [_post(f"bad-onset-{i}", "Condition", {**VALID_CONDITION, "onsetDateTime": d}) for i, d in enumerate(BAD_DATES)]
    minimal = {
        "Patient": VALID_PATIENT,
        "Coverage": {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": "Patient/x"}, "payor": [{"display": "p"}]},
        "Claim": {
            "resourceType": "Claim", "status": "active", "use": "claim", "created": "2025-01-01",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": "Patient/x"}, "provider": {"display": "x"},
            "priority": {"coding": [{"code": "normal"}]}, "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "c"}}],
        },
        "Condition": VALID_CONDITION,
        "Group": {"resourceType": "Group", "type": "person", "actual": True},
        "MeasureReport": {"resourceType": "MeasureReport", "status": "complete", "type": "summary", "measure": "http://x/Measure/m", "period": {"start": "2025-01-01"}},
        "Encounter": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
        "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
    }
    cases += [_post(f"bad-code-{rtype}-{fld}-{i}", rtype, {**minimal[rtype], fld: value}) for i, (rtype, fld, value) in enumerate(BAD_CODES)]
    cases += [_post(f"bad-id-in-body-{i}", "Patient", {**VALID_PATIENT, "id": rid}) for i, rid in enumerate(BAD_IDS) if rid]
    cases += [
        Case(f"bad-id-in-put-{i}", "PUT", f"/Patient/{rid.replace('/', '%2F')}", _json({**VALID_PATIENT, "id": rid}))
        for i, rid in enumerate(BAD_IDS)
        if rid
    ]
    return cases


def nesting() -> list[Case]:
    deep_extension: dict = {"url": "urn:x", "valueString": "leaf"}
    for _ in range(100):
        deep_extension = {"url": "urn:x", "extension": [deep_extension]}
    deep_array: object = "x"
    for _ in range(100):
        deep_array = [deep_array]
    return [
        _post("nested-extensions-100", "Patient", {**VALID_PATIENT, "extension": [deep_extension], "gender": "nope"}),
        _post("nested-arrays-100", "Patient", {**VALID_PATIENT, "name": deep_array}),
        Case("nested-objects-1200", "POST", "/Patient", b'{"resourceType":"Patient","x":' + b'{"a":' * 1200 + b"{}" + b"}" * 1201),
        Case("nested-brackets-5000", "POST", "/Patient", b"[" * 5000 + b"]" * 5000),
    ]


def bundles() -> list[Case]:
    def tx(entries: list, kind: str = "transaction") -> bytes:
        return _json({"resourceType": "Bundle", "type": kind, "entry": entries})

    p = {"resource": VALID_PATIENT, "request": {"method": "POST", "url": "Patient"}}
    return [
        Case("bundle-duplicate-fullurl", "POST", "/", tx([{**p, "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111"}] * 2)),
        Case("bundle-unresolvable-urn", "POST", "/", tx([{"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": {**VALID_CONDITION, "subject": {"reference": "urn:uuid:99999999-9999-4999-8999-999999999999"}}, "request": {"method": "POST", "url": "Condition"}}])),
        Case("bundle-no-request", "POST", "/", tx([{"resource": VALID_PATIENT}])),
        Case("bundle-bad-method", "POST", "/", tx([{**p, "request": {"method": "FETCH", "url": "Patient"}}])),
        Case("bundle-patch", "POST", "/", tx([{**p, "request": {"method": "PATCH", "url": "Patient/1"}}])),
        Case("bundle-entry-not-object", "POST", "/", tx(["entry"])),
        Case("bundle-entries-not-array", "POST", "/", _json({"resourceType": "Bundle", "type": "transaction", "entry": {"x": 1}})),
        Case("bundle-unknown-type-in-url", "POST", "/", tx([{**p, "request": {"method": "POST", "url": "Nonsense"}}])),
        Case("bundle-post-with-id-url", "POST", "/", tx([{**p, "request": {"method": "POST", "url": "Patient/abc"}}])),
        Case("bundle-delete-no-target", "POST", "/", tx([{"request": {"method": "DELETE", "url": "Patient"}}])),
        Case("bundle-invalid-resource", "POST", "/", tx([p, {"resource": {**VALID_PATIENT, "gender": "bogus"}, "request": {"method": "POST", "url": "Patient"}}])),
        Case("bundle-type-collection", "POST", "/", tx([p], "collection")),
        Case("bundle-type-missing", "POST", "/", _json({"resourceType": "Bundle", "entry": [p]})),
        Case("bundle-not-a-bundle", "POST", "/", _json(VALID_PATIENT)),
        Case("bundle-fullurl-not-string", "POST", "/", tx([{**p, "fullUrl": 5}])),
        Case("bundle-conditional-ref-no-match", "POST", "/", tx([{"resource": {**VALID_CONDITION, "subject": {"reference": "Patient?identifier=urn:none|nobody-at-all"}}, "request": {"method": "POST", "url": "Condition"}}])),
        Case("bundle-if-match-on-missing", "POST", "/", tx([p, {"resource": {**VALID_PATIENT, "id": "no-such-thing-zz"}, "request": {"method": "PUT", "url": "Patient/no-such-thing-zz", "ifMatch": 'W/"3"'}}])),
        Case("bundle-bad-ifmatch", "POST", "/", tx([{"resource": {**VALID_PATIENT, "id": "m1"}, "request": {"method": "PUT", "url": "Patient/m1", "ifMatch": "three"}}])),
        Case("bundle-bad-if-none-exist", "POST", "/", tx([{**p, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "birthdate=notadate"}}])),
        Case("bundle-url-traversal", "POST", "/", tx([{**p, "request": {"method": "PUT", "url": "Patient/../../etc/passwd"}}])),
    ]


def content_types() -> list[Case]:
    body = _json(VALID_PATIENT)
    return [
        Case(f"content-type-{i}", "POST", "/Patient", body, {"Content-Type": ct} if ct else {})
        for i, ct in enumerate(["text/plain", "application/xml", "application/fhir+xml", "multipart/form-data", "application/x-www-form-urlencoded", ""])
    ]


INJECTIONS = ["' OR 1=1 --", "'; DROP TABLE resources; --", "\" OR \"\"=\"", "../../../../etc/passwd", "%00", "\\x00", "$(reboot)", "<script>alert(1)</script>"]


def hostile_parameters() -> list[Case]:
    cases = []
    for i, text in enumerate(INJECTIONS):
        cases += [
            Case(f"inject-birthdate-{i}", "GET", "/Patient", params=(("birthdate", text),)),
            Case(f"inject-count-{i}", "GET", "/Patient", params=(("_count", text),)),
            Case(f"inject-page-{i}", "GET", "/Patient", params=(("_page", text),)),
            Case(f"inject-include-{i}", "GET", "/Patient", params=(("_include", text),)),
            Case(f"inject-lastupdated-{i}", "GET", "/Patient", params=(("_lastUpdated", text),)),
            Case(f"inject-since-{i}", "GET", "/_history", params=(("_since", text),)),
            Case(f"inject-unknown-strict-{i}", "GET", "/Patient", headers={"Prefer": "handling=strict"}, params=((text, "1"),)),
            Case(f"inject-type-{i}", "GET", "/" + text.replace("/", "%2F")),
        ]
    cases += [
        Case("count-negative", "GET", "/Patient", params=(("_count", "-5"),)),
        Case("count-float", "GET", "/Patient", params=(("_count", "1.5"),)),
        Case("sort-garbage-strict", "GET", "/Patient", headers={"Prefer": "handling=strict"}, params=(("_sort", "name;drop"),)),
        Case("modifier-unknown", "GET", "/Patient", params=(("gender:above", "female"),)),
        Case("date-modifier", "GET", "/Patient", params=(("birthdate:exact", "1980"),)),
        Case("in-unknown-valueset", "GET", "/Condition", params=(("code:in", "http://x/ValueSet/none"),)),
        Case("empty-value", "GET", "/Patient", params=(("family", ""),)),
        Case("total-garbage", "GET", "/Patient", params=(("_total", "lots"),)),
        Case("history-count-garbage", "GET", "/Patient/_history", params=(("_count", "many"),)),
        Case("vread-bad-version", "GET", "/Patient/zz-none/_history/abc"),
        Case("read-unknown", "GET", "/Patient/definitely-not-here-42"),
        Case("delete-unknown-type", "DELETE", "/Nonsense/1"),
        Case("conditional-put-no-criteria", "PUT", "/Patient", _json(VALID_PATIENT)),
        Case("conditional-delete-no-criteria", "DELETE", "/Patient"),
        Case("if-match-garbage", "PUT", "/Patient/im-1", _json({**VALID_PATIENT, "id": "im-1"}), {"Content-Type": FHIR_JSON, "If-Match": "abc"}),
        Case("post-search-json", "POST", "/Patient/_search", b"{}", {"Content-Type": "application/json"}),
    ]
    return cases


def files() -> list[Case]:
    out = []
    for path in sorted(FILES.glob("*.json")):
        body = path.read_bytes()
        start = body.lstrip(b"\xef\xbb\xbf")
        is_bundle = b'"Bundle"' in body[:200]
        rtype = "" if is_bundle else (json.loads(start).get("resourceType", "Patient") if _parses(start) else "Patient")
        out.append(Case(f"file-{path.stem}", "POST", "/" + (rtype if rtype and rtype[0].isupper() else "Patient") if not is_bundle else "/", body))
    return out


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


def all_cases() -> list[Case]:
    cases = truncated() + wrong_types() + structural() + invalid_values() + nesting() + bundles() + content_types() + hostile_parameters() + files()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
