"""Random values and hashes for secrets that must never be stored in clear."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random string with ``nbytes`` bytes of entropy (codes, refresh tokens, client secrets)."""
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    """Hash of a high-entropy secret for storage and lookup.

    A fast hash is right here: the input is 256 random bits, so there is nothing to brute-force, and a slow
    password hash on the token path would only cost every request.
    """
    return hashlib.sha256(value.encode()).hexdigest()


def keyed_hash(value: str, purpose: str) -> str:
    """HMAC-SHA256 under the server secret, for short secrets (one-time and recovery codes): a stolen copy of
    the database or store alone does not let anyone try every value."""
    key = current_app.extensions["idp"].config.server.secret_key.encode()
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()


def sealing_key(purpose: str) -> Fernet:
    """Authenticated encryption under a key derived (HKDF) from the server secret, one key per ``purpose``: for
    short secrets that must be read back (a TOTP seed, a CAPTCHA answer to draw), so a stolen copy of the
    database or store alone reveals none of them."""
    secret = current_app.extensions["idp"].config.server.secret_key.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def matches_hash(value: str, expected_hex: str | None) -> bool:
    if not expected_hex:
        return False
    return hmac.compare_digest(sha256_hex(value), expected_hex)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
