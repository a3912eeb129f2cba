"""Signing keys: private keys as PEM files in ``keys.dir`` (mode 0600), metadata in the database.

Each algorithm has at most one ``active`` key, which signs. ``rotate`` makes a new active key and leaves the
old one ``published``: still in the JWKS, so tokens it signed keep verifying, until ``retire`` removes it and
deletes its private key. The ``kid`` is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey, import_key
from sqlalchemy import select

from . import clock
from .extensions import db
from .store.models import SigningKey

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}


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


def _new_private_key(alg: str) -> RSAKey | ECKey:
    if alg == "RS256":
        return RSAKey.generate_key(2048, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    raise KeyManagementError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


class KeyRing:
    """The provider's signing keys, cached in memory and re-read every ``reload_interval`` seconds, so
    a rotation done with the CLI reaches a running server without a restart."""

    def __init__(self, keys_dir: str | os.PathLike[str], reload_interval: int) -> None:
        self.keys_dir = Path(keys_dir)
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._loaded_at = -1e18
        self._keys: list[LoadedKey] = []
        self._jwks: dict[str, Any] = {"keys": []}
        self._key_set = KeySet([])

    # -- admin operations (CLI) -------------------------------------------------------------------

    def generate(self, alg: str) -> SigningKey | None:
        """Create an active key for ``alg`` unless one exists; returns it, or None when one existed."""
        if self._active_row(alg) is not None:
            return None
        return self._create(alg, status="active")

    def rotate(self, alg: str) -> SigningKey:
        """A new active key for ``alg``; the previous one stays published for verification."""
        previous = self._active_row(alg)
        if previous is not None:
            previous.status = "published"
            previous.deactivated_at = clock.now()
        return self._create(alg, status="active")

    def retire(self, kid: str) -> SigningKey:
        row = db.session.get(SigningKey, kid)
        if row is None:
            raise KeyManagementError(f"no key with kid {kid!r}; see `idp keys list`")
        if row.status == "active":
            raise KeyManagementError(f"key {kid} is active; rotate first (`idp keys rotate --alg {row.alg}`)")
        if row.status == "retired":
            raise KeyManagementError(f"key {kid} is already retired")
        row.status = "retired"
        row.retired_at = clock.now()
        db.session.commit()
        self._pem_path(kid).unlink(missing_ok=True)
        self.invalidate()
        return row

    def rows(self) -> list[SigningKey]:
        return list(db.session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)))

    def _active_row(self, alg: str) -> SigningKey | None:
        return db.session.scalar(select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active"))

    def _create(self, alg: str, status: str) -> SigningKey:
        key = _new_private_key(alg)
        kid = key.thumbprint()
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._pem_path(kid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.as_pem(private=True))
        now = clock.now()
        row = SigningKey(kid=kid, alg=alg, status=status, created_at=now, activated_at=now)
        db.session.add(row)
        try:
            db.session.commit()
        except Exception:
            db.session.rollback()
            path.unlink(missing_ok=True)
            raise
        self.invalidate()
        return row

    def _pem_path(self, kid: str) -> Path:
        return self.keys_dir / f"{kid}.pem"

    # -- use by the provider ----------------------------------------------------------------------

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -1e18

    def _ensure_loaded(self) -> None:
        if time.monotonic() - self._loaded_at < self.reload_interval:
            return
        with self._lock:
            if time.monotonic() - self._loaded_at < self.reload_interval:
                return
            rows = db.session.scalars(
                select(SigningKey).where(SigningKey.status.in_(("active", "published"))).order_by(SigningKey.created_at)
            ).all()
            loaded = [self._load(row) for row in rows]
            # Active keys first: a relying party that picks the first key of the right type picks a live one.
            loaded.sort(key=lambda k: k.status != "active")
            self._keys = loaded
            public = []
            for item in loaded:
                jwk = item.key.as_dict(private=False)
                jwk.update({"kid": item.kid, "alg": item.alg, "use": "sig"})
                public.append(jwk)
            self._jwks = {"keys": public}
            self._key_set = KeySet([import_key(j, ALGORITHMS[j["alg"]]) for j in public])
            self._loaded_at = time.monotonic()

    def _load(self, row: SigningKey) -> LoadedKey:
        path = self._pem_path(row.kid)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyManagementError(f"private key file {path} of key {row.kid} is missing") from None
        key = import_key(pem, ALGORITHMS[row.alg])
        return LoadedKey(kid=row.kid, alg=row.alg, status=row.status, key=key)

    def signing_key(self, alg: str) -> LoadedKey:
        self._ensure_loaded()
        for item in self._keys:
            if item.alg == alg and item.status == "active":
                return item
        raise NoSigningKey(f"no active {alg} signing key; run `idp keys generate`")

    def jwks(self) -> dict[str, Any]:
        """The public JWK set: active and published keys."""
        self._ensure_loaded()
        return self._jwks

    def verification_keys(self) -> KeySet:
        self._ensure_loaded()
        return self._key_set
