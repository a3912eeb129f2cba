"""DPoP: OAuth 2.0 Demonstrating Proof of Possession (RFC 9449).

A client signs, for each request, a short JWT (the proof, in the ``DPoP`` header) with a key of its own, and
puts the public key in the proof's header. At the token endpoint the access token is bound to that key
(``cnf.jkt``, ``token_type: DPoP``); a public client's refresh tokens are bound to it too (section 5), and a code
asked for with ``dpop_jkt`` (or pushed with a proof) can only be exchanged with it (section 10). Userinfo then
wants the token with ``Authorization: DPoP`` and a fresh proof of the same key over that request and token
(section 7); a bound token sent as a bearer token is refused (section 7.2). Introspection reports ``cnf``.

Each proof works once: its ``jti`` is spent in the key-value store, so a copy replayed to any instance is refused
(section 11.1). With ``oauth.dpop_require_nonce`` each proof must also carry a nonce this server gave in a
``DPoP-Nonce`` header (section 8): it is an HMAC of the time window under ``server.secret_key``, so every instance
makes and accepts the same ones without sharing anything but the configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Error
from flask import Response, g
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key
from joserfc.jws import JWSRegistry

from .. import clock
from ..provider import current_provider
from ..security import b64url, sha256_hex
from ..store.models import Client, RefreshToken
from .errors import quoted
from .fapi import client_profile

#: What proofs may be signed with (section 4.2: asymmetric only); a FAPI 2.0 client's must be PS256 or ES256.
ALGORITHMS = ("ES256", "PS256", "RS256")
HEADER = "DPoP"
NONCE_HEADER = "DPoP-Nonce"
#: Proofs dated up to this far in the future are accepted, for clocks that run ahead (FAPI 2.0 section 5.3.2.1).
FUTURE_LEEWAY = 10
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256
_JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPES = {"ES256": "EC", "PS256": "RSA", "RS256": "RSA"}
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class ProofRegistry(JWSRegistry):
    """joserfc's JWS rules for proofs: their header carries the public key, which for RSA is past the 512 bytes
    joserfc allows a header by default."""

    max_header_length = 4096


#: One registry per algorithm: the proof's own ``alg`` is the only one its verification allows.
#: Other header parameters are allowed (section 4.2: "MAY contain other JOSE Header Parameters").
_REGISTRIES = {alg: ProofRegistry(algorithms=[alg], strict_check_header=False) for alg in ALGORITHMS}


class InvalidDPoPProofError(OAuth2Error):
    """Section 5 and 7.1: the proof is missing where required, malformed, or fails a check of section 4.3."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonceError(OAuth2Error):
    """Section 8: the proof must carry the nonce given in this answer's ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"
    status_code = 400

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), (NONCE_HEADER, current_nonce())]


@dataclass(frozen=True)
class Proof:
    """A checked DPoP proof: the thumbprint of its key (RFC 7638), its algorithm and its claims."""

    jkt: str
    alg: str
    claims: dict[str, Any]

    @property
    def confirmation(self) -> dict[str, str]:
        """The ``cnf`` claim of a token bound to this proof's key (section 6.1)."""
        return {"jkt": self.jkt}


# -- checking a proof (section 4.3) -----------------------------------------------------------------------


class _ProofKeys:
    """The public keys of recent proofs, parsed once: a client sends the same key with every proof, and importing
    it (and computing its thumbprint) would otherwise cost about as much as verifying the signature."""

    def __init__(self, size: int = 4096) -> None:
        self._keys: dict[str, tuple[Key, str]] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, jwk: dict[str, Any]) -> tuple[Key, str]:
        text = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
        known = self._keys.get(text)
        if known is not None:
            return known
        key = import_key(jwk)
        parsed = (key, key.thumbprint())
        with self._lock:
            if len(self._keys) >= self._size:
                self._keys.clear()
            self._keys[text] = parsed
        return parsed


_proof_keys = _ProofKeys()


def verify_proof(
    values: list[str],
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    algorithms: Collection[str] = ALGORITHMS,
) -> Proof:
    """The proof in the ``DPoP`` header ``values`` of a ``method`` request to ``url``, checked as section 4.3 asks
    (with ``ath`` when it comes with ``access_token``); raises :class:`InvalidDPoPProofError` or
    :class:`UseDPoPNonceError`. Its ``jti`` is spent last, once everything else is right."""
    if len(values) != 1:
        raise InvalidDPoPProofError("Send exactly one DPoP header.")
    value = values[0]
    if not value or len(value) > MAX_PROOF_LENGTH or value.count(".") != 2:
        raise InvalidDPoPProofError("The DPoP proof is not a compact JWT.")
    header = _unverified_header(value)
    alg = header.get("alg")
    if header.get("typ") != "dpop+jwt":
        raise InvalidDPoPProofError("The DPoP proof's typ must be dpop+jwt.")
    if alg not in algorithms:
        raise InvalidDPoPProofError(f"The DPoP proof must be signed with one of {', '.join(algorithms)}.")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _JWK_PRIVATE_MEMBERS & set(jwk) or jwk.get("kty") != _KEY_TYPES[alg]:
        raise InvalidDPoPProofError("The DPoP proof's jwk must be a public key of the type its alg uses.")
    try:
        key, jkt = _proof_keys.get(jwk)
        token = jwt.decode(value, key, registry=_REGISTRIES[alg])
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDPoPProofError("The DPoP proof's signature does not verify with its jwk.") from None
    claims = dict(token.claims)
    _check_claims(claims, method, url, access_token)
    _check_nonce(claims)
    ttl = current_provider().config.oauth.dpop_proof_max_age + FUTURE_LEEWAY + 1
    if not current_provider().store.add(f"dpop-proof:{sha256_hex(jkt + ':' + claims['jti'])}", {}, ttl):
        raise InvalidDPoPProofError("This DPoP proof was used before: make a new one for each request.")
    return Proof(jkt=jkt, alg=alg, claims=claims)


