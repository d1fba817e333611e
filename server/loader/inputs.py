"""What to post: files and folders turned into units (one request each), described without their bodies.

A unit's key names the file, its size and modification time (and the chunk for NDJSON), so a state
file never makes a changed file pass for loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

SUFFIXES = (".json", ".ndjson")
BUNDLE_TYPES = ("transaction", "batch")


class BadInput(Exception):
    """A file that cannot be posted at all (not JSON, not a resource); the message says why."""


@dataclass(frozen=True)
class Unit:
    path: Path
    kind: str  # "bundle" | "resource" | "ndjson"
    entries: int
    key: str
    start: int = 0  # NDJSON chunk: byte range [start, end) of its lines
    end: int = 0

    @property
    def label(self) -> str:
        return f"{self.path} (bytes {self.start}-{self.end})" if self.kind == "ndjson" else str(self.path)

    def body(self) -> bytes:
        """The request body: the bundle as stored, or a transaction built around the resource(s)."""
        if self.kind == "bundle":
            return self.path.read_bytes()
        if self.kind == "resource":
            return transaction([orjson.loads(self.path.read_bytes())])
        with self.path.open("rb") as f:
            f.seek(self.start)
            lines = f.read(self.end - self.start).splitlines()
        return transaction([orjson.loads(line) for line in lines if line.strip()])


def transaction(resources: list[dict]) -> bytes:
    """A transaction bundle: PUT for resources with an id (kept as given), POST for the others."""
    entries = []
    for resource in resources:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": rtype}
        entries.append({"resource": resource, "request": request})
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def files(paths: list[Path]) -> Iterator[Path]:
    """The files named, and the .json/.ndjson files under the folders named (sorted, recursively)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise BadInput(f"{path}: no such file or folder")


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def json_unit(path: Path) -> Unit:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise BadInput(f"{path}: not a FHIR resource")
    if data["resourceType"] != "Bundle":
        return Unit(path, "resource", 1, _key(path))
    if data.get("type") not in BUNDLE_TYPES:
        raise BadInput(f"{path}: a Bundle of type {data.get('type')!r}; only transaction and batch are posted")
    return Unit(path, "bundle", len(data.get("entry") or []), _key(path))


def ndjson_units(path: Path, batch: int) -> Iterator[Unit]:
    """Chunks of `batch` non-empty lines, as byte ranges (the lines are parsed when posted)."""
    base = _key(path)
    start = offset = count = 0
    with path.open("rb") as f:
        for line in f:
            offset += len(line)
            if line.strip():
                count += 1
            if count == batch:
                yield Unit(path, "ndjson", count, f"{base}#{start}", start, offset)
                start, count = offset, 0
    if count:
        yield Unit(path, "ndjson", count, f"{base}#{start}", start, offset)


def units(paths: list[Path], batch: int) -> tuple[list[Unit], list[BadInput]]:
    """Every unit to post, and the files that cannot be posted (reported, not fatal)."""
    out: list[Unit] = []
    bad: list[BadInput] = []
    for path in files(paths):
        try:
            if path.suffix == ".ndjson":
                out.extend(ndjson_units(path, batch))
            else:
                out.append(json_unit(path))
        except (BadInput, OSError) as exc:
            bad.append(exc if isinstance(exc, BadInput) else BadInput(f"{path}: {exc}"))
    return out, bad
