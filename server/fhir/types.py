"""The values the FHIR layer hands to the features: what a write was (`Written`), who wrote it
(`WriteContext`), what an interaction answers (`Reply`), and the after-commit listener's signature.
Kept apart from the service so a feature that only listens to writes depends on these, not on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Reply:
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    rtype: str
    rid: str
    version: int
    deleted: bool
    txid: int  # the write transaction's number (`begin_versions`)


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: decides meta.source and the evidence kind of what is written."""

    source: str
    source_kind: str = "clinical"
    client_id: str | None = None


AfterCommit = Callable[[list[Written], WriteContext], None]
