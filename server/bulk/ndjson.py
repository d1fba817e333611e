"""NDJSON output files: one resource per line, split per type and every N lines.

Lines are the stored resource bytes as they are (orjson output never contains a newline), so an
exported resource is byte-for-byte what a read returns, and nothing is parsed or re-serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_BUFFER = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    name: str  # unique within the job, e.g. Condition-2.ndjson or error-1.ndjson
    kind: str  # output | error
    rtype: str
    path: str  # relative to the export directory
    count: int
    size: int


class NdjsonFiles:
    """Writes one type's lines to `<rtype>-1.ndjson`, `<rtype>-2.ndjson`, … of at most `max_lines`."""

    def __init__(self, export_dir: Path, relative_dir: str, rtype: str, kind: str, max_lines: int):
        self.export_dir = export_dir
        self.relative_dir = relative_dir
        self.rtype = rtype
        self.kind = kind
        self.max_lines = max_lines
        self.records: list[FileRecord] = []
        self._file: BinaryIO | None = None
        self._name = ""
        self._count = 0

    def write(self, line: bytes) -> None:
        if self._file is None or self._count >= self.max_lines:
            self._rotate()
        assert self._file is not None
        self._file.write(line)
        self._file.write(b"\n")
        self._count += 1

    def close(self) -> list[FileRecord]:
        """Finish the last file; returns every file written (none if there were no lines)."""
        self._finish()
        return self.records

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self) -> None:
        self._finish()
        # Error files get their own prefix: a system export may also have OperationOutcome output.
        prefix = self.rtype if self.kind == "output" else "error"
        self._name = f"{prefix}-{len(self.records) + 1}.ndjson"
        self._file = open(self.export_dir / self.relative_dir / self._name, "wb", buffering=_BUFFER)
        self._count = 0

    def _finish(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = None
        relative = f"{self.relative_dir}/{self._name}"
        size = (self.export_dir / relative).stat().st_size
        self.records.append(FileRecord(self._name, self.kind, self.rtype, relative, self._count, size))
