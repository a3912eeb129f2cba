"""Grants and their refresh tokens: each grant is one refresh-token family (OAuth 2.0 Security BCP 4.14)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import joinedload

from .. import clock
from ..extensions import db
from ..security import new_token, sha256_hex
from .models import Grant, RefreshToken

# The statements and loader options of the refresh path, built once: on every refresh, building them again cost
# about as much as running them. Core statements on the table, not ORM ones: nothing reads the rows back in the
# request, and the ORM's paths cost more than the statements themselves.
_refresh_tokens = RefreshToken.__table__
_INSERT_REFRESH_TOKEN = insert(_refresh_tokens)
_MARK_ROTATED = (
    update(_refresh_tokens)
    .where(_refresh_tokens.c.token_hash == bindparam("presented_hash"), _refresh_tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
_WITH_USER = [joinedload(Grant.user)]
_WITH_GRANT_AND_USER = [joinedload(RefreshToken.grant).joinedload(Grant.user)]


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
    return db.session.get(Grant, grant_id, options=_WITH_USER if with_user else None)


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
    # The grant it refers to may be new in this transaction: flushed first, as Core statements do not autoflush.
    if db.session.new:
        db.session.flush()
    db.session.connection().execute(
        _INSERT_REFRESH_TOKEN,
        {
            "token_hash": sha256_hex(token),
            "grant_id": grant.id,
            "issued_at": now,
            "expires_at": min(now + dt.timedelta(seconds=idle_ttl), grant.expires_at),
        },
    )
    return token


def find_refresh_token(token: str) -> RefreshToken | None:
    if not token or len(token) > 200:
        return None
    # With its grant (a joined relationship) and the grant's user, whom the refresh grant asks for next.
    return db.session.get(RefreshToken, sha256_hex(token), options=_WITH_GRANT_AND_USER)


def mark_rotated(refresh_token: RefreshToken) -> bool:
    """Mark the token used, atomically: of two concurrent uses exactly one gets True, the other is a replay."""
    result = db.session.connection().execute(
        _MARK_ROTATED, {"presented_hash": refresh_token.token_hash, "now": clock.now()}
    )
    return result.rowcount == 1
