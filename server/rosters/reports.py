"""What the roster reports ($roster-reconcile, $roster-drift) share: CSV text of rows, Parameters JSON
serialised item by item, and Parameters parts of a row's optional values."""

from __future__ import annotations

import csv
import io
from typing import Iterable

import orjson


def csv_text(columns: tuple[str, ...], rows: Iterable[Iterable[object]]) -> str:
    """A header line and one line per row; None is written as an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return out.getvalue()


def optional_parts(kind: str, **values: object) -> list[dict]:
    """Parameters parts `value<kind>` for the values that are not None, in the order given."""
    return [{"name": name, f"value{kind}": value} for name, value in values.items() if value is not None]


def parameters_json(head: list[dict], items: Iterable[dict]) -> bytes:
    """A Parameters resource: the `head` parameters (at least one), then one per item, each serialised as
    soon as it is built. Held together as dicts, 200,000 mismatches keep the cyclic garbage collector
    rescanning them: 5 s instead of 1 s to build the report."""
    return parameters_text(head, b",".join(orjson.dumps(item) for item in items))


def parameters_text(head: list[dict], items: bytes | str) -> bytes:
    """A Parameters resource: the `head` parameters (at least one), then `items`, parameters already
    written as JSON text and separated by commas."""
    body = orjson.dumps({"resourceType": "Parameters", "parameter": head})
    rest = items.encode() if isinstance(items, str) else items
    return b"".join((body[:-2], b"," if rest else b"", rest, b"]}"))  # one copy of the items
