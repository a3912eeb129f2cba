"""A second factor with an authenticator app (TOTP, RFC 6238, via pyotp), backed by single-use recovery codes.

The seed is encrypted at rest with a key derived from ``server.secret_key`` (HKDF), since it must be read
back to check codes. A code is accepted once: the last accepted time step is remembered. Recovery codes are
random, shown once, and stored only as HMACs under the server secret.

Both are spent by one conditional UPDATE that only one request can win (the row count decides), never by a
read and a later write, so the same code sent from several sessions at once passes once. The row stays locked
until the caller commits, which it does at once.
"""

from __future__ import annotations

import base64
import io
import secrets

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from . import clock
from .extensions import db
from .security import keyed_hash, sealing_key
from .store.models import RecoveryCode, User

ISSUER_NAME = "Hoviyat"
RECOVERY_CODE_COUNT = 10


def _fernet() -> Fernet:
    return sealing_key("hoviyat totp seeds")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account_name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=ISSUER_NAME)


def qr_data_uri(uri: str) -> str:
    """The provisioning URI as a QR code, an SVG in a ``data:`` URI for an ``<img>`` (no file, no script)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (30 s) that ``code`` is valid for, allowing one step of clock drift either way."""
    code = code.strip().replace(" ", "")
    if not code.isascii() or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = clock.timestamp()
    for drift in (0, -1, 1):
        at = now + drift * totp.interval
        if secrets.compare_digest(totp.at(at), code):
            return int(at // totp.interval)
    return None


def enable(user: User, secret: str, code: str) -> list[str] | None:
    """Turn TOTP on when ``code`` proves the app has ``secret``; returns the new recovery codes (not committed)."""
    step = _matching_step(secret, code)
    if step is None:
        return None
    user.totp_secret_encrypted = _fernet().encrypt(secret.encode()).decode()
    user.totp_enabled_at = clock.now()
    user.totp_last_step = step
    return replace_recovery_codes(user)


def disable(user: User) -> None:
    user.totp_secret_encrypted = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    for row in db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.session.delete(row)


def verify(user: User, code: str) -> bool:
    """True when ``code`` is the user's current TOTP code and was not used before: its time step is spent (not
    committed; the caller commits at once)."""
    if not user.has_totp:
        return False
    try:
        secret = _fernet().decrypt(user.totp_secret_encrypted.encode()).decode()  # type: ignore[union-attr]
    except InvalidToken:
        return False  # server.secret_key changed since enrolment: the user must enrol again
    step = _matching_step(secret, code)
    return step is not None and _spend_step(user, step)


def _spend_step(user: User, step: int) -> bool:
    """Record ``step`` as the last one used unless it, or a later one, was used already; True for the one request
    that moved it."""
    result = db.session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(user, "totp_last_step", step)  # what the row now holds
    return True


def _normalize_recovery(code: str) -> str:
    return code.strip().replace("-", "").replace(" ", "").lower()


def replace_recovery_codes(user: User) -> list[str]:
    """New recovery codes for ``user`` (the old ones stop working); returned once, stored hashed."""
    for row in db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.session.delete(row)
    codes = []
    now = clock.now()
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(5)).decode().lower()  # 8 characters, 40 bits
        codes.append(f"{raw[:4]}-{raw[4:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=keyed_hash(raw, "recovery-code"), created_at=now))
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """Spend one recovery code (not committed; the caller commits at once); False when it is wrong or was used."""
    digest = keyed_hash(_normalize_recovery(code), "recovery-code")
    code_id = db.session.scalar(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == digest, RecoveryCode.used_at.is_(None)
        )
    )
    if code_id is None:
        return False
    result = db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == code_id, RecoveryCode.used_at.is_(None))
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def remaining_recovery_codes(user: User) -> int:
    rows = db.session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )
    return len(list(rows))
