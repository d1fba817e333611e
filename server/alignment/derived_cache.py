"""An on-disk cache of values derived from the mapping files, so a server start skips recomputing them.

Checking and expanding the ICD-10-CM prefixes imports simple-icd-10-cm (it parses its whole release) and
hashing every code spelling into index keys takes about as long: together several seconds of CPU at each
start, for results that only change when the mapping files or the code do. Entries are keyed by a digest
of everything they are computed from, so a changed input never reads a stale entry; an unreadable or
unwritable cache only costs the recomputation. `PLANFIT_CACHE_DIR` moves it (default
`$XDG_CACHE_HOME/planfit`, else `~/.cache/planfit`); the value `off` disables it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import orjson


def _directory() -> Path | None:
    configured = os.environ.get("PLANFIT_CACHE_DIR", "")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "planfit"


def cached(kind: str, inputs: Any, compute: Callable[[], Any]) -> Any:
    """`compute()` (a JSON value), or the value an earlier call stored for equal `inputs` (JSON-able)."""
    directory = _directory()
    if directory is None:
        return compute()
    digest = hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)).hexdigest()
    path = directory / f"{kind}-{digest}.json"
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        pass
    value = compute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, delete=False) as tmp:
            tmp.write(orjson.dumps(value))
        os.replace(tmp.name, path)  # atomic: concurrent starts never read a half-written entry
    except OSError:
        pass
    return value
