"""The token endpoint (`POST /auth/token`) on authlib's OAuth 2 server: client_credentials with
`private_key_jwt` assertions (SMART Backend Services), authorization_code with PKCE S256, and
refresh_token with rotation (SMART App Launch).

authlib runs the grants (RFC 6749 order of checks, client authentication, error responses); this
module adapts it to a parsed form and a Starlette response and plugs in the SMART rules as authlib's
hooks: scopes, launch context, the assertion checks of `jwt.verify_client_assertion` (audience, jti
replay, key rotation), single-use codes and refresh tokens whose replay revokes the family.

Errors are RFC 6749 §5.2 JSON (HTTP 400). Every failure to authenticate a client — unknown client,
bad assertion, replayed jti, wrong audience — is `invalid_client`, as SMART Backend Services
requires; problems with a code or refresh token are `invalid_grant`; asking for more than the
registration allows is `invalid_scope`. Descriptions are fixed, log-safe sentences.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from fastapi.responses import JSONResponse

from server.auth.jwt import (
    InvalidClient,
    mint_access_token,
    mint_id_token,
    verify_client_assertion,
    verify_pkce,
)
from server.auth.models import Client
from server.auth.runtime import AuthRuntime
from server.auth.scopes import LaunchScope, Scope, ScopeSet
from server.auth.store import CodeGrant, RefreshGrant, now_us
from server.auth.tokens import USER_CLAIM, USER_VERSION_CLAIM
from server.auth.urls import Urls

log = logging.getLogger("planfit.auth")

ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
PRIVATE_KEY_JWT = "private_key_jwt"
MAX_BACKEND_TOKEN_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 64 * 1024


class OAuthError(Exception):
    """An RFC 6749 error response; `description` is a fixed, log-safe sentence."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def parse_form(body: bytes) -> dict[str, str]:
    """An x-www-form-urlencoded body; a repeated parameter is an error (RFC 6749 §3.2)."""
    if len(body) > _MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "request body too large")
    form: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "request body is not UTF-8") from None
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name} is repeated")
        form[name] = value
    return form


def backend_scope(requested: str, allowed: str) -> str:
    """What a Backend Services client gets: its registered scopes ∩ the request, `system/` resource
    scopes and `launch` only (there is no user or patient behind a client_credentials token)."""
    granted = ScopeSet.from_string(ScopeSet.granted_subset(requested, allowed))
    kept = {s for s in granted.scopes if (isinstance(s, Scope) and s.context == "system") or s == LaunchScope("launch")}
    return ScopeSet(frozenset(kept)).to_string()


def narrowed_scope(requested: str, original: str) -> str:
    """A refresh may keep or narrow the scopes of the original grant, never widen them."""
    asked = ScopeSet.from_string(requested)
    granted = ScopeSet.from_string(original)
    if asked.unrecognized or not len(asked) or not all(granted.covers(s) for s in asked.scopes):
        raise InvalidScopeError("a refresh may only keep or narrow the original scopes")
    return asked.to_string()


def absolute_fhir_user(fhir_base: str, fhir_user: str | None) -> str | None:
    """SMART: the fhirUser claim is the URL of the user's resource."""
    return f"{fhir_base}/{fhir_user}" if fhir_user else None


# ---- the request authlib sees ---------------------------------------------------------------------


class FormRequest(OAuth2Request):
    """A token request whose form is already parsed (repeats refused) by `parse_form`.

    authlib's base constructor refuses plain-http URLs other than loopback; transport security is
    the deployment's here (TLS ends at a proxy, README "Deploy"), so the constructor sets the same
    fields without that check."""

    def __init__(self, form: dict[str, str], uri: str):
        self.method, self.uri, self.headers, self._body = "POST", uri, {}, None
        self.payload = BasicOAuth2Payload(form)
        self.client = self.auth_method = self.user = None
        self.authorization_code = self.refresh_token = self.credential = None
        self._scope = None
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Grantee:
    """The user behind a code or refresh token: their launch context, the token family (one per
    authorization code) and when the family's refresh tokens stop working."""

    context: dict
    family: str
    refresh_expires_us: int


