"""Operation input: a Parameters body (POST) or a query string (GET), as typed values by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from server.fhir.errors import FhirError
from server.fhir.http import json_body


@dataclass
class OperationInput:
    """Parameter values by name, each kept as FHIR gives it (value[x] element or query text)."""

    values: dict[str, list[object]] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: object, allowed: tuple[str, ...]) -> "OperationInput":
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FhirError.of(400, "invalid", "This operation takes a Parameters resource")
        out = cls()
        for index, item in enumerate(body.get("parameter") or []):
            where = f"Parameters.parameter[{index}]"
            name = item.get("name") if isinstance(item, dict) else None
            if name not in allowed:
                raise FhirError.of(400, "not-supported", f"Unknown parameter '{name}'; this operation takes "
                                                         f"{', '.join(allowed) or 'none'}", where)
            value = next((v for k, v in item.items() if k.startswith("value")), None)
            if value is None:
                raise FhirError.of(400, "invalid", f"Parameter '{name}' has no value", where)
            out.values.setdefault(name, []).append(value)
        return out

    @classmethod
    def from_query(cls, items: list[tuple[str, str]], allowed: tuple[str, ...]) -> "OperationInput":
        out = cls()
        for name, value in items:
            if name in ("_format", "_pretty"):
                continue
            if name not in allowed:
                raise FhirError.of(400, "not-supported", f"Unknown parameter '{name}'", name)
            out.values.setdefault(name, []).append(value)
        return out

    def given(self) -> frozenset[str]:
        return frozenset(self.values)

    def one(self, name: str) -> object | None:
        found = self.values.get(name) or []
        if len(found) > 1:
            raise FhirError.of(400, "invalid", f"'{name}' may be given once", f"Parameters.parameter[{name}]")
        return found[0] if found else None

    def text(self, name: str) -> str | None:
        value = self.one(name)
        if value is not None and not isinstance(value, str):
            raise FhirError.of(400, "invalid", f"'{name}' must be a primitive value", f"Parameters.parameter[{name}]")
        return value

    def reference(self, name: str) -> str | None:
        value = self.one(name)
        if value is None:
            return None
        ref = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(ref, str) or ref.count("/") != 1:
            raise FhirError.of(400, "invalid", f"'{name}' must be a relative reference Type/id",
                               f"Parameters.parameter[{name}]")
        return ref

    def identifier(self, name: str) -> tuple[str | None, str] | None:
        value = self.one(name)
        if value is None:
            return None
        if not (isinstance(value, dict) and isinstance(value.get("value"), str)):
            raise FhirError.of(400, "invalid", f"'{name}' must be an Identifier with a value",
                               f"Parameters.parameter[{name}]")
        return value.get("system"), value["value"]

    def period(self, name: str) -> tuple[str | None, str | None]:
        value = self.one(name)
        if value is None:
            return None, None
        if not isinstance(value, dict):
            raise FhirError.of(400, "invalid", f"'{name}' must be a Period", f"Parameters.parameter[{name}]")
        return _date(value.get("start"), name), _date(value.get("end"), name)

    def coding(self, name: str) -> tuple[str | None, str] | None:
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, dict) and "coding" in value:  # a CodeableConcept: its first coding
            value = (value.get("coding") or [None])[0]
        if not (isinstance(value, dict) and isinstance(value.get("code"), str)):
            raise FhirError.of(400, "invalid", f"'{name}' must be a Coding with a code", f"Parameters.parameter[{name}]")
        return value.get("system"), value["code"]

    def date(self, name: str) -> str | None:
        return _date(self.text(name), name)


def _date(value: object, name: str) -> str | None:
    """A FHIR date (YYYY-MM-DD; the date part of a dateTime)."""
    if value is None:
        return None
    text = value[:10] if isinstance(value, str) else ""
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not (text[:4] + text[5:7] + text[8:]).isdigit():
        raise FhirError.of(400, "invalid", f"'{name}' must be a date YYYY-MM-DD", f"Parameters.parameter[{name}]")
    return text


async def request_input(request: Request, allowed: tuple[str, ...]) -> OperationInput:
    """An operation's input: the query string of a GET, else the Parameters body."""
    if request.method == "GET":
        return OperationInput.from_query(list(request.query_params.multi_items()), allowed)
    return OperationInput.from_body(await json_body(request), allowed)
