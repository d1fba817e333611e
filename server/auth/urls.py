"""The server's public URLs, from PLANFIT_BASE_URL or (when unset) from the request.

Tokens are bound to them: an access token's `aud` is the FHIR base and its `iss` the issuer, and a
client assertion's `aud` must be the token endpoint, so all three are computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from server.config import Settings


@dataclass(frozen=True)
class Urls:
    root: str  # scheme://host[:port][/prefix], no trailing slash

    @classmethod
    def of(cls, connection: HTTPConnection, settings: Settings) -> "Urls":
        configured = settings.base_url.rstrip("/")
        return cls(configured or str(connection.base_url).rstrip("/"))

    @property
    def fhir(self) -> str:
        return self.root + "/fhir"

    @property
    def issuer(self) -> str:
        return self.root + "/auth"

    @property
    def token(self) -> str:
        return self.root + "/auth/token"

    @property
    def authorize(self) -> str:
        return self.root + "/auth/authorize"

    @property
    def introspect(self) -> str:
        return self.root + "/auth/introspect"

    @property
    def jwks(self) -> str:
        return self.root + "/auth/jwks"

    @property
    def launch(self) -> str:
        return self.root + "/auth/launch"
