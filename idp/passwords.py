"""Password hashing with Argon2id (RFC 9106), with the parameters OWASP recommends: m=19 MiB, t=2, p=1."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
T = TypeVar("T")

# Every Argon2 computation of a process runs on one thread of its own, one at a time. Each needs a 19 MiB block:
# on one thread, that block comes back from the same heap every time (idp.cli.serve keeps it mapped there) instead
# of once per request thread, and workers number the cores, so a second computation at once in a worker would
# finish no sooner; it would only hold 19 MiB more.
_argon2_thread: ThreadPoolExecutor | None = None
_argon2_thread_lock = threading.Lock()


def _on_argon2_thread(work: Callable[..., T], *args: str) -> T:
    global _argon2_thread
    if _argon2_thread is None:
        with _argon2_thread_lock:
            if _argon2_thread is None:
                _argon2_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
    return _argon2_thread.submit(work, *args).result()


def _forget_argon2_thread() -> None:
    # A forked child (a gunicorn worker) has no copy of the parent's thread: it starts its own on first use.
    global _argon2_thread, _argon2_thread_lock
    _argon2_thread, _argon2_thread_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_argon2_thread)

# Verified against when the national code is unknown, so both failures cost the same time.
_DUMMY_HASH = HASHER.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _on_argon2_thread(HASHER.hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown account (``None``) still spends one verification."""
    try:
        return _on_argon2_thread(HASHER.verify, password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)
