"""``private_key_jwt`` client authentication (OpenID Connect Core section 9, RFC 7523 section 2.2).

The client signs a short-lived JWT with its private key; we verify it with the public keys it registered
(``jwks``) or publishes (``jwks_uri``: idp.oidc.client_keys). Each assertion works once: its ``jti`` is spent in
the key-value store, whichever instance sees it. A FAPI 2.0 client's assertion must name the issuer alone as its
``aud`` (FAPI 2.0 Security Profile section 5.3.2.1) and expire within minutes; both its algorithm and the key
must be PS256 or ES256.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic as _authlib_secret_basic
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError

from .. import clock
from ..provider import current_provider
from ..security import sha256_hex
from ..store.models import Client
from . import paths
from .client_keys import ClientKeyResolver
from .fapi import client_profile

log = logging.getLogger(__name__)

#: Clock skew allowed on exp, nbf and iat. FAPI 2.0 section 5.3.2.1 asks to accept iat and nbf up to 10 s in the
#: future and to refuse them beyond 60 s.
LEEWAY = 30


def authenticate_client_secret_basic(query_client: Any, request: Any) -> Client | None:
    """``client_secret_basic``, where a malformed ``Authorization`` header (empty, not base64, not UTF-8) is a
    failed authentication, answered ``invalid_client``, rather than an exception."""
    try:
        return _authlib_secret_basic(query_client, request)
    except (ValueError, UnicodeDecodeError):
        return None


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)

    def get_audiences(self) -> list[str]:
        # RFC 7523 says the token endpoint's URL; RFC 7523bis and FAPI 2.0 the issuer, which most clients now send.
        provider = current_provider()
        return [
            provider.issuer,
            provider.url(paths.TOKEN),
            provider.url(paths.PUSHED_AUTHORIZATION_REQUEST),
            provider.url(paths.REVOCATION),
            provider.url(paths.INTROSPECTION),
        ]

    def resolve_client_public_key(self, client: Client) -> ClientKeyResolver:
        try:
            return current_provider().client_keys.resolver(client, client_profile(client).client_algorithms)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # Authlib's, with the algorithms of the client's profile (joserfc's default omits PS256) and our checks.
        resolver: ClientKeyResolver = resolve_key
        try:
            token = jwt.decode(assertion, resolver, algorithms=resolver.algorithms)
        except JoseError as error:
            log.debug("client assertion refused: %r", error)
            raise InvalidClientError(description=error.description or "The client assertion is not valid.") from None
        self.check_assertion(token.claims, resolver.client)
        return token.claims

    def verify_claims(self, claims: jwt.Claims) -> None:
        # Not reached (process_assertion_claims checks with the client in hand); kept as strict for any other caller.
        raise InvalidClientError(description="The client assertion cannot be checked without its client.")

    def check_assertion(self, claims: jwt.Claims, client: Client) -> None:
        """RFC 7523 section 3, with the profile's audience and lifetime rules and a single-use ``jti``."""
        profile = client_profile(client)
        registry = jwt.JWTClaimsRegistry(
            now=clock.timestamp,
            leeway=self.leeway,
            iss={"essential": True, "value": client.client_id},
            sub={"essential": True, "value": client.client_id},
            aud={"essential": True, "values": self.get_audiences()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from None
        if profile.assertion_audience_is_issuer and claims["aud"] != current_provider().issuer:
            raise InvalidClientError(description="The assertion's 'aud' must be the issuer identifier, as a string.")
        if claims["exp"] - clock.timestamp() > profile.assertion_lifetime:
            raise InvalidClientError(description=f"The assertion must expire within {profile.assertion_lifetime} s.")
        if not self.validate_jti(claims, claims["jti"]):
            raise InvalidClientError(description="The assertion was used before (its 'jti' is spent).")

    def validate_jti(self, claims: jwt.Claims, jti: str) -> bool:
        if len(str(jti)) > 256:
            return False
        ttl = max(int(claims["exp"]) - clock.timestamp(), 0) + self.leeway + 1
        key = f"client-assertion:{sha256_hex(str(claims['sub']))}:{sha256_hex(str(jti))}"
        return current_provider().store.add(key, {}, ttl)
