"""What a feature adds to the server, declared as data: its routes, its CapabilityStatement
operations, its start-up and shutdown tasks, its middleware and the hooks it implements.

`server/app.py` lists the features and assembles them once (`assemble`), like Blaze's capability list
built from the same table as its routes: nothing patches the app after the fact, and no feature needs
to be installed before another for its routes to win (operation paths never match the generic
`/{type}/{id}` routes; see `server/fhir/routes.py`).

Hooks follow HAPI's pointcuts: a `HookPoint` is named and typed by the signature of its callables. A
layer that calls out defines its points (this module: the FHIR layer's; `server.alignment.hooks`:
the evaluation's), and a feature implements them by listing (point, callable) pairs. Callables of a
point run in the order app.py lists the features.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp

from server.fhir.types import AfterCommit, Reply
from server.store.resources import Derivation

T = TypeVar("T")


@dataclass(frozen=True)
class HookPoint(Generic[T]):
    """A named place where the server calls the features that implement it."""

    name: str


class Hooks:
    """The callables each hook point has, gathered from the features at assembly."""

    def __init__(self) -> None:
        self._by_point: dict[HookPoint, list[Callable]] = defaultdict(list)

    def add(self, point: HookPoint[T], implementation: T) -> None:
        self._by_point[point].append(implementation)  # type: ignore[arg-type]

    def of(self, point: HookPoint[T]) -> list[T]:
        return list(self._by_point.get(point, ()))  # type: ignore[return-value]


# (resource type, id, method, the resource or None for a delete): raise FhirError to refuse the write.
WriteGuard = Callable[[str, str, str, "dict | None"], None]
# (request, resource type, id, version asked or None, the stored version's reply): a Response to serve
# instead of the stored resource (a Group streamed with its members), or None to serve it as stored.
ReadRenderer = Callable[[Request, str, str, "str | None", Reply], Awaitable["Response | None"]]

PRE_WRITE: HookPoint[WriteGuard] = HookPoint("pre_write")
# Inside every write transaction, after the index rows (and by the reindexing): the tables a feature
# derives from index rows, kept exact by committing or rolling back with them.
IN_TRANSACTION: HookPoint[Derivation] = HookPoint("in_transaction")
POST_COMMIT: HookPoint[AfterCommit] = HookPoint("post_commit")
READ_RENDER: HookPoint[ReadRenderer] = HookPoint("read_render")


@dataclass(frozen=True)
class Operation:
    """One operation in the CapabilityStatement: system-level, or on `resource_type`."""

    name: str
    definition: str
    resource_type: str | None = None


Task = Callable[[], None]


@dataclass
class Feature:
    """A feature's contribution to the app. Tasks are blocking calls, run in a worker thread:
    `startup` after the schema is migrated, in feature order; `shutdown` in reverse feature order."""

    name: str
    routers: Sequence[APIRouter] = ()
    operations: Sequence[Operation] = ()
    # rest-level parts other than operations (security), built from the FHIR base URL
    capability: Callable[[str], dict[str, Any]] | None = None
    startup: Sequence[Task] = ()
    shutdown: Sequence[Task] = ()
    middleware: Sequence[tuple[type, dict[str, Any]]] = ()
    hooks: Sequence[tuple[HookPoint, Callable]] = ()
    mounts: Sequence[tuple[str, ASGIApp, str]] = ()  # (path, application, name): static files
    state: dict[str, Any] = field(default_factory=dict)  # app.state attributes the routes read


def capability_parts(features: Sequence[Feature], base: str) -> dict[str, Any]:
    """The CapabilityStatement's rest-level parts the features declare: `operation` (system level),
    `resourceOperation` ({type: [operation, …]}) and whatever their `capability` adds."""
    parts: dict[str, Any] = {}
    system: list[dict] = []
    by_type: dict[str, list[dict]] = defaultdict(list)
    for feature in features:
        for op in feature.operations:
            entry = {"name": op.name, "definition": op.definition}
            (by_type[op.resource_type] if op.resource_type else system).append(entry)
        if feature.capability is not None:
            parts.update(feature.capability(base))
    if system:
        parts["operation"] = system
    if by_type:
        parts["resourceOperation"] = dict(by_type)
    return parts
