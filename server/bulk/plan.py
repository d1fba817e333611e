"""What one export job selects, in a form that survives the process that accepted it.

The kick-off request is checked and turned into an `ExportPlan` once, in the request: the types,
the `_since` bound, the `_typeFilter` queries and the caller's access clauses (scopes, patient
compartment) all become store clauses. The plan is stored on the job row as JSON, so whichever
process runs the job applies exactly what the caller was allowed at kick-off, without needing the
caller's token or request.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

import orjson

LEVELS = ("system", "patient", "group")
# Clause classes live in the server's own modules; nothing else may be named in a stored plan.
_CLAUSE_MODULE_PREFIX = "server."


@dataclass(frozen=True)
class TypePlan:
    """One exported type: rows must satisfy every access clause and, if any, one filter."""

    rtype: str
    access: tuple[object, ...] = ()
    # `_typeFilter` alternatives (OR); each is a tuple of clauses (AND). Empty: no filter.
    filters: tuple[tuple[object, ...], ...] = ()


@dataclass(frozen=True)
class ExportPlan:
    level: str  # system | patient | group
    types: tuple[TypePlan, ...]
    group_id: str | None = None
    # The POST-only `patient` parameter: only these patients' compartments. Empty: no restriction.
    patient_ids: tuple[str, ...] = ()
    since_us: int | None = None
    # `_until` of Da Vinci ATR's $davinci-data-export: only versions written at or before it.
    until_us: int | None = None
    # OperationOutcome issues (JSON) for parameters ignored under `Prefer: handling=lenient`.
    warnings: tuple[dict, ...] = ()

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "level": self.level,
                "group_id": self.group_id,
                "patient_ids": list(self.patient_ids),
                "since_us": self.since_us,
                "until_us": self.until_us,
                "warnings": list(self.warnings),
                "types": [
                    {
                        "rtype": t.rtype,
                        "access": [encode_clause(c) for c in t.access],
                        "filters": [[encode_clause(c) for c in f] for f in t.filters],
                    }
                    for t in self.types
                ],
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "ExportPlan":
        data = orjson.loads(raw)
        types = tuple(
            TypePlan(
                rtype=t["rtype"],
                access=tuple(decode_clause(c) for c in t["access"]),
                filters=tuple(tuple(decode_clause(c) for c in f) for f in t["filters"]),
            )
            for t in data["types"]
        )
        return cls(
            level=data["level"],
            types=types,
            group_id=data["group_id"],
            patient_ids=tuple(data["patient_ids"]),
            since_us=data["since_us"],
            until_us=data.get("until_us"),
            warnings=tuple(data["warnings"]),
        )


def encode_clause(clause: object) -> dict:
    """A store clause (a frozen dataclass of tuples, primitives and nested clauses) as JSON.

    Generic over the dataclass fields so clause kinds added later (by the auth layer, say) are
    stored without changes here.
    """
    cls = type(clause)
    if not dataclasses.is_dataclass(clause) or not cls.__module__.startswith(_CLAUSE_MODULE_PREFIX):
        raise TypeError(f"not a store clause: {cls.__name__}")
    out: dict[str, Any] = {"$clause": f"{cls.__module__}:{cls.__qualname__}"}
    for f in dataclasses.fields(clause):
        out[f.name] = _encode_value(getattr(clause, f.name))
    return out


def _encode_value(value: object) -> Any:
    if dataclasses.is_dataclass(value):
        return encode_clause(value)
    if isinstance(value, (tuple, list)):
        return [_encode_value(v) for v in value]
    return value


def decode_clause(data: dict) -> object:
    module, _, name = data["$clause"].partition(":")
    if not module.startswith(_CLAUSE_MODULE_PREFIX):
        raise ValueError(f"clause class outside the server: {module}")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{k: _decode_value(v) for k, v in data.items() if k != "$clause"})


def _decode_value(value: Any) -> Any:
    # Clause fields are tuples (the dataclasses are frozen and hashable); JSON gives lists back.
    if isinstance(value, dict):
        return decode_clause(value)
    if isinstance(value, list):
        return tuple(_decode_value(v) for v in value)
    return value
