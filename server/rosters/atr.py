"""Da Vinci ATR 2.1 vocabulary, and what makes a stored Group an attribution list.

Sources (read 2026-12-03): HL7 Da Vinci Member Attribution List IG STU 2.1
(http://hl7.org/fhir/us/davinci-atr/STU2.1/, source github HL7/davinci-atr `input/resources/atr-group.xml`,
`ext-*.xml`, `operationdefinition-Group-*.xml`), summarised in /work/shared/reference/standards.md §4.
"""

from __future__ import annotations

from server.fhir.errors import FhirError

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
ATR_GROUP_PROFILE = ATR + "atr-group"
LIST_STATUS = ATR + "ext-attributionListStatus"
CHANGE_TYPE = ATR + "ext-changeType"
ATTRIBUTED_PROVIDER = ATR + "ext-attributedProvider"
COVERAGE_REFERENCE = ATR + "ext-coverageReference"
# PlanFit: when the members last changed (profiles/StructureDefinition-roster-members-changed.json).
MEMBERS_CHANGED = "https://planfit.dev/fhir/StructureDefinition/roster-members-changed"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
TIN_SYSTEM = "urn:oid:2.16.840.1.113883.4.4"
ATR_EXPORT_TYPE = "hl7.fhir.us.davinci-atr"
# `_type` of an ATR export SHALL contain these (spec.md, "Bulk Data export").
ATR_REQUIRED_TYPES = ("Group", "Patient", "Coverage")
# ValueSet atr-attribution-list-status: `open` was added in 2.1.
STATUSES = ("draft", "open", "final")


def list_status(group: dict) -> str | None:
    """The Group's attributionListStatus, or None when it is not an attribution list."""
    for ext in group.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == LIST_STATUS:
            return ext.get("valueCode")
    return None


def is_attribution_list(group: dict) -> bool:
    profiles = (group.get("meta") or {}).get("profile") or []
    return list_status(group) is not None or ATR_GROUP_PROFILE in profiles


def with_extension(group: dict, url: str, value: dict) -> dict:
    """The Group with its extension `url` set to `value` (e.g. {"valueCode": …})."""
    others = [e for e in group.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == url)]
    return {**group, "extension": [*others, {"url": url, **value}]}


def with_status(group: dict, status: str) -> dict:
    """The Group with its attributionListStatus set to `status`."""
    return with_extension(group, LIST_STATUS, {"valueCode": status})


def refuse_if_final(status: str | None, group_id: str, what: str) -> None:
    """A `final` list is locked: every change is refused with 409 (SPEC §11)."""
    if status == "final":
        raise FhirError.of(409, "conflict", f"Group/{group_id} is a final (locked) attribution list: {what} is "
                                            "refused; start a new draft list to change the roster")
