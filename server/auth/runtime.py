"""The authorization server's moving parts of one process, and its hooks into the FHIR service."""

from __future__ import annotations

from sqlalchemy import Engine

from server.auth.access import SmartAccess, forbidden
from server.auth.audit import AuditTrail
from server.auth.context import CURRENT
from server.auth.jwks import JwksFetcher
from server.auth.jwt import ServerKeys
from server.auth.models import Client
from server.auth.registry import ClientRegistry
from server.auth.store import AuthStore
from server.auth.tokens import Authenticator, Verified
from server.config import Settings
from server.fhir.service import FhirService, WriteContext, Written


class AuthRuntime:
    def __init__(self, settings: Settings, engine: Engine, fhir: FhirService, audit: AuditTrail):
        self.settings = settings
        self.fhir = fhir
        self.audit = audit
        self.store = AuthStore(engine)
        self.registry = ClientRegistry(self.store, settings.client_cache_seconds, settings.clients_file)
        self.jwks = JwksFetcher()
        self._keys: ServerKeys | None = None
        self.authenticator = Authenticator(
            self.keys, self.store.get_user, lambda rtype, params: fhir.parse(rtype, params, strict=True),
            settings.token_cache_size,
        )

    def start(self) -> None:
        """Load (or, in the first process ever, create) the signing keys; import the clients file."""
        self._keys = self.store.server_keys()
        self.registry.import_file()

    def keys(self) -> ServerKeys:
        assert self._keys is not None, "AuthRuntime.start() has not run"
        return self._keys

    @staticmethod
    def access(verified: Verified, client: Client) -> SmartAccess:
        """The request's Access: scopes from the token, write context from the registration, so a
        client can never write under another source or evidence kind than it was registered with."""
        context = WriteContext(source=client.source_uri, source_kind=client.source_kind, client_id=client.client_id)
        return SmartAccess(verified.grant, verified.clauses, context)

    def guard_write(self, rtype: str, rid: str, method: str) -> None:
        """Write guard (inside the write transaction): a confined token may update or delete an
        existing resource only if it could read it. New content is checked by `policy.check_body`."""
        current = CURRENT.get()
        if current is None or current.access is None or method == "POST":
            return
        clauses = current.access.clauses(rtype, "d" if method == "DELETE" else "u")
        if not clauses:
            return
        stored = self.fhir.store.read(rtype, rid)
        if stored is not None and not stored.deleted and not self.fhir.visible(rtype, rid, clauses):
            raise forbidden(f"{rtype}/{rid} lies outside what the access token may access")


def record_written(written: list[Written], _context: WriteContext) -> None:
    """After-commit listener: the versions a request wrote become entities of its audit record."""
    current = CURRENT.get()
    if current is not None:
        current.audit.entities.extend(f"{w.rtype}/{w.rid}/_history/{w.version}" for w in written)
