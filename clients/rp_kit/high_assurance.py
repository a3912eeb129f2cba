"""Logging in with Hoviyat under the FAPI 2.0 Security Profile: how a relying party that handles money does it.

Hoviyat registers such a site with ``idp clients create --profile fapi2 --jwks FILE`` (README, "High assurance
(FAPI 2.0)"). Compared with the plain code flow of :mod:`clients.rp_kit.login`:

- **Its own keys** (:func:`generate_keys`): one signs its client assertions (``private_key_jwt``, RFC 7523, with
  the issuer as the only audience), and its public half is what it registered; another is its DPoP key.
- **Pushed authorization requests** (RFC 9126): the authorization request (PKCE S256, ``state``, ``nonce``,
  scopes) goes straight to ``pushed_authorization_request_endpoint``; the browser carries only ``client_id``
  and the ``request_uri`` it got back, so nobody can read or change the request on its way.
- **DPoP** (RFC 9449): every call to the token endpoint, the PAR endpoint and userinfo carries a proof signed with
  the DPoP key, so the tokens Hoviyat issues are bound to that key (``token_type: DPoP``) and worthless to
  whoever copies them. A ``use_dpop_nonce`` answer is retried once with the nonce it gives.
- The callback checks ``state`` and ``iss`` (RFC 9207) as before; the ID token is verified by Authlib (signature
  against the JWKS, issuer, audience, expiry, nonce, ``at_hash``), and must be PS256 or ES256.
- Refresh tokens are not rotated (FAPI 2.0): a refresh returns the same one, which stays valid.

Authlib has no client for PAR or DPoP, so those requests are made here with ``requests`` and joserfc; Authlib
signs the client assertions and verifies the ID token.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import JWSRegistry

#: FAPI 2.0 Security Profile section 5.4.1.
ALGORITHMS = ("PS256", "ES256")
TIMEOUT = 10


class HighAssuranceError(Exception):
    """Hoviyat refused a request, or answered something that must not be trusted; ``error`` is the code."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


