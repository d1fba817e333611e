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
    # Parameters per search (criteria and result parameters), and `_include`/`_revinclude` among them:
    # beyond these a search is refused (400 too-costly) before it is planned.
    max_search_params: int = 50
    max_includes: int = 10
    # A request still without a response after this many seconds gets 503 (0: no limit). The work
    # already started may still finish (a retried conditional create is safe).
    request_timeout_seconds: int = 300
    # Requests per minute per client (token subject; per address when anonymous), as a token bucket
    # in each server process (0: no limit).
    rate_limit: int = 0
    # Browser origins (comma-separated) allowed to call the API besides registered SMART apps' own.
    cors_origins: str = ""
    log_level: str = "info"
    # `text` or `json` (one object per line: time, level, logger, message, request id, route template...).
    log_format: str = "text"
    # Bearer token /metrics requires; empty = /metrics is open (it holds counts only).
    metrics_token: str = ""
    # Alignment engine (SPEC §4): the lookback window for diagnoses, a fixed evaluation date
    # (YYYY-MM-DD; empty = today in UTC, at each evaluation), and where the mapping files are read
    # (empty = the repository's mappings/, and rates.json inside the mappings directory).
    lookback_months: int = 24
    evaluation_date: str = ""
    # When findings follow a write: `sync` (default) before its response returns; `deferred` by a
    # worker thread a moment after (many writes per evaluation: the mode for high-volume feeds), with
    # GET /fhir/$alignment-status and the `X-PlanFit-Consistency: aligned` request header to wait for it
    # for at most `alignment_wait_seconds`.
    alignment_mode: str = "sync"
    alignment_wait_seconds: int = 30
    mappings_dir: str = ""
    rates_file: str = ""
    # Bulk Data export: where files go (shared storage when servers run on several hosts), how long
    # they are kept, how big one file gets, and how export jobs are run and leased.
    export_dir: str = "./planfit-exports"
    export_ttl_seconds: int = 3_600
    export_file_lines: int = 100_000
    export_workers: int = 1
    export_lease_seconds: int = 30
    export_max_attempts: int = 3
    export_retry_after_seconds: int = 1
    export_max_rate: int = 0
    # Export jobs one client may have queued or running at once; a further kick-off gets 429.
    export_max_jobs: int = 5
    # SMART on FHIR authorization: "on" (default) or "off" (every caller may do everything; a
    # warning is logged at every start). Any other value refuses to start.
    auth: str = "on"
    # JSON file of clients (re)loaded into the database at start and whenever it changes.
    clients_file: str = ""
    # Lifetimes in seconds. Backend Services tokens never live longer than 300 s (SMART).
    access_token_seconds: int = 3600
    backend_token_seconds: int = 300
    refresh_token_seconds: int = 30 * 24 * 3600
    auth_code_seconds: int = 60
    launch_seconds: int = 300
    login_seconds: int = 600
    # How long a process may serve a client or user registration (and the clients file) from memory.
    client_cache_seconds: int = 2
    # App Launch sign-in throttling: after this many failed sign-ins for one username (or from one
    # address) within `login_lock_seconds`, sign-ins for it are refused (429) until that time has passed.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 50
    login_lock_seconds: int = 900
    # Verified access tokens kept in memory (LRU, each until it expires).
    token_cache_size: int = 10_000

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        values = {f.name: _env(f.name, f.default) for f in fields(cls)}
        return replace(cls(**values), **overrides)
