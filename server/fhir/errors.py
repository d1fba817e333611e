"""FHIR errors as exceptions that carry their OperationOutcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue-type code
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """An interaction failed; `status` is the HTTP status, `issues` explain why."""

    def __init__(self, status: int, issues: list[Issue] | Issue, headers: dict[str, str] | None = None):
        self.status = status
        self.issues = issues if isinstance(issues, list) else [issues]
        self.headers = headers or {}
        super().__init__(self.issues[0].diagnostics if self.issues else str(status))

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> "FhirError":
        return cls(status, Issue("error", code, diagnostics, (expression,) if expression else ()))

    def outcome(self) -> dict:
        return operation_outcome(self.issues)