# ---- client authentication -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKeys:
    """Where a confidential client's public keys come from: the registered JWKS, or its JWKS URL
    (re-fetched once when a kid is unknown: the client may have rotated its keys)."""

    client: Client
    fetch: Callable[..., dict]

    def jwks(self, *, stale_kid: bool = False) -> dict:
        if self.client.jwks is not None:
            return self.client.jwks
        return self.fetch(self.client.jwks_url, stale_kid=stale_kid)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client assertions with the SMART Backend Services rules of `verify_client_assertion`
    (RS384/ES384 only, registered `jku` only, kid selection, 5-minute lifetime, single-use jti).
    authlib finds the client by the assertion's `sub`; a `client_id` in the form must agree."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, runtime: AuthRuntime, urls: Urls):
        super().__init__()
        self.runtime, self.urls = runtime, urls

    def __call__(self, query_client, request: OAuth2Request) -> Client | None:
        form = request.form
        if "client_assertion" not in form and "client_assertion_type" not in form:
            return None  # not this method: a public client may still identify itself by client_id
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
        if not form.get("client_assertion"):
            raise InvalidClientError(description="client_assertion is required")
        client = super().__call__(query_client, request)
        if form.get("client_id") not in (None, client.client_id):
            raise InvalidClientError(description="client_id does not match the assertion")
        return client

    def get_audiences(self) -> list[str]:
        return [self.urls.token]

    def resolve_client_public_key(self, client: Client) -> ClientKeys:
        if not client.authenticates_with_key:
            raise InvalidClientError(description="unknown client")
        return ClientKeys(client, self.runtime.jwks.get)

    def process_assertion_claims(self, assertion: str, resolve_key: ClientKeys) -> dict:
        client = resolve_key.client

        def attempt(jwks: dict) -> dict:
            return verify_client_assertion(
                assertion, client_id=client.client_id, jwks=jwks, token_url=self.urls.token,
                seen_jti=lambda jti, until: self.runtime.store.seen_jti(client.client_id, jti, until),
                jwks_url=client.jwks_url,
            )

        try:
            try:
                return attempt(resolve_key.jwks())
            except InvalidClient as exc:
                if client.jwks_url is None or exc.reason != "unknown kid":
                    raise
                return attempt(resolve_key.jwks(stale_kid=True))
        except InvalidClient as exc:
            raise InvalidClientError(description=exc.reason) from None


# ---- grants --------------------------------------------------------------------------------------------


