"""Registered clients and users: their shape and the rules a registration must satisfy.

The same validation runs for `planfit clients add`, `planfit users add` and PLANFIT_CLIENTS_FILE, so
a registration that would be unsafe at request time (a private key in a JWKS, a plain-http redirect
to another host, a scope the parser does not understand) is refused when it is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from server.auth.scopes import Scope, ScopeSet

SOURCE_KINDS = ("clinical", "claims")  # of a client; its patient-facing tokens write "patient-reported"
FHIR_USER_TYPES = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person")
ALL_PATIENTS = "*"

_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
_USERNAME_RE = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
_RESOURCE_ID_RE = re.compile(r"[A-Za-z0-9.-]{1,64}")
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class RegistrationError(ValueError):
    """A client or user registration is invalid; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    public: bool
    jwks: dict | None
    jwks_url: str | None
    redirect_uris: tuple[str, ...]
    scope: str
    source_kind: str
    source_uri: str
    origin: str = "cli"

    @property
    def authenticates_with_key(self) -> bool:
        """Confidential client: proves itself with a private_key_jwt assertion."""
        return not self.public and (self.jwks is not None or self.jwks_url is not None)

    @property
    def origins(self) -> frozenset[str]:
        """Web origins of the redirect URIs: where the app's JavaScript runs (CORS)."""
        return frozenset(_origin(uri) for uri in self.redirect_uris)

    # authlib's client protocol (the token endpoint, oauth.py)

    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Confidential clients authenticate with a private_key_jwt assertion; public ones by id alone."""
        if method == "private_key_jwt":
            return self.authenticates_with_key
        return method == "none" and self.public

    def check_grant_type(self, grant_type: str) -> bool:
        """client_credentials is for confidential clients (SMART Backend Services); any client may
        exchange a code and refresh."""
        if grant_type == "client_credentials":
            return self.authenticates_with_key
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    fhir_user: str | None
    patients: tuple[str, ...]
    # When the registration was last written (microseconds): tokens carry the version they were issued
    # for, so re-registering a username never revives the old one's tokens.
    version: int = 0

    @property
    def own_patient(self) -> str | None:
        """The Patient id when the user *is* a patient (fhirUser Patient/…)."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None

    @property
    def all_patients(self) -> bool:
        return ALL_PATIENTS in self.patients

    def patient_ids(self) -> tuple[str, ...]:
        """The explicit Patient ids this user may open (their own first)."""
        ids = [p for p in self.patients if p != ALL_PATIENTS]
        own = self.own_patient
        return tuple(dict.fromkeys([own, *ids] if own else ids))

    def may_open(self, patient: str) -> bool:
        return self.all_patients or patient in self.patient_ids()


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _check_web_url(url: str, what: str) -> str:
    """https anywhere, or http on the loopback interface only (local development and tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise RegistrationError(f"{what} must be an absolute http(s) URL without a fragment")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise RegistrationError(f"{what} must use https (http is allowed for 127.0.0.1/localhost only)")
    return url


def check_jwks(jwks: object) -> dict:
    """A JWKS of bare public keys, each with `kty` and `kid` (SMART Backend Services)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise RegistrationError("JWKS must be an object with a non-empty 'keys' array")
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC") or not isinstance(jwk.get("kid"), str):
            raise RegistrationError("every JWK needs kty RSA or EC and a kid")
        if _PRIVATE_JWK_MEMBERS & jwk.keys():
            raise RegistrationError(f"JWK {jwk['kid']!r} contains private key material; register public keys only")
        try:
            import_key(jwk)
        except (JoseError, ValueError, TypeError, KeyError):
            raise RegistrationError(f"JWK {jwk['kid']!r} is not a valid key") from None
    return {"keys": jwks["keys"]}


def check_scope(scope: str, public: bool) -> str:
    """The canonical form of the scopes a client may be granted."""
    parsed = ScopeSet.from_string(scope)
    if parsed.unrecognized:
        raise RegistrationError(f"unrecognised scope(s): {' '.join(parsed.unrecognized)}")
    if not len(parsed):
        raise RegistrationError("a client needs at least one scope")
    if public and any(isinstance(s, Scope) and s.context == "system" for s in parsed.scopes):
        raise RegistrationError("a public client cannot hold system/ scopes")
    return parsed.to_string()


def build_client(
    client_id: str,
    *,
    scope: str,
    jwks: object = None,
    jwks_url: str | None = None,
    redirect_uris: tuple[str, ...] | list[str] = (),
    public: bool = False,
    source_kind: str = "clinical",
    source_uri: str | None = None,
    origin: str = "cli",
) -> Client:
    """A validated client registration (raises RegistrationError)."""
    if not isinstance(client_id, str) or not _CLIENT_ID_RE.fullmatch(client_id):
        raise RegistrationError("client id must be 1-128 characters of A-Z a-z 0-9 . _ ~ : -")
    if public and (jwks is not None or jwks_url):
        raise RegistrationError("a public client has no keys: drop --public or the JWKS")
    if not public and jwks is None and not jwks_url:
        raise RegistrationError("a confidential client needs a JWKS (file or URL); public App Launch clients need --public")
    if jwks is not None and jwks_url:
        raise RegistrationError("give either a JWKS or a JWKS URL, not both")
    uris = tuple(_check_web_url(u, "redirect URI") for u in redirect_uris)
    if public and not uris:
        raise RegistrationError("a public client needs at least one redirect URI")
    if source_kind not in SOURCE_KINDS:
        raise RegistrationError(f"source kind must be one of {', '.join(SOURCE_KINDS)}")
    source = source_uri or f"urn:planfit:client:{client_id}"
    if ":" not in source or any(c.isspace() for c in source):
        raise RegistrationError("source URI must be an absolute URI")
    return Client(
        client_id=client_id,
        public=public,
        jwks=check_jwks(jwks) if jwks is not None else None,
        jwks_url=_check_web_url(jwks_url, "JWKS URL") if jwks_url else None,
        redirect_uris=uris,
        scope=check_scope(scope, public),
        source_kind=source_kind,
        source_uri=source,
        origin=origin,
    )


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise RegistrationError("username must be 1-128 characters of A-Z a-z 0-9 . _ @ + -")
    return username


def check_fhir_user(fhir_user: str | None) -> str | None:
    """`Type/id` of a Patient, Practitioner, PractitionerRole, RelatedPerson or Person (SMART)."""
    if fhir_user is None:
        return None
    rtype, _, rid = fhir_user.partition("/")
    if rtype not in FHIR_USER_TYPES or not _RESOURCE_ID_RE.fullmatch(rid):
        raise RegistrationError(f"fhirUser must be one of {', '.join(FHIR_USER_TYPES)} as Type/id")
    return fhir_user


def check_patients(patients: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    for pid in patients:
        if pid != ALL_PATIENTS and not _RESOURCE_ID_RE.fullmatch(pid):
            raise RegistrationError(f"invalid Patient id {pid!r}")
    return tuple(dict.fromkeys(patients))
