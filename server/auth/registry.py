"""Client and user registrations as seen by one server process: the database, behind a seconds-long cache.

Registrations live in the database, so `planfit clients add` in a shell, or a PLANFIT_CLIENTS_FILE
read by another process, reaches every process without a restart. The FHIR hot path asks
`cached()` (no I/O, so the event loop never blocks); on a miss it calls `load()` in a worker thread.
The token endpoint always reads fresh, so a client registered a moment ago can get a token at once.
The clients file is checked (one `stat`) at most every `ttl_s` seconds and re-imported when it changed.
Users are cached the same way, so a removed or changed user's tokens stop working within `ttl_s`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Generic, TypeVar

from server.auth.models import Client, RegistrationError, User, build_client
from server.auth.store import AuthStore

log = logging.getLogger("planfit.auth")
T = TypeVar("T")


def read_clients_file(path: Path) -> list[Client]:
    """Parse a clients file: `{"clients": [...]}` or a bare array of registrations.

    Each registration has `id`, `scope`, and `jwks` (inline), `jwks_file` (relative to the file) or
    `jwks_url`, or `redirect_uris` with `public: true`; optional `source_kind`, `source_uri`.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("clients") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise RegistrationError("clients file must hold an array of clients (or {\"clients\": [...]})")
    clients = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise RegistrationError("each client in the clients file must be an object")
        jwks = entry.get("jwks")
        if entry.get("jwks_file"):
            jwks = json.loads((path.parent / entry["jwks_file"]).read_text(encoding="utf-8"))
        clients.append(
            build_client(
                entry.get("id") or entry.get("client_id"),
                scope=entry.get("scope", ""),
                jwks=jwks,
                jwks_url=entry.get("jwks_url"),
                redirect_uris=entry.get("redirect_uris", []),
                public=bool(entry.get("public", False)),
                source_kind=entry.get("source_kind", "clinical"),
                source_uri=entry.get("source_uri"),
                origin="file",
            )
        )
    ids = [c.client_id for c in clients]
    if len(set(ids)) != len(ids):
        raise RegistrationError("clients file lists a client id twice")
    return clients


class Recent(Generic[T]):
    """Values by key, each served for at most `ttl_s` seconds after it was read from the database."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[T | None, float]] = {}

    def get(self, key: str) -> tuple[bool, T | None]:
        """(hit, value) from memory only; a miss means: read the database off the event loop."""
        entry = self._items.get(key)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return False, None
        return True, entry[0]

    def put(self, key: str, value: T | None) -> T | None:
        self._items[key] = (value, time.monotonic())
        return value

    def clear(self) -> None:
        self._items.clear()


class ClientRegistry:
    def __init__(self, store: AuthStore, ttl_s: float, clients_file: str = ""):
        self.store = store
        self.ttl_s = ttl_s
        self.clients_file = Path(clients_file) if clients_file else None
        self._clients: Recent[Client] = Recent(ttl_s)
        self._origins: tuple[frozenset[str], float] = (frozenset(), float("-inf"))
        self._file_stamp: tuple[int, int] | None = None
        self._file_checked = float("-inf")
        self._lock = threading.Lock()

    # ---- lookups -----------------------------------------------------------------------------

    def cached(self, client_id: str) -> tuple[bool, Client | None]:
        """(hit, client) from memory only; a miss means: call `load` off the event loop."""
        return self._clients.get(client_id)

    def load(self, client_id: str) -> Client | None:
        self.sync_file()
        return self._clients.put(client_id, self.store.get_client(client_id))

    def fresh(self, client_id: str) -> Client | None:
        """Straight from the database (token endpoint)."""
        return self.load(client_id)

    def origins(self) -> frozenset[str]:
        """Web origins of every registered redirect URI (who may call us from a browser)."""
        origins, loaded = self._origins
        if time.monotonic() - loaded <= self.ttl_s:
            return origins
        self.sync_file()
        origins = frozenset().union(*(c.origins for c in self.store.list_clients()))
        self._origins = (origins, time.monotonic())
        return origins

    def origins_cached(self) -> frozenset[str] | None:
        origins, loaded = self._origins
        return origins if time.monotonic() - loaded <= self.ttl_s else None

    # ---- clients file ------------------------------------------------------------------------

    def import_file(self) -> None:
        """Load the clients file at start; an invalid file stops the server (fail fast)."""
        if self.clients_file is None:
            return
        stamp = self._stamp()
        self.store.sync_file_clients(read_clients_file(self.clients_file))
        self._file_stamp = stamp
        self._file_checked = time.monotonic()
        log.info("clients file loaded")

    def sync_file(self) -> None:
        """Re-import the clients file if it changed; a broken edit keeps the previous registrations."""
        if self.clients_file is None or time.monotonic() - self._file_checked < self.ttl_s:
            return
        with self._lock:
            self._file_checked = time.monotonic()
            stamp = self._stamp()
            if stamp == self._file_stamp:
                return
            try:
                self.store.sync_file_clients(read_clients_file(self.clients_file))
            except (OSError, ValueError) as exc:
                log.error("clients file not reloaded: %s", exc if isinstance(exc, RegistrationError) else type(exc).__name__)
                return
            self._file_stamp = stamp
            self._clients.clear()
            self._origins = (frozenset(), float("-inf"))
            log.info("clients file reloaded")

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.clients_file)  # type: ignore[arg-type]
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size


class UserRegistry:
    """App Launch users by username, as `ClientRegistry` serves clients."""

    def __init__(self, store: AuthStore, ttl_s: float):
        self.store = store
        self._users: Recent[User] = Recent(ttl_s)

    def cached(self, username: str) -> tuple[bool, User | None]:
        return self._users.get(username)

    def load(self, username: str) -> User | None:
        return self._users.put(username, self.store.get_user(username))
