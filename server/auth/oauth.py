"""The token endpoint (`POST /auth/token`): client_credentials, authorization_code, refresh_token.

Errors are RFC 6749 §5.2 JSON (`{"error": …, "error_description": …}`, HTTP 400). Every failure to
authenticate a client — unknown client, bad assertion, replayed jti, wrong audience — is
`invalid_client`, as SMART Backend Services requires; problems with a code or refresh token are
`invalid_grant`; asking for more than the registration allows is `invalid_scope`.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl

from server.auth.jwt import (
    InvalidClient,
    mint_access_token,
    mint_id_token,
    peek_assertion_issuer,
    verify_client_assertion,
    verify_pkce,
)
from server.auth.models import Client
from server.auth.runtime import AuthRuntime
from server.auth.scopes import LaunchScope, Scope, ScopeSet
from server.auth.store import now_us
from server.auth.tokens import USER_CLAIM, USER_VERSION_CLAIM
from server.auth.urls import Urls

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_BACKEND_TOKEN_SECONDS = 300
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
        raise OAuthError("invalid_scope", "a refresh may only keep or narrow the original scopes")
    return asked.to_string()


def absolute_fhir_user(fhir_base: str, fhir_user: str | None) -> str | None:
    """SMART: the fhirUser claim is the URL of the user's resource."""
    return f"{fhir_base}/{fhir_user}" if fhir_user else None


class TokenEndpoint:
    def __init__(self, runtime: AuthRuntime):
        self.runtime = runtime
        self.settings = runtime.settings

    def handle(self, form: dict[str, str], urls: Urls) -> dict:
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return self._client_credentials(form, urls)
        if grant_type == "authorization_code":
            return self._authorization_code(form, urls)
        if grant_type == "refresh_token":
            return self._refresh_token(form, urls)
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials, authorization_code or refresh_token")

    # ---- client authentication -----------------------------------------------------------------

    def authenticate(self, form: dict[str, str], urls: Urls, *, require_key: bool) -> Client:
        """The calling client: by private_key_jwt assertion, or (public App Launch clients) by id."""
        assertion = form.get("client_assertion")
        if assertion is not None or "client_assertion_type" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
            if not assertion:
                raise OAuthError("invalid_client", "client_assertion is required")
            client_id = form.get("client_id") or peek_assertion_issuer(assertion)
            client = self.runtime.registry.fresh(client_id) if client_id else None
            if client is None or not client.authenticates_with_key:
                raise OAuthError("invalid_client", "unknown client")
            self._verify_assertion(client, assertion, urls)
            return client
        if require_key:
            raise OAuthError("invalid_client", "client authentication by private_key_jwt assertion is required")
        client_id = form.get("client_id")
        client = self.runtime.registry.fresh(client_id) if client_id else None
        if client is None:
            raise OAuthError("invalid_client", "unknown client")
        if not client.public:
            raise OAuthError("invalid_client", "a confidential client must authenticate with a private_key_jwt assertion")
        return client

    def _verify_assertion(self, client: Client, assertion: str, urls: Urls) -> None:
        """SMART key resolution: the registered JWKS, or the JWKS URL (re-fetched once if the kid
        is unknown: the client may have rotated its keys)."""

        def attempt(jwks: dict) -> None:
            verify_client_assertion(
                assertion,
                client_id=client.client_id,
                jwks=jwks,
                token_url=urls.token,
                seen_jti=lambda jti, until: self.runtime.store.seen_jti(client.client_id, jti, until),
                jwks_url=client.jwks_url,
            )

        try:
            try:
                attempt(client.jwks if client.jwks is not None else self.runtime.jwks.get(client.jwks_url))  # type: ignore[arg-type]
            except InvalidClient as exc:
                if client.jwks_url is None or exc.reason != "unknown kid":
                    raise
                attempt(self.runtime.jwks.get(client.jwks_url, stale_kid=True))
        except InvalidClient as exc:
            raise OAuthError("invalid_client", exc.reason) from None

    # ---- grants ------------------------------------------------------------------------------

    def _client_credentials(self, form: dict[str, str], urls: Urls) -> dict:
        client = self.authenticate(form, urls, require_key=True)
        requested = form.get("scope", "").strip()
        if not requested:
            raise OAuthError("invalid_scope", "scope is required")
        scope = backend_scope(requested, client.scope)
        if not scope:
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed for this client")
        lifetime = min(self.settings.backend_token_seconds, MAX_BACKEND_TOKEN_SECONDS)
        token = mint_access_token(self.runtime.keys(), issuer=urls.issuer, audience=urls.fhir,
                                  client_id=client.client_id, scope=scope, expires_in=lifetime)
        return {"access_token": token, "token_type": "bearer", "expires_in": lifetime, "scope": scope}

    def _authorization_code(self, form: dict[str, str], urls: Urls) -> dict:
        client = self.authenticate(form, urls, require_key=False)
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        grant = self.runtime.store.take_code(code)
        if grant is None or grant.expired:
            raise OAuthError("invalid_grant", "authorization code is invalid or expired")
        if grant.replayed:
            self.runtime.store.revoke_family(grant.family)
            raise OAuthError("invalid_grant", "authorization code was already used")
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if not verify_pkce(form.get("code_verifier", ""), grant.code_challenge, "S256"):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        self._check_user(grant.context, grant.family)
        expires = now_us() + self.settings.refresh_token_seconds * 1_000_000
        return self._app_tokens(client, grant.scope, grant.context, grant.family, expires, urls)

    def _refresh_token(self, form: dict[str, str], urls: Urls) -> dict:
        client = self.authenticate(form, urls, require_key=False)
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        store = self.runtime.store
        seen = store.peek_refresh(token)
        if seen is None or seen.client_id != client.client_id:
            raise OAuthError("invalid_grant", "refresh token is invalid")
        scope = narrowed_scope(form["scope"], seen.scope) if form.get("scope") else seen.scope
        grant = store.take_refresh(token)
        if grant is None or grant.replayed:
            store.revoke_family(seen.family)
            raise OAuthError("invalid_grant", "refresh token was already used")
        if not grant.usable:
            raise OAuthError("invalid_grant", "refresh token is expired or revoked")
        self._check_user(grant.context, grant.family)
        return self._app_tokens(client, scope, grant.context, grant.family, grant.expires_us, urls)

    def _check_user(self, context: dict, family: str) -> None:
        """The user a code or refresh token was issued to must still be registered exactly as then: a
        removed user, or a username registered again (perhaps with other patients), revokes the family."""
        user = self.runtime.store.get_user(context["username"])
        if user is None or user.version != context.get("user_version"):
            self.runtime.store.revoke_family(family)
            raise OAuthError("invalid_grant", "the user was removed or changed since this grant was issued")

    def _app_tokens(self, client: Client, scope: str, context: dict, family: str, refresh_expires_us: int,
                    urls: Urls) -> dict:
        """Access token (+ id_token for openid, + rotated refresh token for offline_access)."""
        keys = self.runtime.keys()
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
        if scopes.has("offline_access"):
            refresh = secrets.token_urlsafe(32)
            self.runtime.store.save_refresh(refresh, family, client.client_id, scope, context, refresh_expires_us)
            body["refresh_token"] = refresh
        return body
