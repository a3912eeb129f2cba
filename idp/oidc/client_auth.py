"""``private_key_jwt`` client authentication (OpenID Connect Core section 9, RFC 7523 section 2.2).

The client signs a short-lived JWT with its private key; we verify it with the public keys it registered
(``jwks``) or publishes (``jwks_uri``, fetched with a timeout and cached). Each assertion is single-use.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic as _authlib_secret_basic
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .. import clock
from ..provider import current_provider
from ..security import sha256_hex
from ..store.models import Client
from . import paths

log = logging.getLogger(__name__)

#: An assertion may be valid for at most this long; it bounds how long used ``jti`` values are kept.
#: One hour, because that is what common client libraries (Authlib among them) sign by default.
MAX_ASSERTION_LIFETIME = 3600
JWKS_CACHE_SECONDS = 300
JWKS_FETCH_TIMEOUT = 5


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
        super().__init__(validate_jti=True, leeway=30)
        self._jwks_cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def get_audiences(self) -> list[str]:
        # RFC 7523 says the token endpoint's URL; many clients send the issuer, which RFC 7523bis prefers.
        provider = current_provider()
        return [
            provider.issuer,
            provider.url(paths.TOKEN),
            provider.url(paths.REVOCATION),
            provider.url(paths.INTROSPECTION),
        ]

    def verify_claims(self, claims: jwt.Claims) -> None:
        super().verify_claims(claims)
        if claims["exp"] - clock.timestamp() > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description=f"The assertion must expire within {MAX_ASSERTION_LIFETIME} s.")

    def validate_jti(self, claims: jwt.Claims, jti: str) -> bool:
        ttl = max(int(claims["exp"]) - clock.timestamp(), 0) + self.leeway + 1
        key = f"client-assertion:{sha256_hex(str(claims['sub']))}:{sha256_hex(str(jti))}"
        return current_provider().store.add(key, {}, ttl)

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(client.jwks)
        if client.jwks_uri:
            return self._fetch_jwks(client.jwks_uri)
        raise InvalidClientError(description="The client has no registered keys.")

    def _fetch_jwks(self, uri: str) -> KeySet:
        now = time.monotonic()
        with self._lock:
            cached = self._jwks_cache.get(uri)
        if cached and cached[0] > now:
            return cached[1]
        try:
            with urllib.request.urlopen(uri, timeout=JWKS_FETCH_TIMEOUT) as response:  # noqa: S310 - https URL checked at registration
                data: Any = json.loads(response.read(256 * 1024))
            key_set = KeySet.import_key_set(data)
        except (OSError, ValueError, JoseError, TypeError, KeyError) as error:
            log.warning("could not fetch the client's jwks_uri %s: %s", uri, error.__class__.__name__)
            raise InvalidClientError(description="The client's jwks_uri could not be read.") from None
        with self._lock:
            self._jwks_cache[uri] = (now + JWKS_CACHE_SECONDS, key_set)
        return key_set
