"""App Launch: the authorization request, and its way through login, patient choice and consent.

`/auth/authorize` validates the request and stores it as a *pending request* under a random
secret; the login, patient-picker and consent pages carry that secret in a hidden field and in a
cookie (`COOKIE`), and every POST must present both, so another site cannot submit them in the
user's browser. Consent issues a single-use authorization code bound to the client, the redirect
URI and the PKCE challenge.

Errors before the client and redirect URI are known to be genuine are shown as a page (never
redirected, so nobody can use us as an open redirector); later ones are redirected to the app with
`error` and `state`, as RFC 6749 §4.1.2.1 prescribes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from server.auth.models import Client, User
from server.auth.runtime import AuthRuntime
from server.auth.scopes import IdentityScope, LaunchScope, Scope, ScopeSet
from server.auth.urls import Urls

COOKIE = "planfit_authz"
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_APP_LAUNCH_SCOPES = frozenset({"launch", "launch/patient", "openid", "fhirUser", "offline_access"})


class AuthorizeError(Exception):
    """`redirect_uri` None: show an error page; otherwise redirect `error` (+ `state`) to the app."""

    def __init__(self, error: str, description: str, redirect_uri: str | None = None, state: str | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self) -> str:
        assert self.redirect_uri is not None
        params = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            params["state"] = self.state
        return with_query(self.redirect_uri, params)


def with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


@dataclass
class Pending:
    """A validated authorization request and how far the user got (stored as JSON)."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    nonce: str | None = None
    launch_hash: str | None = None
    patient: str | None = None
    need_patient: bool = False
    username: str | None = None
    fhir_user: str | None = None
    user_version: int | None = None
    choices: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def app_scope(requested: str, allowed: str) -> str:
    """An app's grant: registered ∩ requested, without `system/` scopes (a user is delegating)."""
    granted = ScopeSet.from_string(ScopeSet.granted_subset(requested, allowed))
    kept = {
        s for s in granted.scopes
        if (isinstance(s, Scope) and s.context in ("patient", "user"))
        or (isinstance(s, (LaunchScope, IdentityScope)) and s.to_string() in _APP_LAUNCH_SCOPES)
    }
    return ScopeSet(frozenset(kept)).to_string()


class Authorization:
    def __init__(self, runtime: AuthRuntime):
        self.runtime = runtime
        self.store = runtime.store
        self.settings = runtime.settings

    # ---- /auth/authorize ---------------------------------------------------------------------

    def begin(self, params: dict[str, str], urls: Urls) -> str:
        """Validate an authorization request; returns the pending-request secret."""
        client = self._client(params)
        redirect_uri, state = params["redirect_uri"], params.get("state")

        def fail(error: str, description: str) -> AuthorizeError:
            return AuthorizeError(error, description, redirect_uri, state)

        if params.get("response_type") != "code":
            raise fail("unsupported_response_type", "response_type must be code")
        if not state:
            raise fail("invalid_request", "state is required")
        if params.get("code_challenge_method") != "S256":
            raise fail("invalid_request", "PKCE with code_challenge_method S256 is required (plain is not supported)")
        if not _CHALLENGE_RE.fullmatch(params.get("code_challenge", "")):
            raise fail("invalid_request", "code_challenge must be a base64url SHA-256 digest (43 characters)")
        if params.get("aud", "").rstrip("/") != urls.fhir:
            raise fail("invalid_request", "aud must be this server's FHIR base URL")
        scope = app_scope(params.get("scope", ""), client.scope)
        scopes = ScopeSet.from_string(scope)
        if not scopes.resource_scopes and not scopes.has("openid"):
            raise fail("invalid_scope", "none of the requested scopes is allowed for this client")
        pending = Pending(client.client_id, redirect_uri, scope, state, params["code_challenge"], params.get("nonce"))
        pending.need_patient = scopes.has("launch/patient") or any(s.context == "patient" for s in scopes.resource_scopes)
        if params.get("launch"):
            self._ehr_launch(pending, params["launch"], scopes, fail)
        secret = secrets.token_urlsafe(32)
        self.store.save_request(secret, client.client_id, pending.to_json(), self.settings.login_seconds)
        return secret

    def _client(self, params: dict[str, str]) -> Client:
        client_id = params.get("client_id")
        client = self.runtime.registry.fresh(client_id) if client_id else None
        if client is None or not client.redirect_uris:
            raise AuthorizeError("invalid_client", "Unknown client, or a client that is not registered for App Launch.")
        if params.get("redirect_uri") not in client.redirect_uris:
            raise AuthorizeError("invalid_request", "The redirect_uri is not registered for this client.")
        return client

    def _ehr_launch(self, pending: Pending, launch_id: str, scopes: ScopeSet, fail) -> None:
        if not scopes.has("launch"):
            raise fail("invalid_scope", "an EHR launch needs the launch scope")
        launch = self.store.peek_launch(launch_id)
        if launch is None or (launch.app_client_id not in (None, pending.client_id)):
            raise fail("invalid_request", "launch is unknown, expired, used or meant for another app")
        pending.launch_hash = launch.launch_hash
        pending.patient = launch.patient

    # ---- login, patient, consent -------------------------------------------------------------

    def load(self, secret: str) -> Pending | None:
        data = self.store.load_request(secret)
        return Pending(**data) if data else None

    def login(self, secret: str, pending: Pending, user: User) -> Pending:
        """Record the signed-in user and settle the patient context where there is no choice."""
        pending.username, pending.fhir_user, pending.user_version = user.username, user.fhir_user, user.version
        if pending.patient is not None and not user.may_open(pending.patient):
            raise AuthorizeError("access_denied", "the signed-in user may not open the launch patient",
                                 pending.redirect_uri, pending.state)
        if pending.need_patient and pending.patient is None:
            choices = user.patient_ids()
            if user.own_patient:
                pending.patient = user.own_patient
            elif len(choices) == 1 and not user.all_patients:
                pending.patient = choices[0]
            elif not choices and not user.all_patients:
                raise AuthorizeError("access_denied", "the signed-in user has no patient to open",
                                     pending.redirect_uri, pending.state)
            pending.choices = list(choices)
        self.store.update_request(secret, pending.to_json())
        return pending

    def choose_patient(self, secret: str, pending: Pending, user: User, patient: str) -> bool:
        """Set the patient from the picker; False if the user may not open it or it does not exist."""
        if not user.may_open(patient) or self.runtime.fhir.store.read("Patient", patient) is None:
            return False
        pending.patient = patient
        self.store.update_request(secret, pending.to_json())
        return True

    def consent(self, secret: str, pending: Pending, allow: bool) -> str:
        """The redirect back to the app: a fresh code, or `access_denied`."""
        if not self.store.finish_request(secret):
            raise AuthorizeError("invalid_request", "This authorization request was already completed.")
        if not allow:
            raise AuthorizeError("access_denied", "the user denied access", pending.redirect_uri, pending.state)
        if pending.launch_hash is not None and not self.store.take_launch(pending.launch_hash):
            raise AuthorizeError("invalid_request", "launch expired or was used", pending.redirect_uri, pending.state)
        code = secrets.token_urlsafe(32)
        context = {"username": pending.username, "fhir_user": pending.fhir_user, "patient": pending.patient,
                   "user_version": pending.user_version, "nonce": pending.nonce,
                   "need_patient_banner": pending.patient is not None}
        self.store.save_code(code, pending.client_id, pending.redirect_uri, pending.scope, pending.code_challenge,
                             context, self.settings.auth_code_seconds)
        return with_query(pending.redirect_uri, {"code": code, "state": pending.state})