def generate_keys(path: Path) -> dict[str, Any]:
    """Make the site's two ES256 keys into ``path`` (JSON, mode 0600: it holds private keys) and return the
    public JWK set to register (the client-assertion key only; the DPoP key is shown in each proof)."""
    client_key = ECKey.generate_key("P-256", private=True)
    dpop_key = ECKey.generate_key("P-256", private=True)
    kid = client_key.thumbprint()
    private = {
        "client_assertion": client_key.as_dict(private=True) | {"kid": kid, "alg": "ES256", "use": "sig"},
        "dpop": dpop_key.as_dict(private=True) | {"alg": "ES256"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(private, handle)
    return public_jwks(private)


def public_jwks(private: dict[str, Any]) -> dict[str, Any]:
    key = ECKey.import_key(private["client_assertion"])
    public = key.as_dict(private=False) | {k: private["client_assertion"][k] for k in ("kid", "alg", "use")}
    return {"keys": [public]}


@dataclass(frozen=True)
class PendingLogin:
    """What the site keeps (in its session) between sending the browser away and the callback."""

    state: str
    nonce: str
    code_verifier: str


class HighAssuranceClient:
    """Hoviyat's FAPI 2.0 endpoints for one site: PAR, the token endpoint and userinfo, with DPoP."""

    def __init__(self, issuer: str, client_id: str, keys_file: str | Path) -> None:
        self.issuer = issuer
        self.client_id = client_id
        private = json.loads(Path(keys_file).read_text(encoding="utf-8"))
        self.client_key = ECKey.import_key(private["client_assertion"])
        self.client_kid = private["client_assertion"]["kid"]
        self.dpop_key = ECKey.import_key(private["dpop"])
        self.dpop_public = self.dpop_key.as_dict(private=False)
        self.http = requests.Session()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        #: The nonce Hoviyat gave last (RFC 9449 section 8), put in the next proofs.
        self._nonce: str | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            response = self.http.get(self.issuer + "/.well-known/openid-configuration", timeout=TIMEOUT)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    # -- the login ----------------------------------------------------------------------------------------------

    def start_login(self, redirect_uri: str, scope: str, **extra: str) -> tuple[str, PendingLogin]:
        """Push the authorization request; the URL to send the browser to, and what to keep until it returns."""
        pending = PendingLogin(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
            **extra,
        }
        answer = self._post(self.metadata["pushed_authorization_request_endpoint"], params, expect=201)
        query = urlencode({"client_id": self.client_id, "request_uri": answer["request_uri"]})
        return f"{self.metadata['authorization_endpoint']}?{query}", pending

    def finish_login(self, pending: PendingLogin, code: str, redirect_uri: str) -> dict[str, Any]:
        """Exchange the code (the caller checked ``state`` and ``iss``); the tokens, with the ID token's verified
        claims under ``userinfo``."""
        tokens = self._post(
            self.metadata["token_endpoint"],
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": pending.code_verifier,
            },
        )
        if tokens.get("token_type") != "DPoP":
            # RFC 9449 section 5: without a DPoP-bound token the protection is gone; do not go on.
            raise HighAssuranceError("invalid_token", "the access token is not DPoP-bound")
        tokens["userinfo"] = self.verify_id_token(tokens, pending.nonce)
        return tokens

    def verify_id_token(self, tokens: dict[str, Any], nonce: str | None) -> dict[str, Any]:
        """The ID token's claims, checked as Authlib's clients check them (OpenID Connect Core section 3.1.3.7)."""
        registry = JWSRegistry(algorithms=list(ALGORITHMS))
        try:
            try:
                token = jwt.decode(tokens["id_token"], self._jwks(), registry=registry)
            except InvalidKeyIdError:  # a key Hoviyat made after we fetched its JWKS
                token = jwt.decode(tokens["id_token"], self._jwks(refresh=True), registry=registry)
            claims = CodeIDToken(
                token.claims,
                token.header,
                {"iss": {"values": [self.issuer]}},
                {"nonce": nonce, "client_id": self.client_id, "access_token": tokens["access_token"]},
            )
            claims.validate(leeway=120)
        except JoseError as error:
            raise HighAssuranceError("invalid_id_token", error.description or error.error) from None
        return dict(claims)

    def _jwks(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            response = self.http.get(self.metadata["jwks_uri"], timeout=TIMEOUT)
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        return self._keys

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        return self._post(
            self.metadata["token_endpoint"], {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    def userinfo(self, access_token: str) -> dict[str, Any]:
        url = self.metadata["userinfo_endpoint"]
        for _ in range(2):
            headers = {"Authorization": f"DPoP {access_token}", "DPoP": self._proof("GET", url, access_token)}
            response = self.http.get(url, headers=headers, timeout=TIMEOUT)
            if not self._nonce_asked(response):
                break
        if response.status_code != 200:
            raise HighAssuranceError("invalid_token", response.headers.get("WWW-Authenticate", ""))
        return response.json()

    # -- requests with a client assertion and a DPoP proof --------------------------------------------------------

    def _post(self, url: str, data: dict[str, str], expect: int = 200) -> dict[str, Any]:
        for _ in range(2):
            body = {
                **data,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self._client_assertion(),
            }
            response = self.http.post(url, data=body, headers={"DPoP": self._proof("POST", url)}, timeout=TIMEOUT)
            if not self._nonce_asked(response):
                break
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != expect:
            raise HighAssuranceError(
                answer.get("error", f"http_{response.status_code}"), answer.get("error_description", "")
            )
        return answer

    def _client_assertion(self) -> str:
        # FAPI 2.0 section 5.3.2.1: the issuer, as a string, is the audience; a minute is enough.
        return private_key_jwt_sign(
            self.client_key, self.client_id, self.issuer, alg="ES256", header={"kid": self.client_kid}, expires_in=60
        )

    def _proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = _b64encode(hashlib.sha256(access_token.encode()).digest())
        if self._nonce:
            claims["nonce"] = self._nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.dpop_public}
        return jwt.encode(header, claims, self.dpop_key, algorithms=["ES256"])

    def _nonce_asked(self, response: requests.Response) -> bool:
        """Remember a nonce Hoviyat gives; True when it refused the request for want of it (retry once)."""
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self._nonce = nonce
        if response.status_code == 400:
            asked = (response.json() if response.content else {}).get("error") == "use_dpop_nonce"
        else:
            asked = response.status_code == 401 and 'error="use_dpop_nonce"' in response.headers.get(
                "WWW-Authenticate", ""
            )
        return asked and bool(nonce)


def _b64encode(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