def _unverified_header(value: str) -> dict[str, Any]:
    segment = value.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise InvalidDPoPProofError("The DPoP proof's header is not JSON.") from None
    if not isinstance(header, dict):
        raise InvalidDPoPProofError("The DPoP proof's header is not a JSON object.")
    return header


def _check_claims(claims: dict[str, Any], method: str, url: str, access_token: str | None) -> None:
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise InvalidDPoPProofError("The DPoP proof needs a jti (a unique string).")
    if claims.get("htm") != method:
        raise InvalidDPoPProofError(f"The DPoP proof's htm must be {method}.")
    if not isinstance(claims.get("htu"), str) or _normalised(claims["htu"]) != _normalised(url):
        raise InvalidDPoPProofError(f"The DPoP proof's htu must be {quoted(url)}.")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise InvalidDPoPProofError("The DPoP proof needs an iat (a NumericDate).")
    now = clock.timestamp()
    if iat > now + FUTURE_LEEWAY:
        raise InvalidDPoPProofError("The DPoP proof's iat is in the future.")
    if iat < now - current_provider().config.oauth.dpop_proof_max_age:
        raise InvalidDPoPProofError("The DPoP proof is too old: make a new one for each request.")
    if access_token is not None:
        expected = b64url(hashlib.sha256(access_token.encode()).digest())
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, expected):
            raise InvalidDPoPProofError("The DPoP proof's ath must be the hash of the access token it comes with.")


def _normalised(url: str) -> tuple[str, str, str]:
    """RFC 3986 sections 6.2.2 and 6.2.3 (as section 4.3 asks): scheme and host in lower case, no default port,
    an empty path as "/", query and fragment ignored."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", "", "\x00")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and (scheme, port) not in {("http", 80), ("https", 443)}:
        host = f"{host}:{port}"
    return scheme, host, urlunsplit(("", "", parts.path or "/", "", ""))


# -- server-provided nonces (section 8) ----------------------------------------------------------------------


def _nonce_for(window: int) -> str:
    secret = current_provider().config.server.secret_key.encode()
    mac = hmac.new(secret, f"dpop-nonce\x00{window}".encode(), hashlib.sha256).digest()[:18]
    return f"{window:x}.{b64url(mac)}"


def _window() -> int:
    return clock.timestamp() // current_provider().config.oauth.dpop_proof_max_age


def current_nonce() -> str:
    """The nonce clients should put in their next proofs; it is accepted for one to two proof lifetimes."""
    return _nonce_for(_window())


def _check_nonce(claims: dict[str, Any]) -> None:
    if not current_provider().config.oauth.dpop_require_nonce:
        return
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise UseDPoPNonceError("This server requires a nonce in DPoP proofs: use the one in DPoP-Nonce.")
    window = _window()
    if not any(hmac.compare_digest(nonce, _nonce_for(w)) for w in (window, window - 1)):
        raise UseDPoPNonceError("The DPoP proof's nonce is not a current one: use the one in DPoP-Nonce.")


def with_nonce(response: Response) -> Response:
    """Give the next nonce to a client that sent a proof, when nonces are required (section 8.2)."""
    if current_provider().config.oauth.dpop_require_nonce and HEADER in flask_request.headers:
        response.headers[NONCE_HEADER] = current_nonce()
        response.headers["Cache-Control"] = "no-store"
    return response


# -- at the token and pushed authorization request endpoints ------------------------------------------------


def check_request_proof() -> Proof | None:
    """Check this request's proof, if it has one, and keep it for the answer; None without a ``DPoP`` header.

    The proof is checked before the client authenticates, as the request arrived; whether the client must send
    one is :func:`check_client_sent_proof`'s question."""
    values = flask_request.headers.getlist(HEADER)
    proof = verify_proof(values, flask_request.method, current_provider().url(flask_request.path)) if values else None
    g.dpop_proof = proof
    return proof


def request_proof() -> Proof | None:
    """The proof :func:`check_request_proof` accepted for this request, if any."""
    return g.get("dpop_proof")


