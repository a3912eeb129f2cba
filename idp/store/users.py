"""Users: identity-verified accounts, one per national code."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from .. import clock
from ..extensions import db
from .models import User


class DuplicateNationalCode(ValueError):
    """An account with this national code exists already."""


def get_user(user_id: str) -> User | None:
    return db.session.get(User, user_id)


def find_user_by_national_code(national_code: str) -> User | None:
    return db.session.scalar(select(User).where(User.national_code == national_code))


def create_user(
    *,
    national_code: str,
    mobile: str,
    birthdate: dt.date,
    given_name: str,
    family_name: str,
    password_hash: str,
    identity_evidence: list[dict[str, Any]],
    email: str | None = None,
) -> User:
    """Add an identity-verified account (not committed). The caller has checked every field."""
    if find_user_by_national_code(national_code) is not None:
        raise DuplicateNationalCode(national_code)
    now = clock.now()
    user = User(
        id=uuid.uuid4().hex,
        national_code=national_code,
        mobile=mobile,
        birthdate=birthdate,
        given_name=given_name,
        family_name=family_name,
        email=email,
        email_verified=False,
        password_hash=password_hash,
        identity_verified_at=now,
        identity_evidence=identity_evidence,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    return user


def set_password_hash(user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    user.updated_at = clock.now()