class BackendServicesGrant(grants.ClientCredentialsGrant):
    """SMART Backend Services: a confidential client, a `system/` scope, a short access token."""

    TOKEN_ENDPOINT_AUTH_METHODS = (PRIVATE_KEY_JWT,)

    def validate_requested_scope(self) -> None:
        requested = (self.request.payload.scope or "").strip()
        if not requested:
            raise InvalidScopeError("scope is required")
        scope = backend_scope(requested, self.request.client.scope)
        if not scope:
            raise InvalidScopeError("none of the requested scopes is allowed for this client")
        self.request.scope = scope

    def create_token_response(self):
        # authlib's version grants the scope as asked; ours is the narrowed `request.scope`.
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartCodeChallenge(CodeChallenge):
    """PKCE, S256 only (SMART). The authorization endpoint stored an S256 challenge with every code,
    so a missing or wrong verifier is a code that does not verify: `invalid_grant`."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_verifier(self, grant, result) -> None:
        request = grant.request
        code = request.authorization_code
        if not verify_pkce(request.form.get("code_verifier", ""), self.get_authorization_code_challenge(code), "S256"):
            raise InvalidGrantError("code_verifier does not match the code_challenge")


class _UserGrant:
    """What the App Launch grants share: public clients by client_id or confidential ones by assertion,
    and a user who must still be registered exactly as when the grant was issued."""

    TOKEN_ENDPOINT_AUTH_METHODS = (PRIVATE_KEY_JWT, "none")
    server: SmartAuthorizationServer

    def grantee(self, context: dict, family: str, refresh_expires_us: int) -> Grantee:
        """A removed user, or a username registered again (perhaps with other patients), revokes the family."""
        store = self.server.runtime.store
        user = store.get_user(context["username"])
        if user is None or user.version != context.get("user_version"):
            store.revoke_family(family)
            raise InvalidGrantError("the user was removed or changed since this grant was issued")
        return Grantee(context, family, refresh_expires_us)


class AppLaunchCodeGrant(_UserGrant, grants.AuthorizationCodeGrant):
    """The code issued by `/auth/authorize` (authorize.py) exchanged for tokens. Codes are taken
    (marked used) when read; a second exchange revokes every token issued from the first."""

    def query_authorization_code(self, code: str, client: Client) -> CodeGrant:
        if not code:
            raise InvalidRequestError("code is required")
        store = self.server.runtime.store
        grant = store.take_code(code)
        if grant is None or grant.expired:
            raise InvalidGrantError("authorization code is invalid or expired")
        if grant.replayed:
            store.revoke_family(grant.family)
            raise InvalidGrantError("authorization code was already used")
        if grant.client_id != client.client_id:
            raise InvalidGrantError("authorization code was issued to another client")
        return grant

    def authenticate_user(self, authorization_code: CodeGrant) -> Grantee:
        expires = now_us() + self.server.runtime.settings.refresh_token_seconds * 1_000_000
        return self.grantee(authorization_code.context, authorization_code.family, expires)

    def delete_authorization_code(self, authorization_code: CodeGrant) -> None:
        """Nothing left to do: `take_code` marked the code used, atomically, before it was checked."""


class AppLaunchRefreshGrant(_UserGrant, grants.RefreshTokenGrant):
    """Refresh with rotation: each refresh token works once; using one twice revokes its family."""

    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshGrant:
        if not refresh_token:
            raise InvalidRequestError("refresh_token is required")
        seen = self.server.runtime.store.peek_refresh(refresh_token)
        if seen is None or seen.client_id != self.request.client.client_id:
            raise InvalidGrantError("refresh token is invalid")
        return seen

    def _validate_token_scope(self, token: RefreshGrant) -> None:
        # authlib compares scope strings as sets; SMART scopes narrow by meaning (user/*.rs covers
        # user/Observation.r), which `ScopeSet.covers` knows.
        asked = self.request.payload.scope
        self.request.scope = narrowed_scope(asked, token.scope) if asked else token.scope

    def authenticate_user(self, refresh_token: RefreshGrant) -> Grantee:
        store = self.server.runtime.store
        grant = store.take_refresh(self.request.form["refresh_token"])
        if grant is None or grant.replayed:
            store.revoke_family(refresh_token.family)
            raise InvalidGrantError("refresh token was already used")
        if not grant.usable:
            raise InvalidGrantError("refresh token is expired or revoked")
        return self.grantee(grant.context, grant.family, grant.expires_us)

    def issue_token(self, user: Grantee, refresh_token: RefreshGrant) -> dict:
        return self.generate_token(user=user, scope=self.request.scope, include_refresh_token=True)

    def revoke_old_credential(self, refresh_token: RefreshGrant) -> None:
        """Nothing left to do: `take_refresh` marked it used, atomically, before the new tokens were minted."""


# ---- the server ------------------------------------------------------------------------------------------


class SmartAuthorizationServer(AuthorizationServer):
    """authlib's authorization server for one token request (the URLs come from the request when
    PLANFIT_BASE_URL is unset, and tokens and assertions are bound to them)."""

    def __init__(self, runtime: AuthRuntime, urls: Urls):
        super().__init__()
        self.runtime, self.urls, self.settings = runtime, urls, runtime.settings
        self.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJwt(runtime, urls))
        self.register_grant(BackendServicesGrant)
        self.register_grant(AppLaunchCodeGrant, [SmartCodeChallenge(required=True)])
        self.register_grant(AppLaunchRefreshGrant)
        self.register_token_generator("client_credentials", self.backend_token)
        self.register_token_generator("default", self.app_tokens)

    def respond(self, form: dict[str, str]) -> JSONResponse:
        if not form.get("grant_type"):
            return self.handle_error_response(None, InvalidRequestError("grant_type is required"))
        return self.create_token_response(form)

    # authlib's framework hooks

    def create_oauth2_request(self, request: dict[str, str]) -> FormRequest:
        return FormRequest(request, self.urls.token)

    def query_client(self, client_id: str) -> Client | None:
        return self.runtime.registry.fresh(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        """Access tokens are self-contained JWTs; only a refresh token is stored."""
        if "refresh_token" in token:
            grantee: Grantee = request.user
            self.runtime.store.save_refresh(token["refresh_token"], grantee.family, request.client.client_id,
                                            token["scope"], grantee.context, grantee.refresh_expires_us)

    def send_signal(self, name, *args, **kwargs) -> None:
        """No framework signals here: the audit trail records token use at the resource server."""

    def handle_response(self, status: int, body: dict, headers) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=NO_STORE)

    def handle_error_response(self, request, error: OAuth2Error) -> JSONResponse:
        log.info("token request refused: %s (%s)", error.error, error.get_error_description())
        return super().handle_error_response(request, error)

    # token generators

    def backend_token(self, grant_type: str, client: Client, user, scope: str, expires_in, include_refresh_token) -> dict:
        lifetime = min(self.settings.backend_token_seconds, MAX_BACKEND_TOKEN_SECONDS)
        token = mint_access_token(self.runtime.keys(), issuer=self.urls.issuer, audience=self.urls.fhir,
                                  client_id=client.client_id, scope=scope, expires_in=lifetime)
        return {"access_token": token, "token_type": "bearer", "expires_in": lifetime, "scope": scope}

    def app_tokens(self, grant_type: str, client: Client, user: Grantee, scope: str, expires_in,
                   include_refresh_token: bool) -> dict:
        """Access token (+ id_token for openid, + a refresh token for offline_access)."""
        keys, urls, context = self.runtime.keys(), self.urls, user.context
        scopes = ScopeSet.from_string(scope)
        username, patient = context["username"], context.get("patient")
        fhir_user = absolute_fhir_user(urls.fhir, context.get("fhir_user"))
        extra: dict = {"sub": username, USER_CLAIM: username, USER_VERSION_CLAIM: context["user_version"]}
        if patient:
            extra["patient"] = patient
        if fhir_user and scopes.has("fhirUser"):
            extra["fhirUser"] = fhir_user
        lifetime = self.settings.access_token_seconds
        body: dict = {
            "access_token": mint_access_token(keys, issuer=urls.issuer, audience=urls.fhir, client_id=client.client_id,
                                              scope=scope, expires_in=lifetime, extra_claims=extra),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if patient:
            body["patient"] = patient
            body["need_patient_banner"] = bool(context.get("need_patient_banner", True))
        if scopes.has("openid"):
            body["id_token"] = mint_id_token(keys, issuer=urls.issuer, client_id=client.client_id, subject=username,
                                             fhir_user=fhir_user if scopes.has("fhirUser") else None,
                                             nonce=context.get("nonce"))
        if include_refresh_token and scopes.has("offline_access"):
            body["refresh_token"] = secrets.token_urlsafe(32)
        return body
