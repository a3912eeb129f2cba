"""Grants and their refresh tokens: each grant is one refresh-token family (OAuth 2.0 Security BCP 4.14)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import joinedload

from .. import clock
from ..extensions import db
from ..security import new_token, sha256_hex
from .models import Grant, RefreshToken


def create_grant(
    *,
    client_id: str,
    user_id: str | None,
    session_id: str | None,
    scope: str,
    claims_request: dict[str, Any] | None,
    auth_time: dt.datetime | None,
    acr: str | None,
    amr: list[str] | None,
    code_hash: str | None,
    lifetime: int,
) -> Grant:
    now = clock.now()
    grant = Grant(
        id=new_token(24),
        client_id=client_id,
        user_id=user_id,
        session_id=session_id,
        scope=scope,
        claims_request=claims_request,
        auth_time=auth_time,
        acr=acr,
        amr=amr,
        code_hash=code_hash,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
    )
    db.session.add(grant)
    return grant


def get_grant(grant_id: str, *, with_user: bool = False) -> Grant | None:
    """The grant; ``with_user`` loads its user in the same query (a later ``get_user`` then needs none)."""
    return db.session.get(Grant, grant_id, options=[joinedload(Grant.user)] if with_user else None)


def is_grant_active(grant: Grant | None) -> bool:
    return grant is not None and grant.revoked_at is None and grant.expires_at > clock.now()


def find_grant_by_code_hash(code_hash: str) -> Grant | None:
    return db.session.scalar(select(Grant).where(Grant.code_hash == code_hash))


def revoke_grant(grant: Grant, reason: str) -> bool:
    """Revoke the grant and with it every token issued under it. True when it was active."""
    if grant.revoked_at is not None:
        return False
    grant.revoked_at = clock.now()
    grant.revoked_reason = reason
    return True


def revoke_session_grants(session_id: str, reason: str) -> int:
    result = db.session.execute(
        update(Grant)
        .where(Grant.session_id == session_id, Grant.revoked_at.is_(None))
        .values(revoked_at=clock.now(), revoked_reason=reason)
    )
    return result.rowcount or 0


def revoke_user_grants(user_id: str, reason: str, keep_session_id: str | None = None) -> int:
    """Revoke every grant of the user (all their refresh tokens), except those made in ``keep_session_id``."""
    query = update(Grant).where(Grant.user_id == user_id, Grant.revoked_at.is_(None))
    if keep_session_id is not None:
        query = query.where((Grant.session_id != keep_session_id) | Grant.session_id.is_(None))
    result = db.session.execute(query.values(revoked_at=clock.now(), revoked_reason=reason))
    return result.rowcount or 0


def revoke_client_grants(user_id: str, client_id: str, reason: str) -> int:
    """Revoke what one client holds for one user ("revoke" on the connected apps page)."""
    result = db.session.execute(
        update(Grant)
        .where(Grant.user_id == user_id, Grant.client_id == client_id, Grant.revoked_at.is_(None))
        .values(revoked_at=clock.now(), revoked_reason=reason)
    )
    return result.rowcount or 0


def issue_refresh_token(grant: Grant, idle_ttl: int) -> str:
    """A new refresh token in ``grant``'s family; it never outlives the family's absolute end."""
    token = new_token(32)
    now = clock.now()
    # A plain INSERT on the table, not an object for the unit of work nor an ORM statement: nothing reads the
    # row back in this request, and either ORM path cost more than the statement. The grant it refers to may be
    # new in this transaction: flushed first, as Core statements do not autoflush.
    if db.session.new:
        db.session.flush()
    db.session.execute(
        insert(RefreshToken.__table__).values(
            token_hash=sha256_hex(token),
            grant_id=grant.id,
            issued_at=now,
            expires_at=min(now + dt.timedelta(seconds=idle_ttl), grant.expires_at),
        )
    )
    return token


def find_refresh_token(token: str) -> RefreshToken | None:
    if not token or len(token) > 200:
        return None
    # With its grant (a joined relationship) and the grant's user, whom the refresh grant asks for next.
    return db.session.get(
        RefreshToken, sha256_hex(token), options=[joinedload(RefreshToken.grant).joinedload(Grant.user)]
    )


def mark_rotated(refresh_token: RefreshToken) -> bool:
    """Mark the token used, atomically: of two concurrent uses exactly one gets True, the other is a replay."""
    table = RefreshToken.__table__  # a Core UPDATE: the ORM's bulk-update path costs more than the statement
    result = db.session.execute(
        update(table)
        .where(table.c.token_hash == refresh_token.token_hash, table.c.rotated_at.is_(None))
        .values(rotated_at=clock.now())
    )
    return result.rowcount == 1
