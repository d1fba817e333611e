"""Persistence of the authorization server: one short database transaction per operation.

Nothing here touches the resource store's write counter, so issuing tokens never waits for a
FHIR write transaction (on PostgreSQL; SQLite has one writer per file, held only briefly here).
One-time artefacts are consumed with `UPDATE … WHERE used = false` as the *first* statement of
their transaction: the database decides which of two racing requests wins, in any number of
processes, and on SQLite the write lock is taken up front instead of upgrading a read snapshot.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, TokenMixin
from sqlalchemy import Connection, Engine, Table, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.auth.keys import ServerKeys
from server.auth.models import Client, User
from server.store.auth_schema import (
    AuthClientRow,
    AuthServerKeysRow,
    AuthUserRow,
    auth_clients,
    auth_codes,
    auth_jti,
    auth_launches,
    auth_login_failures,
    auth_refresh_tokens,
    auth_requests,
    auth_server_keys,
    auth_users,
)

_PURGE_EVERY_S = 60.0
_LOGIN_KEEP_US = 24 * 3600 * 1_000_000  # failed sign-in counters outlive any lock window
_KEYS_ROW = 1


def now_us() -> int:
    return time.time_ns() // 1000


def digest(secret: str) -> str:
    """SHA-256 hex of a secret handed to a client; only the digest is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _insert(conn: Connection, table: Table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _upsert(conn: Connection, table: Table, row: dict[str, Any], keys: tuple[str, ...]) -> None:
    stmt = _insert(conn, table).values(row)
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_={k: stmt.excluded[k] for k in row if k not in keys}))


class AlreadyRegistered(Exception):
    """`add` of a client or user id that exists (use replace)."""


def _put(conn: Connection, table: Table, row: dict[str, Any], key: str, replace: bool) -> None:
    """Insert a registration, or overwrite it with `replace`. A single write statement, so on
    SQLite the transaction holds the write lock from its start (a read first would have to upgrade
    its snapshot, which fails at once if another process wrote meanwhile)."""
    if replace:
        _upsert(conn, table, row, (key,))
        return
    stmt = _insert(conn, table).values(row).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    if conn.execute(stmt).first() is None:
        raise AlreadyRegistered(row[key])


