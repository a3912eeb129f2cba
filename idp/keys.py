"""Signing keys: private keys as PEM files in ``keys.dir`` (mode 0600), metadata in the database.

Each algorithm has one ``active`` key, which signs. ``rotate`` makes a ``next`` key: published in the JWKS at
once, but used for signing only from its ``activated_at``, ``keys.publish_before_use`` seconds later, so a
relying party that caches the JWKS has the new key before it meets a token signed with it. From that moment
every instance signs with it (the switch is computed from the shared database and the clock, not from a message
between instances), and the previous key is only ``published``: still in the JWKS, so tokens it signed keep
verifying, until ``retire`` removes it and deletes its private key. The ``kid`` is the RFC 7638 thumbprint of
the public key.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key
from sqlalchemy import select

from . import clock
from .extensions import db
from .private_files import private_folder
from .store.models import SigningKey

ALGORITHMS = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
#: How many verified tokens a process remembers (a few MB at most); the memory is emptied when full.
VERIFIED_TOKENS_KEPT = 4096
log = logging.getLogger(__name__)


class KeyManagementError(RuntimeError):
    """A key operation cannot be done; the message says why and what to do."""


class NoSigningKey(KeyManagementError):
    """No active key for an algorithm: the provider cannot sign until ``idp keys generate`` runs."""


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    status: str
    key: RSAKey | ECKey
    #: Unix time from which the key signs (None: it never signs again).
    signs_from: int | None


def _new_private_key(alg: str) -> RSAKey | ECKey:
    if alg in ("RS256", "PS256"):  # one key per algorithm: a key is never used with two (RFC 7517 section 4.4)
        return RSAKey.generate_key(2048, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    raise KeyManagementError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def _signs_from(row: SigningKey) -> int | None:
    """Unix time from which the key of ``row`` signs; None for a key that never signs again."""
    if row.status in ("active", "next"):
        return int((row.activated_at or row.created_at).timestamp())
    return None


class KeyRing:
    """The provider's signing keys, cached in memory and re-read every ``reload_interval`` seconds, so
    a rotation done with the CLI reaches a running server without a restart."""

    def __init__(self, keys_dir: str | os.PathLike[str], reload_interval: int, publish_before_use: int = 0) -> None:
        self.keys_dir = Path(keys_dir)
        self.reload_interval = reload_interval
        self.publish_before_use = publish_before_use
        self._lock = threading.Lock()
        self._loaded_at = -1e18
        self._keys: list[LoadedKey] = []
        self._jwks: dict[str, Any] = {"keys": []}
        # The published keys, with the tokens they verified: one pair, replaced whole at each re-read, so a
        # token verified by a key that has since been retired is never taken from the memory.
        self._verifier: tuple[KeySet, dict[str, jwt.Token]] = (KeySet([]), {})

    # -- admin operations (CLI) -------------------------------------------------------------------

    def generate(self, alg: str) -> SigningKey | None:
        """Create an active key for ``alg`` unless one exists; returns it, or None when one existed.

        A first key signs at once: no relying party can have cached a JWKS without it."""
        self._protect_folder(required=False)
        self.settle()
        if self._active_row(alg) is not None or self._next_row(alg) is not None:
            return None
        return self._create(alg, status="active")

    def rotate(self, alg: str, at_once: bool = False) -> SigningKey:
        """A new key for ``alg``, published now and signing after ``publish_before_use`` seconds (or at once,
        when the old key must stop signing now, e.g. it leaked); the previous one stays published."""
        self.settle()
        delay = 0 if at_once else self.publish_before_use
        now = clock.now()
        pending = self._next_row(alg)
        if pending is not None:
            # A second rotation before the first took effect: the key waiting is withdrawn (it never signed).
            pending.status = "retired"
            pending.retired_at = now
            self._pem_path(pending.kid).unlink(missing_ok=True)
        if delay == 0:
            previous = self._active_row(alg)
            if previous is not None:
                previous.status = "published"
                previous.deactivated_at = now
            return self._create(alg, status="active")
        return self._create(alg, status="next", delay=delay)

    def settle(self) -> None:
        """Record in the database the switches that time has made: a ``next`` key whose time has come becomes
        ``active`` and the key it replaces ``published``. Signing never waits for this (it follows the clock);
        it keeps ``idp keys list`` truthful."""
        now = clock.now()
        due = db.session.scalars(
            select(SigningKey).where(SigningKey.status == "next", SigningKey.activated_at <= now)
        ).all()
        for row in due:
            previous = self._active_row(row.alg)
            if previous is not None:
                previous.status = "published"
                previous.deactivated_at = row.activated_at
            row.status = "active"
        if due:
            db.session.commit()
            self.invalidate()

    def retire(self, kid: str) -> SigningKey:
        self.settle()
        row = db.session.get(SigningKey, kid)
        if row is None:
            raise KeyManagementError(f"no key with kid {kid!r}; see `idp keys list`")
        if row.status in ("active", "next"):
            raise KeyManagementError(
                f"key {kid} is {row.status}; rotate first (`idp keys rotate --alg {row.alg}`) and retire it once "
                "the new key signs"
            )
        if row.status == "retired":
            raise KeyManagementError(f"key {kid} is already retired")
        row.status = "retired"
        row.retired_at = clock.now()
        db.session.commit()
        self._pem_path(kid).unlink(missing_ok=True)
        self.invalidate()
        return row

    def rows(self) -> list[SigningKey]:
        self.settle()
        return list(db.session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)))

    def _active_row(self, alg: str) -> SigningKey | None:
        return db.session.scalar(select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active"))

    def _next_row(self, alg: str) -> SigningKey | None:
        return db.session.scalar(select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "next"))

    def _create(self, alg: str, status: str, delay: int = 0) -> SigningKey:
        """A new key; with ``delay``, it signs that many seconds after it can first be published (the clock is
        read once the key exists and rounded up, so the wait is never shorter than asked)."""
        key = _new_private_key(alg)
        kid = key.thumbprint()
        self._protect_folder(required=True)
        path = self._pem_path(kid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.as_pem(private=True))
        created_at = clock.now()
        activated_at = created_at + dt.timedelta(seconds=delay + 1) if delay else created_at
        row = SigningKey(kid=kid, alg=alg, status=status, created_at=created_at, activated_at=activated_at)
        db.session.add(row)
        try:
            db.session.commit()
        except Exception:
            db.session.rollback()
            path.unlink(missing_ok=True)
            raise
        self.invalidate()
        return row

    def _protect_folder(self, required: bool) -> None:
        """Make ``keys.dir`` 0700, also when it exists with a looser mode. Only a key about to be written needs it;
        otherwise (a folder mounted read-only, owned by another user) a warning says what to fix."""
        try:
            private_folder(self.keys_dir)
        except OSError as error:
            message = f"keys.dir {self.keys_dir} cannot be made private (mode 0700): {error.strerror}"
            if required:
                raise KeyManagementError(message) from None
            log.warning(message)

    def _pem_path(self, kid: str) -> Path:
        return self.keys_dir / f"{kid}.pem"

    # -- use by the provider ----------------------------------------------------------------------

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -1e18

    @property
    def fresh(self) -> bool:
        """Whether the keys were read within ``reload_interval`` (using them then needs no database)."""
        return time.monotonic() - self._loaded_at < self.reload_interval

    def _ensure_loaded(self) -> None:
        if self.fresh:
            return
        if self._keys:
            # Keys are loaded: while one thread re-reads them, the others go on with these (read within the last
            # reload_interval) instead of waiting for it.
            if not self._lock.acquire(blocking=False):
                return
        else:
            self._lock.acquire()
        try:
            if not self.fresh:  # another thread may have re-read them while this one waited
                self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> None:
        """Re-read the keys' rows; a key already loaded with the same status and start keeps its parsed object.

        Parsing an RSA private key (with its consistency check) is slow, and it happens under the lock every request
        that signs or verifies waits on: at every re-read it would stall the token endpoints. A new key, or one
        whose row changed (rotated, published, retired), is read from its file again."""
        rows = db.session.scalars(
            select(SigningKey)
            .where(SigningKey.status.in_(("active", "next", "published")))
            .order_by(SigningKey.created_at)
        ).all()
        previous = {item.kid: item for item in self._keys}
        loaded = []
        for row in rows:
            known = previous.get(row.kid)
            if known is not None and known.status == row.status and known.signs_from == _signs_from(row):
                loaded.append(known)
                continue
            try:
                loaded.append(self._load(row))
            except KeyManagementError:
                if row.status == "active":
                    raise
                # A rotated key whose file has not reached this instance yet (or was removed): the others
                # still serve and sign; this one keeps signing with the current key.
                log.warning("signing key %s (%s) has no private key file here; not published", row.kid, row.status)
        # The keys that sign now first, then those waiting to sign, then the rotated-out ones: a relying party
        # that takes the first key of the right type takes the live one.
        now = clock.timestamp()
        signing = set()
        for alg in ALGORITHMS:
            due = [k for k in loaded if k.alg == alg and k.signs_from is not None and k.signs_from <= now]
            if due:
                signing.add(max(due, key=lambda k: k.signs_from or 0).kid)
        loaded.sort(key=lambda k: 0 if k.kid in signing else 1 if k.signs_from is not None else 2)
        public = []
        for item in loaded:
            jwk = item.key.as_dict(private=False)
            jwk.update({"kid": item.kid, "alg": item.alg, "use": "sig"})
            public.append(jwk)
        if public != self._jwks["keys"]:
            self._jwks = {"keys": public}
            # Replaced whole, with an empty memory of verified tokens: a token verified by a key since retired is
            # never taken from it.
            self._verifier = (KeySet([import_key(j, ALGORITHMS[j["alg"]]) for j in public]), {})
        self._keys = loaded
        self._loaded_at = time.monotonic()

    def _load(self, row: SigningKey) -> LoadedKey:
        path = self._pem_path(row.kid)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyManagementError(f"private key file {path} of key {row.kid} is missing") from None
        key = import_key(pem, ALGORITHMS[row.alg])
        return LoadedKey(kid=row.kid, alg=row.alg, status=row.status, key=key, signs_from=_signs_from(row))

    def signing_key(self, alg: str) -> LoadedKey:
        """The key that signs now: of the active and next keys, the latest whose time has come."""
        self._ensure_loaded()
        now = clock.timestamp()
        best: LoadedKey | None = None
        for item in self._keys:
            due = item.alg == alg and item.signs_from is not None and item.signs_from <= now
            if due and (best is None or item.signs_from > best.signs_from):  # type: ignore[operator]
                best = item
        if best is None:
            raise NoSigningKey(f"no active {alg} signing key; run `idp keys generate`")
        return best

    def jwks(self) -> dict[str, Any]:
        """The public JWK set: active and published keys."""
        self._ensure_loaded()
        return self._jwks

    def verification_keys(self) -> KeySet:
        self._ensure_loaded()
        return self._verifier[0]

    def decode_jwt(self, token: str) -> jwt.Token:
        """The JWT, verified with the published keys (raises joserfc's errors when it is not ours).

        A token verified once is remembered until the published keys change: resource servers introspect the
        same access token again and again, and an ES256 verification is about a sixth of such an answer. Only
        verification is remembered: callers check expiry and revocation on every use, and must not change the
        token's claims, which later callers share."""
        self._ensure_loaded()
        key_set, verified = self._verifier
        known = verified.get(token)
        if known is not None:
            return known
        decoded = jwt.decode(token, key_set, algorithms=list(ALGORITHMS))
        if len(verified) >= VERIFIED_TOKENS_KEPT:
            verified.clear()
        verified[token] = decoded
        return decoded
