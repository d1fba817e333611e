"""Cohort decisions per roster member: their shape as FHIR and the rules a decision must satisfy.

A decision is `active`, `pending` or `excluded` (SPEC §11), with a coded reason from PlanFit's
`roster-decision-reason` CodeSystem (`profiles/CodeSystem-roster-decision-reason.json`) or from a
customer's own CodeSystem stored on the server (that is how a customer extends the reasons), the reviewer
(a Practitioner), the review date, the owner and clarification deadline of a pending case, and the next
checkpoint. It is carried on `Group.member` as the `roster-decision` extension
(`profiles/StructureDefinition-roster-decision.json`). These rules are PlanFit's pilot controls
(SPEC §11), not an ATR requirement; each refusal is a 422 naming the parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from server.data_files import data_directory
from server.fhir.errors import FhirError

DECISION_EXTENSION = "https://planfit.dev/fhir/StructureDefinition/roster-decision"
REASON_SYSTEM = "https://planfit.dev/fhir/CodeSystem/roster-decision-reason"
DECISIONS = ("active", "pending", "excluded")
_PROFILES = data_directory("profiles")


@dataclass(frozen=True)
class Decision:
    """One member's decision as the $member-decision parameters give it (references as "Type/id")."""

    decision: str
    reason_system: str | None = None
    reason_code: str | None = None
    reviewer: str | None = None
    review_date: str | None = None
    owner: str | None = None
    deadline: str | None = None
    checkpoint: str | None = None

    def columns(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@lru_cache(maxsize=1)
def planfit_reasons() -> dict[str, str]:
    """PlanFit's reason codes → display, from the published CodeSystem."""
    data = json.loads((_PROFILES / "CodeSystem-roster-decision-reason.json").read_text())
    return {c["code"]: c["display"] for c in data["concept"]}


def check_decision(decision: Decision, has_basis: bool) -> None:
    """Refuse (422) a decision the pilot rules do not allow; `has_basis`: the member has an attribution
    basis (an attribution period from $member-add or from the payer file)."""
    if decision.decision not in DECISIONS:
        raise _refused(f"decision must be one of {', '.join(DECISIONS)}", "decision")
    if decision.reviewer is not None and not decision.reviewer.startswith("Practitioner/"):
        raise _refused("The reviewer is a Practitioner", "reviewer")
    if decision.decision == "active" and not has_basis:
        raise _refused("A member becomes active only with an attribution basis (an attribution period from "
                       "the payer file or $member-add)", "decision")
    if decision.decision == "excluded" and decision.reason_code is None:
        raise _refused("An excluded member needs a reason", "reason")
    if decision.decision == "pending" and (decision.owner is None or decision.deadline is None):
        raise _refused("A pending case needs an owner and a clarification deadline", "owner")


def decision_extension(row) -> dict | None:
    """The `roster-decision` extension of one member row, or None when no decision was recorded."""
    if row.decision is None:
        return None
    parts: list[dict] = [{"url": "decision", "valueCode": row.decision}]
    if row.reason_code is not None:
        coding = {"system": row.reason_system, "code": row.reason_code}
        display = planfit_reasons().get(row.reason_code) if row.reason_system == REASON_SYSTEM else None
        parts.append({"url": "reason", "valueCoding": {**coding, "display": display} if display else coding})
    for name, column, kind in _SUB_EXTENSIONS:
        value = getattr(row, column)
        if value is not None:
            parts.append({"url": name, kind: {"reference": value} if kind == "valueReference" else value})
    return {"url": DECISION_EXTENSION, "extension": parts}


# (sub-extension url, row column, value[x]) after decision and reason.
_SUB_EXTENSIONS = (
    ("reviewer", "reviewer", "valueReference"),
    ("reviewDate", "review_date", "valueDate"),
    ("owner", "owner", "valueReference"),
    ("clarificationDeadline", "deadline", "valueDate"),
    ("nextCheckpoint", "checkpoint", "valueDate"),
    ("recordedBy", "decided_by", "valueString"),
)


def _refused(message: str, parameter: str) -> FhirError:
    return FhirError.of(422, "business-rule", message, f"Parameters.parameter[{parameter}]")
