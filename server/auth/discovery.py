"""What the server tells clients about its authorization: SMART configuration, OIDC metadata and
the CapabilityStatement's `rest.security`. Every URL is absolute (SMART requires it)."""

from __future__ import annotations

from server.auth.keys import CLIENT_ASSERTION_ALGS, ID_TOKEN_ALG
from server.auth.urls import Urls

SCOPES_SUPPORTED = (
    "openid", "fhirUser", "launch", "launch/patient", "offline_access",
    "patient/*.cruds", "patient/*.rs", "patient/*.read", "patient/*.write",
    "user/*.cruds", "user/*.rs", "user/*.read", "user/*.write",
    "system/*.cruds", "system/*.rs", "system/*.read", "system/*.write",
)
CAPABILITIES = (
    "launch-ehr", "launch-standalone", "authorize-post",
    "client-public", "client-confidential-asymmetric",
    "sso-openid-connect", "context-banner", "context-ehr-patient", "context-standalone-patient",
    "permission-offline", "permission-patient", "permission-user", "permission-v1", "permission-v2",
)


def smart_configuration(urls: Urls) -> dict:
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(urls: Urls) -> dict:
    """OIDC discovery at `{issuer}/.well-known/openid-configuration`, for verifying id_tokens."""
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
    }


def capability_security(urls: Urls) -> dict:
    """CapabilityStatement.rest.security with the SMART `oauth-uris` extension."""
    return {
        "cors": True,
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": urls.token},
                {"url": "authorize", "valueUri": urls.authorize},
                {"url": "introspect", "valueUri": urls.introspect},
            ],
        }],
        "description": "SMART App Launch and Backend Services; see /fhir/.well-known/smart-configuration",
    }
