"""What the risk operations share: the feature's state on `app.state.risk`, and the Parameters part builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from server.bulk.members import GroupMembership
from server.fhir.service import FhirService
from server.risk.model import RiskModel
from server.risk.scores import RiskEngine


@dataclass
class Risk:
    """What the routes need, kept on `app.state.risk`."""

    service: FhirService
    engine: RiskEngine
    definitions: list[dict[str, Any]]
    groups: GroupMembership

    @property
    def model(self) -> RiskModel:
        return self.engine.model


def risk_of(request: Request) -> Risk:
    return request.app.state.risk


def param(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}
