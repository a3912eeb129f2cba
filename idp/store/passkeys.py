"""Passkeys: the WebAuthn credentials of each account (public keys and counters, no secret)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..extensions import db
from .models import Passkey


class CredentialTaken(ValueError):
    """The credential id is registered already (to this account or another)."""


def passkeys_of(user_id: str) -> list[Passkey]:
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)))


def has_passkeys(user_id: str) -> bool:
    return bool(db.session.scalar(select(exists().where(Passkey.user_id == user_id))))


def find_passkey(credential_id: str) -> Passkey | None:
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


def get_passkey_of(user_id: str, passkey_id: int) -> Passkey | None:
    return db.session.scalar(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id))


def add_passkey(
    *,
    user_id: str,
    credential_id: str,
    public_key: bytes,
    sign_count: int,
    name: str,
    backup_eligible: bool,
    backed_up: bool,
    transports: list[str],
    aaguid: str | None,
) -> Passkey:
    """Add and commit a passkey. Raises :class:`CredentialTaken` when the id is registered already: the unique
    index decides, so two accounts registering one id at the same moment cannot both win."""
    passkey = Passkey(
        user_id=user_id,
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        name=name,
        backup_eligible=backup_eligible,
        backed_up=backed_up,
        transports=transports,
        aaguid=aaguid,
        created_at=clock.now(),
    )
    db.session.add(passkey)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise CredentialTaken(credential_id) from None
    return passkey


def record_use(passkey: Passkey, new_sign_count: int, backed_up: bool, at: dt.datetime) -> bool:
    """Move the signature counter forward and note the use (not committed). False when the counter did not
    go forward (WebAuthn section 6.1.1): a sign that the authenticator was cloned. A counter that stays at 0
    is an authenticator that keeps none (most synced passkeys), and is accepted.

    One conditional UPDATE, so of two requests presenting the same counter only one can pass.
    """
    counter_moves = Passkey.sign_count < new_sign_count if new_sign_count > 0 else Passkey.sign_count == 0
    result = db.session.execute(
        update(Passkey)
        .where(Passkey.id == passkey.id, counter_moves)
        .values(sign_count=new_sign_count, backed_up=backed_up, last_used_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(passkey)
    return result.rowcount == 1


def remove_passkey(passkey: Passkey) -> None:
    """Remove the passkey (not committed)."""
    db.session.execute(delete(Passkey).where(Passkey.id == passkey.id))
    db.session.expire_all()
