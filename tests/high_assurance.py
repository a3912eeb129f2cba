"""Test helpers for the high-assurance features: DPoP proofs (RFC 9449), client assertions for private_key_jwt,
signed request objects (RFC 9101), pushed authorization requests (RFC 9126) and FAPI 2.0 clients."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from idp import clock
from idp.security import b64url

from .helpers import REDIRECT_URI, Browser, ClientInfo, UserInfo, create_test_client, pkce_pair, query_of

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def new_key(alg: str) -> ECKey | RSAKey:
    return ECKey.generate_key("P-256", private=True) if alg == "ES256" else RSAKey.generate_key(2048, private=True)


_rsa_keys: list[RSAKey] = []


def rsa_key() -> RSAKey:
    """An RSA key, made once per run (RSA generation is slow)."""
    if not _rsa_keys:
        _rsa_keys.append(RSAKey.generate_key(2048, private=True))
    return _rsa_keys[0]


class DPoPKey:
    """A client's DPoP key pair, making proofs (RFC 9449 section 4.2)."""

    def __init__(self, alg: str = "ES256", key: ECKey | RSAKey | None = None) -> None:
        self.alg = alg
        self.key = key or (new_key(alg) if alg == "ES256" else rsa_key())
        self.jwk = self.key.as_dict(private=False)
        self.jkt = self.key.thumbprint()

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: int | None = None,
        jti: str | None = None,
        typ: str = "dpop+jwt",
        jwk: dict[str, Any] | None = None,
        omit: tuple[str, ...] = (),
    ) -> str:
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": clock.timestamp() if iat is None else iat,
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        for name in omit:
            claims.pop(name)
        header = {"typ": typ, "alg": self.alg, "jwk": jwk or self.jwk}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


@dataclass
class ClientKeys:
    """A private_key_jwt client's key pair: its public JWK set for registration, and its assertions."""

    alg: str = "ES256"
    key: Any = None
    kid: str = field(default_factory=lambda: "rp-" + secrets.token_hex(4))

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = new_key(self.alg) if self.alg == "ES256" else rsa_key()

    @property
    def public_jwks(self) -> dict[str, Any]:
        jwk = self.key.as_dict(private=False) | {"kid": self.kid, "alg": self.alg, "use": "sig"}
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any], alg: str | None = None, kid: str | None = None, key: Any = None) -> str:
        alg = alg or self.alg
        return jwt.encode({"alg": alg, "kid": kid or self.kid}, claims, key or self.key, algorithms=[alg])

    def assertion(self, client_id: str, aud: Any, *, lifetime: int = 60, **changes: Any) -> str:
        now = clock.timestamp()
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(changes)
        return self.sign(claims)

    def auth(self, client_id: str, aud: Any, **changes: Any) -> dict[str, str]:
        return {"client_assertion_type": JWT_BEARER, "client_assertion": self.assertion(client_id, aud, **changes)}

    def request_object(self, for_client: str, issuer: str, params: dict[str, Any], /, **changes: Any) -> str:
        now = clock.timestamp()
        claims: dict[str, Any] = {
            "iss": for_client,
            "aud": issuer,
            "client_id": for_client,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
            **params,
        }
        claims.update(changes)
        for name in [name for name, value in claims.items() if value is None]:
            claims.pop(name)
        return self.sign(claims)


def fapi_client(app: Flask, keys: ClientKeys | None = None, **changes: Any) -> tuple[ClientInfo, ClientKeys]:
    """A client registered with the FAPI 2.0 profile (PAR, private_key_jwt, DPoP)."""
    keys = keys or ClientKeys()
    values: dict[str, Any] = {
        "profile": "fapi2",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": keys.public_jwks,
    }
    values.update(changes)
    return create_test_client(app, **values), keys


def authorization_request(rp: ClientInfo, challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri or REDIRECT_URI,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def push(
    client: FlaskClient,
    issuer: str,
    rp: ClientInfo,
    keys: ClientKeys | None,
    params: dict[str, str],
    dpop_key: DPoPKey | None = None,
) -> Any:
    """POST a pushed authorization request, authenticated as the client is registered."""
    data = dict(params)
    auth = None
    if keys is not None:
        data.update(keys.auth(rp.client_id, issuer))
    elif rp.client_secret:
        auth = (rp.client_id, rp.client_secret)
    headers = {}
    if dpop_key is not None:
        headers["DPoP"] = dpop_key.proof("POST", issuer + "/par")
    return client.post("/par", data=data, auth=auth, headers=headers)


def code_by_pushed_request(
    browser: Browser, issuer: str, rp: ClientInfo, user: UserInfo, request_uri: str, state: str
) -> str:
    """Send the browser with only client_id and request_uri; log in and consent; the code it comes back with."""
    response = browser.authorize({"client_id": rp.client_id, "request_uri": request_uri})
    if response.status_code == 200 and b'name="national_code"' in response.data:
        response = browser.login(response, user)
    if response.status_code == 200 and b'name="decision"' in response.data:
        response = browser.consent(response)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    query = query_of(response.location)
    assert query.get("state") == state and query.get("iss") == issuer, query
    return query["code"]


@dataclass
class FapiLogin:
    """What a FAPI 2.0 client holds after a login: its tokens and the keys it proves."""

    rp: ClientInfo
    keys: ClientKeys
    dpop_key: DPoPKey
    tokens: dict[str, Any]


def fapi_login(app: Flask, client: FlaskClient, issuer: str, user: UserInfo, **registration: Any) -> FapiLogin:
    """A whole FAPI 2.0 login: PAR with a DPoP proof, the browser, the token request with private_key_jwt and
    DPoP."""
    rp, keys = fapi_client(app, **registration)
    dpop_key = DPoPKey()
    verifier, challenge = pkce_pair()
    params = authorization_request(rp, challenge)
    pushed = push(client, issuer, rp, keys, params, dpop_key)
    assert pushed.status_code == 201, pushed.get_data(as_text=True)
    code = code_by_pushed_request(
        Browser(app.test_client(), issuer), issuer, rp, user, pushed.get_json()["request_uri"], params["state"]
    )
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
        **keys.auth(rp.client_id, issuer),
    }
    response = client.post("/token", data=data, headers={"DPoP": dpop_key.proof("POST", issuer + "/token")})
    assert response.status_code == 200, response.get_data(as_text=True)
    return FapiLogin(rp, keys, dpop_key, response.get_json())