def check_client_sent_proof(client: Client, required: bool = True) -> None:
    """Section 5.2: a client registered ``--dpop-bound`` (or FAPI 2.0) sends a proof with every token request
    (``required``: this is one), signed with an algorithm its profile allows."""
    profile, proof = client_profile(client), request_proof()
    if proof is None and required and profile.requires_dpop:
        raise InvalidDPoPProofError("This client must send a DPoP proof with every token request.")
    if proof is not None and proof.alg not in profile.client_algorithms:
        allowed = " or ".join(profile.client_algorithms)
        raise InvalidDPoPProofError(f"This client's DPoP proofs must be signed with {allowed}.")


def refresh_token_binding(client: Client) -> str | None:
    """The key a new grant's refresh tokens are bound to: a public client's proof key (section 5); a confidential
    client's refresh tokens are bound to its authentication instead."""
    proof = request_proof()
    return proof.jkt if proof is not None and client.is_public else None


def check_refresh_token_binding(client: Client, presented: RefreshToken) -> None:
    """A public client's refresh token bound to a key is used only with a proof of that key (section 5); checked
    before the token is used, so a stolen token presented without the key spends nothing."""
    bound = presented.grant.dpop_jkt if client.is_public else None
    if bound is None:
        return
    proof = request_proof()
    if proof is None:
        raise InvalidDPoPProofError("This refresh token is bound to a DPoP key: send a proof of it.")
    if not hmac.compare_digest(proof.jkt, bound):
        raise InvalidGrantError("This refresh token is bound to another DPoP key.")


def check_pushed_key(dpop_jkt: str | None) -> str | None:
    """Section 10.1: the ``dpop_jkt`` of a pushed request, from its parameter or its proof (which must agree)."""
    proof = request_proof()
    if dpop_jkt is not None:
        check_thumbprint(dpop_jkt)
    if proof is None:
        return dpop_jkt
    if dpop_jkt is not None and not hmac.compare_digest(dpop_jkt, proof.jkt):
        raise InvalidDPoPProofError("The dpop_jkt parameter is not the thumbprint of the DPoP proof's key.")
    return proof.jkt


def check_thumbprint(dpop_jkt: str) -> None:
    """Section 10: ``dpop_jkt`` is a base64url SHA-256 JWK thumbprint (43 characters)."""
    if len(dpop_jkt) != 43 or not set(dpop_jkt) <= _BASE64URL:
        raise InvalidRequestError("The 'dpop_jkt' parameter must be a base64url SHA-256 JWK thumbprint.")


class CodeBinding:
    """The code grant's extension for section 10: a code asked for with ``dpop_jkt`` (or pushed with a proof) is
    exchanged only with a proof of that key."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_token_request", self.check_code_binding)

    def check_code_binding(self, grant: Any, result: Any = None) -> None:
        bound = getattr(grant.request.authorization_code, "dpop_jkt", None)
        if bound is None:
            return
        proof = request_proof()
        if proof is None:
            raise InvalidGrantError("This code is bound to a DPoP key: send a proof of it.")
        if not hmac.compare_digest(proof.jkt, bound):
            raise InvalidGrantError("This code is bound to another DPoP key.")


# -- at protected resources (section 7) ------------------------------------------------------------------------


def bound_key(claims: dict[str, Any]) -> str | None:
    """The thumbprint an access token's claims bind it to, or None for a bearer token."""
    confirmation = claims.get("cnf")
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    return jkt if isinstance(jkt, str) else None


def verify_resource_proof(access_token: str, bound: str) -> Proof:
    """The proof that comes with ``access_token`` (bound to ``bound``) at this protected resource, checked with
    its ``ath``, and of the bound key; raises :class:`DPoPChallenge`."""
    values = flask_request.headers.getlist(HEADER)
    if not values:
        raise DPoPChallenge("invalid_dpop_proof", "A DPoP proof must come with a DPoP-bound access token.")
    url = current_provider().url(flask_request.path)
    try:
        proof = verify_proof(values, flask_request.method, url, access_token=access_token)
    except UseDPoPNonceError as error:
        raise DPoPChallenge("use_dpop_nonce", error.description or "", nonce=True) from None
    except InvalidDPoPProofError as error:
        raise DPoPChallenge("invalid_dpop_proof", error.description or "") from None
    if not hmac.compare_digest(proof.jkt, bound):
        raise DPoPChallenge("invalid_token", "Invalid DPoP key binding: the proof is signed by another key.")
    return proof


class DPoPChallenge(OAuth2Error):
    """A protected resource's refusal under the ``DPoP`` scheme (section 7.1): 401 with ``WWW-Authenticate: DPoP``
    naming the error and the algorithms accepted (and a ``DPoP-Nonce`` for ``use_dpop_nonce``, section 9)."""

    status_code = 401

    def __init__(self, error: str, description: str, nonce: bool = False) -> None:
        super().__init__(description)
        self.error = error
        self.nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        headers = [*super().get_headers(), ("WWW-Authenticate", dpop_challenge(self.error, self.description or ""))]
        if self.nonce:
            headers.append((NONCE_HEADER, current_nonce()))
        return headers


def dpop_challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value for the ``DPoP`` scheme (section 7.1)."""
    parts = []
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{description}"')
    parts.append(f'algs="{" ".join(ALGORITHMS)}"')
    return "DPoP " + ", ".join(parts)