@dataclass(frozen=True)
class CodeGrant(AuthorizationCodeMixin):
    """An authorization code as issued; `replayed` when it had been exchanged before."""

    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    context: dict[str, Any]
    family: str
    expired: bool
    replayed: bool

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class RefreshGrant(TokenMixin):
    family: str
    client_id: str
    scope: str
    context: dict[str, Any]
    expires_us: int
    usable: bool  # False: expired, revoked, or already rotated (a replay)
    replayed: bool

    def check_client(self, client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class Launch:
    launch_hash: str
    ehr_client_id: str
    app_client_id: str | None
    patient: str


def _client_row(client: Client) -> dict[str, Any]:
    return AuthClientRow(
        client_id=client.client_id,
        public=client.public,
        jwks=json.dumps(client.jwks) if client.jwks is not None else None,
        jwks_url=client.jwks_url,
        redirect_uris=json.dumps(list(client.redirect_uris)),
        scope=client.scope,
        source_kind=client.source_kind,
        source_uri=client.source_uri,
        origin=client.origin,
        updated_us=now_us(),
    ).model_dump()


def _client_of(row) -> Client:
    return Client(
        client_id=row.client_id,
        public=row.public,
        jwks=json.loads(row.jwks) if row.jwks else None,
        jwks_url=row.jwks_url,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        scope=row.scope,
        source_kind=row.source_kind,
        source_uri=row.source_uri,
        origin=row.origin,
    )


def _user_of(row) -> User:
    return User(row.username, row.password_hash, row.fhir_user, tuple(json.loads(row.patients)), row.updated_us)


class AuthStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._purged_at = 0.0
        self._purge_lock = threading.Lock()

    # ---- clients -----------------------------------------------------------------------------

    def put_client(self, client: Client, *, replace: bool = False) -> None:
        with self.engine.begin() as conn:
            _put(conn, auth_clients, _client_row(client), "client_id", replace)

    def get_client(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(auth_clients).where(auth_clients.c.client_id == client_id)).first()
        return _client_of(row) if row else None

    def list_clients(self) -> list[Client]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(auth_clients).order_by(auth_clients.c.client_id)).all()
        return [_client_of(r) for r in rows]

    def remove_client(self, client_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(auth_clients).where(auth_clients.c.client_id == client_id)).rowcount > 0

    def sync_file_clients(self, clients: list[Client]) -> None:
        """Make the file-registered clients exactly `clients` (CLI registrations of other ids stay)."""
        wanted = {c.client_id for c in clients}
        with self.engine.begin() as conn:
            conn.execute(
                delete(auth_clients).where(auth_clients.c.origin == "file", auth_clients.c.client_id.not_in(wanted))
                if wanted
                else delete(auth_clients).where(auth_clients.c.origin == "file")
            )
            for client in clients:
                _upsert(conn, auth_clients, _client_row(client), ("client_id",))

    # ---- users -------------------------------------------------------------------------------

    def put_user(self, user: User, *, replace: bool = False) -> None:
        row = AuthUserRow(username=user.username, password_hash=user.password_hash, fhir_user=user.fhir_user,
                          patients=json.dumps(list(user.patients)), updated_us=now_us()).model_dump()
        with self.engine.begin() as conn:
            _put(conn, auth_users, row, "username", replace)

    def get_user(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(auth_users).where(auth_users.c.username == username)).first()
        return _user_of(row) if row else None

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(auth_users).order_by(auth_users.c.username)).all()
        return [_user_of(r) for r in rows]

    def remove_user(self, username: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(auth_users).where(auth_users.c.username == username)).rowcount > 0

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """A new hash of the same password (stronger parameters): not a change of the user, so the
        registration version, and with it the user's tokens, stay as they are."""
        with self.engine.begin() as conn:
            conn.execute(update(auth_users).where(auth_users.c.username == username).values(password_hash=password_hash))

    # ---- sign-in throttling ------------------------------------------------------------------

    def login_locked(self, keys: list[str]) -> int:
        """Seconds until sign-ins for any of these keys are allowed again (0: allowed now)."""
        t = auth_login_failures.c
        with self.engine.connect() as conn:
            until = conn.execute(select(func.max(t.locked_until_us)).where(t.key.in_(keys))).scalar()
        return max(0, -(-((until or 0) - now_us()) // 1_000_000))

    def login_failed(self, limits: dict[str, int], window_s: int) -> None:
        """Count a failed sign-in against each key (key → failures allowed within `window_s`); a key
        reaching its limit is locked for `window_s`, and one more failure after that locks it again
        while the window lasts. One upsert per key, so concurrent processes count every failure."""
        now = now_us()
        window = window_s * 1_000_000
        t = auth_login_failures.c
        with self.engine.begin() as conn:
            for key, limit in limits.items():
                stmt = _insert(conn, auth_login_failures).values(key=key, failures=1, window_start_us=now,
                                                                 locked_until_us=now + window if limit <= 1 else 0)
                expired = t.window_start_us < now - window
                failures = case((expired, 1), else_=t.failures + 1)
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
                    "failures": failures,
                    "window_start_us": case((expired, now), else_=t.window_start_us),
                    "locked_until_us": case((failures >= limit, now + window), else_=t.locked_until_us),
                }))

    def login_succeeded(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(auth_login_failures).where(auth_login_failures.c.key == key))

    # ---- server keys -------------------------------------------------------------------------

    def server_keys(self) -> ServerKeys:
        """The shared signing keys; the first process to ask generates them (others then read them)."""
        stored = self._stored_keys()
        if stored is not None:
            return ServerKeys.from_json(stored)
        fresh = ServerKeys.generate()
        with self.engine.begin() as conn:
            row = AuthServerKeysRow(id=_KEYS_ROW, private_jwks=fresh.to_json(), created_us=now_us()).model_dump()
            conn.execute(_insert(conn, auth_server_keys).values(row).on_conflict_do_nothing(index_elements=["id"]))
        stored = self._stored_keys()
        assert stored is not None
        return ServerKeys.from_json(stored)

    def _stored_keys(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(auth_server_keys.c.private_jwks).where(auth_server_keys.c.id == _KEYS_ROW)
            ).scalar_one_or_none()

    # ---- client assertion replay -------------------------------------------------------------

    def seen_jti(self, client_id: str, jti: str, keep_until_s: float) -> bool:
        """Record the jti; True if this client used it before and it has not yet expired."""
        if len(jti) > 256:
            return True  # cannot be stored, so cannot be checked: refuse it
        now = now_us()
        row = {"client_id": client_id, "jti": jti, "keep_until_us": int(keep_until_s * 1_000_000)}
        with self.engine.begin() as conn:
            stmt = _insert(conn, auth_jti).values(row)
            stmt = stmt.on_conflict_do_update(
                index_elements=["client_id", "jti"],
                set_={"keep_until_us": stmt.excluded.keep_until_us},
                where=auth_jti.c.keep_until_us < now,
            ).returning(auth_jti.c.jti)
            # A row comes back when the jti was new (or its earlier use had expired).
            fresh = conn.execute(stmt).first() is not None
        self.purge_expired()
        return not fresh

    # ---- pending authorization requests ------------------------------------------------------

    def save_request(self, secret: str, client_id: str, params: dict[str, Any], ttl_s: int) -> None:
        row = {"request_hash": digest(secret), "client_id": client_id, "params": json.dumps(params),
               "expires_us": now_us() + ttl_s * 1_000_000}
        with self.engine.begin() as conn:
            conn.execute(auth_requests.insert().values(row))
        self.purge_expired()

    def load_request(self, secret: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(auth_requests.c.params).where(
                    auth_requests.c.request_hash == digest(secret), auth_requests.c.expires_us > now_us()
                )
            ).first()
        return json.loads(row.params) if row else None

    def update_request(self, secret: str, params: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(auth_requests).where(auth_requests.c.request_hash == digest(secret)).values(params=json.dumps(params))
            )

    def finish_request(self, secret: str) -> bool:
        """Delete the pending request; False if another submission already finished it."""
        with self.engine.begin() as conn:
            return conn.execute(delete(auth_requests).where(auth_requests.c.request_hash == digest(secret))).rowcount == 1

    # ---- authorization codes -----------------------------------------------------------------

    def save_code(self, code: str, client_id: str, redirect_uri: str, scope: str, challenge: str,
                  context: dict[str, Any], ttl_s: int) -> None:
        row = {"code_hash": digest(code), "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
               "code_challenge": challenge, "context": json.dumps(context),
               "expires_us": now_us() + ttl_s * 1_000_000, "used": False}
        with self.engine.begin() as conn:
            conn.execute(auth_codes.insert().values(row))

    def take_code(self, code: str) -> CodeGrant | None:
        """Consume a code (None if unknown); a second exchange comes back with `replayed`."""
        h = digest(code)
        with self.engine.begin() as conn:
            first = conn.execute(
                update(auth_codes).where(auth_codes.c.code_hash == h, auth_codes.c.used.is_(False)).values(used=True)
            ).rowcount == 1
            row = conn.execute(select(auth_codes).where(auth_codes.c.code_hash == h)).first()
        if row is None:
            return None
        return CodeGrant(row.client_id, row.redirect_uri, row.scope, row.code_challenge, json.loads(row.context),
                         family=h, expired=row.expires_us <= now_us(), replayed=not first)

    # ---- refresh tokens ----------------------------------------------------------------------

    def save_refresh(self, token: str, family: str, client_id: str, scope: str, context: dict[str, Any],
                     expires_us: int) -> None:
        row = {"token_hash": digest(token), "family": family, "client_id": client_id, "scope": scope,
               "context": json.dumps(context), "expires_us": expires_us, "used": False, "revoked": False}
        with self.engine.begin() as conn:
            conn.execute(auth_refresh_tokens.insert().values(row))

    def take_refresh(self, token: str) -> RefreshGrant | None:
        """Consume a refresh token for rotation (None if unknown)."""
        h = digest(token)
        t = auth_refresh_tokens.c
        with self.engine.begin() as conn:
            first = conn.execute(
                update(auth_refresh_tokens)
                .where(t.token_hash == h, t.used.is_(False), t.revoked.is_(False), t.expires_us > now_us())
                .values(used=True)
            ).rowcount == 1
            row = conn.execute(select(auth_refresh_tokens).where(t.token_hash == h)).first()
        if row is None:
            return None
        return RefreshGrant(row.family, row.client_id, row.scope, json.loads(row.context), row.expires_us,
                            usable=first, replayed=not first and row.used)

    def peek_refresh(self, token: str) -> RefreshGrant | None:
        """Look at a refresh token without consuming it (introspection)."""
        t = auth_refresh_tokens.c
        with self.engine.connect() as conn:
            row = conn.execute(select(auth_refresh_tokens).where(t.token_hash == digest(token))).first()
        if row is None:
            return None
        usable = not row.used and not row.revoked and row.expires_us > now_us()
        return RefreshGrant(row.family, row.client_id, row.scope, json.loads(row.context), row.expires_us, usable, False)

    def revoke_family(self, family: str) -> None:
        """Revoke every refresh token descending from one authorization code (replay detected)."""
        with self.engine.begin() as conn:
            conn.execute(update(auth_refresh_tokens).where(auth_refresh_tokens.c.family == family).values(revoked=True))

    # ---- EHR launch contexts -----------------------------------------------------------------

    def save_launch(self, launch: str, ehr_client_id: str, app_client_id: str | None, patient: str, ttl_s: int) -> None:
        row = {"launch_hash": digest(launch), "ehr_client_id": ehr_client_id, "app_client_id": app_client_id,
               "patient": patient, "expires_us": now_us() + ttl_s * 1_000_000, "used": False}
        with self.engine.begin() as conn:
            conn.execute(auth_launches.insert().values(row))

    def peek_launch(self, launch: str) -> Launch | None:
        """A usable (unexpired, unused) launch context, without consuming it."""
        t = auth_launches.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(auth_launches).where(t.launch_hash == digest(launch), t.used.is_(False), t.expires_us > now_us())
            ).first()
        return Launch(row.launch_hash, row.ehr_client_id, row.app_client_id, row.patient) if row else None

    def take_launch(self, launch_hash: str) -> bool:
        """Consume a launch context at consent time; False if it was used or expired meanwhile."""
        t = auth_launches.c
        with self.engine.begin() as conn:
            return conn.execute(
                update(auth_launches)
                .where(t.launch_hash == launch_hash, t.used.is_(False), t.expires_us > now_us())
                .values(used=True)
            ).rowcount == 1

    # ---- housekeeping ------------------------------------------------------------------------

    def purge_expired(self) -> None:
        """Delete expired one-time artefacts, at most once a minute per process."""
        now = time.monotonic()
        with self._purge_lock:
            if now - self._purged_at < _PURGE_EVERY_S:
                return
            self._purged_at = now
        cutoff = now_us()
        with self.engine.begin() as conn:
            conn.execute(delete(auth_jti).where(auth_jti.c.keep_until_us < cutoff))
            conn.execute(delete(auth_requests).where(auth_requests.c.expires_us < cutoff))
            conn.execute(delete(auth_codes).where(auth_codes.c.expires_us < cutoff))
            conn.execute(delete(auth_launches).where(auth_launches.c.expires_us < cutoff))
            conn.execute(delete(auth_refresh_tokens).where(auth_refresh_tokens.c.expires_us < cutoff))
            conn.execute(delete(auth_login_failures).where(auth_login_failures.c.locked_until_us < cutoff,
                                                           auth_login_failures.c.window_start_us < cutoff - _LOGIN_KEEP_US))
