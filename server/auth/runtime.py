"""The authorization server's moving parts of one process, and the request context it builds."""

from __future__ import annotations

from sqlalchemy import Engine

from server.auth.access import SmartAccess
from server.auth.audit import AuditTrail
from server.auth.jwks import JwksFetcher
from server.auth.keys import ServerKeys
from server.auth.models import FHIR_USER_TYPES, Client
from server.auth.registry import ClientRegistry, UserRegistry
from server.auth.store import AuthStore
from server.auth.tokens import Authenticator, Verified
from server.config import Settings
from server.fhir.context import PATIENT_REPORTED, AuditRecord, RequestContext
from server.fhir.types import WriteContext
from server.fhir.service import FhirService

# Users who act for themselves or a relative, not as clinicians (SMART "patient-facing" apps).
_PATIENT_FACING_USERS = tuple(t for t in FHIR_USER_TYPES if t not in ("Practitioner", "PractitionerRole"))


class AuthRuntime:
    def __init__(self, settings: Settings, engine: Engine, fhir: FhirService, audit: AuditTrail):
        self.settings = settings
        self.fhir = fhir
        self.audit = audit
        self.store = AuthStore(engine)
        self.registry = ClientRegistry(self.store, settings.client_cache_seconds, settings.clients_file)
        self.users = UserRegistry(self.store, settings.client_cache_seconds)
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
    def context(verified: Verified, client: Client, record: AuditRecord) -> RequestContext:
        """The request's context: scopes from the token; source and evidence kind from the registration,
        so a client can never write under another source or kind than it was registered with, except
        that a patient-facing token (a patient context, or a user who is not a clinician) always writes
        `patient-reported` evidence (SPEC §6), which never qualifies a member for a product."""
        grant = verified.grant
        user_type = (grant.fhir_user or "").rstrip("/").split("/")[-2:-1]
        patient_facing = grant.patient is not None or (
            grant.username is not None and (not user_type or user_type[0] in _PATIENT_FACING_USERS))
        writer = WriteContext(source=client.source_uri, client_id=client.client_id,
                              source_kind=PATIENT_REPORTED if patient_facing else client.source_kind)
        record.client_id, record.username = grant.client_id, grant.username
        record.fhir_user, record.patient = grant.fhir_user, grant.patient
        return RequestContext(SmartAccess(grant, verified.clauses), writer, record, grant.username, grant.patient)
