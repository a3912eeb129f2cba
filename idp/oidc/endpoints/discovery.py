"""Provider metadata: OpenID Connect Discovery 1.0 and RFC 8414, one document served at both addresses."""

from __future__ import annotations

from typing import Any

from ...config import SIGNING_ALGORITHMS
from ...provider import Provider
from ...scopes import ACR_VALUES, SCOPE_CLAIMS, all_claims
from .. import dpop, fapi, paths
from ..grants.client_methods import ALL_METHODS, CONFIDENTIAL_METHODS

SIGNING_ALGS = list(SIGNING_ALGORITHMS)


def provider_metadata(provider: Provider) -> dict[str, Any]:
    url = provider.url
    return {
        "issuer": provider.issuer,
        "authorization_endpoint": url(paths.AUTHORIZE),
        "token_endpoint": url(paths.TOKEN),
        "userinfo_endpoint": url(paths.USERINFO),
        "jwks_uri": url(paths.JWKS),
        "end_session_endpoint": url(paths.END_SESSION),
        "revocation_endpoint": url(paths.REVOCATION),
        "introspection_endpoint": url(paths.INTROSPECTION),
        "scopes_supported": list(SCOPE_CLAIMS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": SIGNING_ALGS,
        "token_endpoint_auth_methods_supported": ALL_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": ALL_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": all_claims(),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        # Signed request objects by value (RFC 9101), at the authorization endpoint and in pushed requests.
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        # request_uri: only the URNs of pushed requests (RFC 9126); none is fetched from another host, and no
        # client can register any (OpenID Connect Discovery section 3).
        "request_uri_parameter_supported": True,
        "require_request_uri_registration": True,
        "pushed_authorization_request_endpoint": url(paths.PUSHED_AUTHORIZATION_REQUEST),
        "require_pushed_authorization_requests": provider.config.oauth.require_par,
        "dpop_signing_alg_values_supported": list(dpop.ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": list(ACR_VALUES),
        "ui_locales_supported": ["fa", "en"],
        "claims_locales_supported": ["fa"],
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        # OpenID Connect for Identity Assurance 1.0, section 8.
        "verified_claims_supported": True,
        "trust_frameworks_supported": [provider.config.identity.trust_framework],
        "evidence_supported": ["electronic_record"],
        "claims_in_verified_claims_supported": ["national_id", "given_name", "family_name", "birthdate"],
    }
