"""Settings, read once from `PLANFIT_*` environment variables.

Every knob an operator can turn lives here so the README's configuration table has one source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any


def _env(name: str, default: Any) -> Any:
    raw = os.environ.get(f"PLANFIT_{name.upper()}")
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    return raw


@dataclass(frozen=True)
class Settings:
    """Server configuration. Field names map to `PLANFIT_<NAME>` variables."""

    database_url: str = "sqlite:///./planfit.db"
    host: str = "127.0.0.1"
    port: int = 8080
    # Public base URL of the server (without /fhir); derived from the request when empty.
    base_url: str = ""
    # meta.source stamped on writes when no authenticated client supplies one.
    default_source: str = "urn:planfit:local"
    # Evidence kind (clinical | claims) of writes that no authenticated client made.
    default_source_kind: str = "clinical"
    max_body_bytes: int = 64 * 1024 * 1024
    max_bundle_entries: int = 10_000
    default_count: int = 50
    max_count: int = 1_000
    log_level: str = "info"

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        values = {f.name: _env(f.name, f.default) for f in fields(cls)}
        return replace(cls(**values), **overrides)
