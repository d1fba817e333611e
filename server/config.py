"""Settings, read once from `PLANFIT_*` environment variables (pydantic-settings).

Every knob an operator can turn lives here, with its meaning, so the README's configuration table is
generated from this one source (`python -m server.config`; a test checks the README holds it). A value
that does not fit its field stops the server with a message that names the variable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "PLANFIT_"


class SettingsError(ValueError):
    """A setting that does not fit, named by its environment variable."""


def setting(default: Any, meaning: str, *, shown: str | None = None, **constraints: Any) -> Any:
    """A field with the README's meaning; `shown` replaces the default in the table where it is derived."""
    return Field(default, description=meaning, json_schema_extra={"shown": shown} if shown else None, **constraints)


class Settings(BaseSettings):
    """Server configuration. Field names map to `PLANFIT_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    database_url: str = setting(
        "sqlite:///./planfit.db", "SQLAlchemy URL; `postgresql://…` is read as `postgresql+psycopg://…`")
    sqlite_lock_wait_seconds: int = setting(
        60, "on SQLite, how long a write waits for another writer (of any server process on the file) to commit; "
        "past that the request gets 503 `lock-error` with `Retry-After`", ge=1)
    database_pool_size: int = setting(
        40, "on PostgreSQL, connections a server process keeps open: opened as concurrent requests need them, "
        "then kept, so a request does not wait for a new backend; the default is the process's request threads; "
        "up to 20 more open for peaks and close after use. Processes × (this + 20) must fit PostgreSQL's "
        "`max_connections`", ge=1)
    host: str = setting("127.0.0.1", "listen address of `planfit serve`")
    port: int = setting(8080, "listen port of `planfit serve`", ge=0, le=65535)
    base_url: str = setting(
        "", "public base URL (without `/fhir`) used in `fullUrl`, `Location` and paging links",
        shown="(from the request)")
    default_source: str = setting(
        "urn:planfit:local", "`meta.source` stamped on writes when authorization is off (otherwise the client's "
        "registered source URI)")
    default_source_kind: Literal["clinical", "claims"] = setting(
        "clinical", "evidence kind of writes when authorization is off (otherwise the client's registered kind)")
    max_body_bytes: int = setting(64 * 1024 * 1024, "larger request bodies get 413 before they are read whole", ge=1)
    max_bundle_entries: int = setting(10_000, "larger transaction/batch bundles get 413", ge=1)
    default_count: int = setting(50, "page size when `_count` is absent", ge=1)
    max_count: int = setting(
        1_000, "largest page size; a larger `_count` is reduced, with a warning in the bundle", ge=1)
    max_search_params: int = setting(
        50, "parameters per search (criteria and result parameters); more get 400 `too-costly` before anything "
        "is planned", ge=1)
    max_includes: int = setting(
        10, "`_include` and `_revinclude` parameters per search; more get 400 `too-costly`", ge=0)
    request_timeout_seconds: int = setting(
        300, "a request with no response after this long gets 503 with an OperationOutcome (`timeout`); work "
        "already running may still complete, so retry writes conditionally (`0`: no limit)", ge=0)
    rate_limit: int = setting(
        0, "requests per minute per client (the token's user, else its client; per remote address without a "
        "token), a token bucket in each server process (N processes allow N×); beyond it 429 with `Retry-After` "
        "(`0`: no limit)", ge=0)
    cors_origins: str = setting(
        "", "comma-separated browser origins allowed to call the API, besides SMART discovery (any origin) and "
        "registered apps (their own origin); empty: CORS off")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = setting(
        "info", "log level of the server's and uvicorn's loggers (`warning` silences the per-request lines)")
    log_format: Literal["text", "json"] = setting(
        "text", "`json`: one JSON object per line (time, level, logger, message, request id; method, route "
        "template, status, duration for requests)")
    metrics_token: str = setting(
        "", "when set, `GET /metrics` requires `Authorization: Bearer <this token>`; otherwise it is open")
    auth: Literal["on", "off"] = setting(
        "on", "SMART authorization; `off` lets every caller read and write everything and logs a warning at "
        "every start")
    clients_file: str = setting(
        "", "JSON file of clients, loaded at start and re-loaded within seconds whenever it changes (see below)")
    access_token_seconds: int = setting(3600, "lifetime of App Launch access tokens", ge=1)
    backend_token_seconds: int = setting(
        300, "lifetime of Backend Services access tokens (never more than 300)", ge=1, le=300)
    refresh_token_seconds: int = setting(
        30 * 24 * 3600, "lifetime of a refresh-token family (rotation keeps the original expiry)", ge=1)
    auth_code_seconds: int = setting(60, "lifetime of an authorization code", ge=1)
    launch_seconds: int = setting(300, "lifetime of an EHR launch id minted by `POST /auth/launch`", ge=1)
    login_seconds: int = setting(600, "time a user has to sign in and consent", ge=1)
    client_cache_seconds: int = setting(
        2, "how long a process serves a client or user registration from memory: a removed client's or a "
        "removed or changed user's tokens stop working within this time", ge=0)
    login_max_failures: int = setting(
        5, "failed App Launch sign-ins per username before sign-ins for it are refused (429) for "
        "`PLANFIT_LOGIN_LOCK_SECONDS`", ge=1)
    login_max_failures_per_address: int = setting(
        50, "the same per client address (behind a proxy, the address uvicorn sees)", ge=1)
    login_lock_seconds: int = setting(
        900, "the window failures are counted in, and how long a username or address stays locked", ge=1)
    token_cache_size: int = setting(
        10_000, "verified access tokens kept in memory per process (LRU, each until it expires)", ge=0)
    lookback_months: int = setting(
        24, "diagnoses count when dated in the months before the evaluation date (SPEC §4.2)", ge=1)
    evaluation_date: str = setting(
        "", "fixed evaluation date `YYYY-MM-DD` for every evaluation (demos, back-testing); empty: the current "
        "UTC date at each evaluation", shown="(today, UTC)")
    alignment_mode: Literal["sync", "deferred"] = setting(
        "sync", "when findings follow a write: `sync`, before its response returns; `deferred`, a moment after, "
        "from a worker thread that evaluates many writes at once (the mode for high-volume feeds; see \"Kept "
        "current\" below)")
    alignment_wait_seconds: int = setting(
        30, "how long a request with `X-PlanFit-Consistency: aligned` waits for the findings to catch up before "
        "it gets 503", ge=0)
    mappings_dir: str = setting(
        "", "directory of value sets, `products.json` and `rates.json`; a broken file stops the server with a "
        "message naming file and field", shown="(the shipped `mappings/`)")
    rates_file: str = setting("", "replaces only the PMPM rate table", shown="`<mappings dir>/rates.json`")
    export_dir: str = setting(
        "./planfit-exports", "where Bulk Data export files are written; must be shared storage when servers run "
        "on several hosts")
    export_ttl_seconds: int = setting(
        3_600, "a finished export (its files and its status URL) is deleted this long after it completed", ge=1)
    export_file_lines: int = setting(
        100_000, "resources per NDJSON file (a type with more gets several files)", ge=1)
    export_workers: int = setting(
        1, "export worker threads per server process (`0`: this process only serves HTTP)", ge=0)
    export_lease_seconds: int = setting(
        30, "a running export whose process stopped renewing its lease for this long is taken over", ge=1)
    export_max_attempts: int = setting(
        3, "runs of one export (a restart after a crash counts) before it is marked failed", ge=1)
    export_retry_after_seconds: int = setting(
        1, "`Retry-After` on status polls; polling sooner gets 429", ge=0)
    export_max_rate: int = setting(
        0, "cap on resources/s one export worker writes, to spare the database during ingest (`0`: none)", ge=0)
    export_max_jobs: int = setting(
        5, "exports one client may have queued or running at once; a further kick-off gets 429 with "
        "`Retry-After`", ge=1)

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """The environment's settings, `overrides` taking precedence; a SettingsError names each bad variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError("; ".join(_explain(error) for error in exc.errors())) from None


# Variables read before the settings exist, by the code that owns them.
OTHER_VARIABLES = (
    ("PROMETHEUS_MULTIPROC_DIR", "(a temporary directory with `--workers` > 1)",
     "where worker processes keep their metrics for `/metrics` to merge (prometheus-client's multiprocess mode)"),
    ("PLANFIT_CACHE_DIR", "`$XDG_CACHE_HOME/planfit` (else `~/.cache/planfit`)",
     "where values derived from the mapping files (checked ICD-10-CM prefixes, code hashes) are cached, keyed "
     "by a digest of their inputs, so a start skips several seconds of CPU; `off`: no cache"),
)


def _explain(error: dict[str, Any]) -> str:
    name = PREFIX + str(error["loc"][0]).upper() if error["loc"] else "settings"
    return f"{name}: {error['msg']}, got {error['input']!r}"


def _shown_default(name: str) -> str:
    field = Settings.model_fields[name]
    shown = (field.json_schema_extra or {}).get("shown")
    if shown:
        return shown
    return f"`{field.default}`" if field.default != "" else "(none)"


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{PREFIX}{name.upper()}` | {_shown_default(name)} | {field.description} |"
             for name, field in Settings.model_fields.items()]
    rows += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in OTHER_VARIABLES]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
