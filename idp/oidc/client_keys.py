"""Clients' public keys: the JWK set a client registered (``jwks``) or publishes (``jwks_uri``).

They verify what a client signs: its ``private_key_jwt`` assertions (idp.oidc.client_auth) and its request objects
(idp.oidc.request_object). A published set is fetched with a timeout and a size limit, kept for
:data:`JWKS_CACHE_SECONDS`, and fetched again when a JWT names a key it lacks (the client rotated its keys), but
not more often than every :data:`MIN_REFETCH_SECONDS`, so unknown ``kid`` values cannot make us flood a client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Collection
from typing import Any

from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import Key, KeySet

from ..store.models import Client

log = logging.getLogger(__name__)

JWKS_CACHE_SECONDS = 300
MIN_REFETCH_SECONDS = 10
JWKS_FETCH_TIMEOUT = 5
JWKS_MAX_BYTES = 256 * 1024


class ClientKeysUnavailable(JoseError):
    """The client has no keys, or its ``jwks_uri`` could not be read (a JoseError: what the client signed cannot
    be verified, and whoever verifies it answers as for a bad signature)."""

    error = "client_keys_unavailable"


class ClientKeyResolver:
    """joserfc's key argument for a JWT from ``client``: picks the key its header names (refetching the client's
    ``jwks_uri`` once when that key is unknown). ``algorithms`` are the ones the client's profile accepts."""

    def __init__(self, keys: ClientKeys, client: Client, algorithms: Collection[str]) -> None:
        self.keys = keys
        self.client = client
        self.algorithms = list(algorithms)

    def __call__(self, token: Any) -> Key:
        header = token.headers()
        parameters: Any = {"alg": header["alg"], "use": "sig"}
        kid = header.get("kid")
        try:
            return self.keys.key_set(self.client).get_by_kid(kid, parameters)
        except InvalidKeyIdError:
            if not self.client.jwks_uri or not self.keys.may_refetch(self.client.jwks_uri):
                raise
        return self.keys.key_set(self.client, refetch=True).get_by_kid(kid, parameters)


class ClientKeys:
    """The process's copies of clients' published key sets (registered sets are read from the client)."""

    def __init__(self) -> None:
        self._published: dict[str, tuple[float, KeySet]] = {}
        #: When each set was last fetched again for an unknown kid.
        self._fetched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def resolver(self, client: Client, algorithms: Collection[str]) -> ClientKeyResolver:
        if not client.jwks and not client.jwks_uri:
            raise ClientKeysUnavailable("The client has no registered keys.")
        return ClientKeyResolver(self, client, algorithms)

    def key_set(self, client: Client, refetch: bool = False) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(client.jwks)
        if not client.jwks_uri:
            raise ClientKeysUnavailable("The client has no registered keys.")
        uri = client.jwks_uri
        now = time.monotonic()
        with self._lock:
            cached = self._published.get(uri)
        if cached is not None and cached[0] > now and not refetch:
            return cached[1]
        key_set = self._fetch(uri)
        with self._lock:
            if len(self._published) > 10_000:  # a bound, whatever happens; clients number in the hundreds
                self._published.clear()
                self._fetched_at.clear()
            self._published[uri] = (now + JWKS_CACHE_SECONDS, key_set)
        return key_set

    def may_refetch(self, uri: str) -> bool:
        """Whether the set at ``uri`` may be fetched again now for an unknown ``kid`` (and if so, count this as the
        fetch): once per :data:`MIN_REFETCH_SECONDS`, whatever the kids asked for."""
        now = time.monotonic()
        with self._lock:
            if now - self._fetched_at.get(uri, -1e18) < MIN_REFETCH_SECONDS:
                return False
            self._fetched_at[uri] = now
            return True

    def _fetch(self, uri: str) -> KeySet:
        try:
            # The URL was checked at registration (https, or http on a loopback host).
            with urllib.request.urlopen(uri, timeout=JWKS_FETCH_TIMEOUT) as response:  # noqa: S310
                data: Any = json.loads(response.read(JWKS_MAX_BYTES))
            return KeySet.import_key_set(data)
        except (OSError, ValueError, JoseError, TypeError, KeyError) as error:
            log.warning("could not fetch the client's jwks_uri %s: %s", uri, error.__class__.__name__)
            raise ClientKeysUnavailable("The client's jwks_uri could not be read.") from None
