"""Password hashing with Argon2id (RFC 9106), with the parameters OWASP recommends: m=19 MiB, t=2, p=1."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# At most two Argon2 computations at once in a process. Each holds 19 MiB while it runs, and workers number the
# cores, so more at once would finish no sooner; they would only keep more memory (see idp.cli.serve).
_CONCURRENT_HASHES = threading.BoundedSemaphore(2)

# Verified against when the national code is unknown, so both failures cost the same time.
_DUMMY_HASH = HASHER.hash("not-a-real-password")


def hash_password(password: str) -> str:
    with _CONCURRENT_HASHES:
        return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown account (``None``) still spends one verification."""
    try:
        with _CONCURRENT_HASHES:
            return HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)
