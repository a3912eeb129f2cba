"""Grants and their refresh tokens: each grant is one refresh-token family (OAuth 2.0 Security BCP 4.14)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import joinedload

from .. import clock
from ..extensions import db
from ..security import new_token, sha256_hex
from .announcements import announce_at_commit
from .disclosures import LEDGER, Release
from .models import AuditEvent, Grant, RefreshToken
from .write_groups import WriteGroup

_grants, _refresh_tokens, _audit_events = Grant.__table__, RefreshToken.__table__, AuditEvent.__table__

#: A new grant (the code exchange), with its first refresh token, its token.issued audit row and the ledger's
#: record of what its ID token released.
_NEW_GRANT = WriteGroup(
    insert(_grants).values({column.key: bindparam(column.key, type_=column.type) for column in _grants.c}),
    _refresh_tokens,
    _audit_events,
    LEDGER,
)
#: A refresh token's rotation: marked rotated only if no use did so before (the condition decides between
#: concurrent uses), with its successor, the token.issued audit row and the ledger's record of the new ID token.
_ROTATION = WriteGroup(
    update(_refresh_tokens)
    .where(_refresh_tokens.c.token_hash == bindparam("presented_hash"), _refresh_tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now", type_=_refresh_tokens.c.rotated_at.type)),
    _refresh_tokens,
    _audit_events,
    LEDGER,
)
#: A refresh token used again rather than rotated: its idle expiry moved on, with the token.issued audit row and
#: the ledger's record of the new ID token.
_EXTENSION = WriteGroup(
    update(_refresh_tokens)
    .where(_refresh_tokens.c.token_hash == bindparam("presented_hash"))
    .values(expires_at=bindparam("expires_at", type_=_refresh_tokens.c.expires_at.type)),
    _audit_events,
    LEDGER,
)
_REVOKE_GRANT = (
    update(_grants)
    .where(_grants.c.id == bindparam("grant_id"), _grants.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
)
#: A refresh token with its grant and the grant's user: what the refresh grant checks and answers with.
_FIND_REFRESH_TOKEN = (
    select(RefreshToken)
    .options(joinedload(RefreshToken.grant).joinedload(Grant.user))
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)


def new_grant(
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
    dpop_jkt: str | None = None,
    resources: list[str] | None = None,
) -> Grant:
    """A new grant, not yet written: :func:`write_new_grant` writes it with its first refresh token. ``dpop_jkt``
    binds its refresh tokens to a DPoP key; ``resources`` are the resource servers it covers."""
    now = clock.now()
    return Grant(
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
        dpop_jkt=dpop_jkt,
        resources=resources,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
        revoked_at=None,
        revoked_reason=None,
    )


def write_new_grant(
    grant: Grant,
    first_refresh_token: NewRefreshToken | None,
    audit_row: dict[str, Any],
    release: Release | None,
) -> None:
    """Write a grant made by :func:`new_grant`, its first refresh token (if any), the audit row and the ledger's
    record of ``release`` (what its ID token released, if one was issued), all or nothing, in the caller's
    transaction."""
    values = {column.key: getattr(grant, column.key) for column in _grants.c}
    refresh_token_row = first_refresh_token.row() if first_refresh_token is not None else None
    ledger_row = _ledger_row(release, grant)
    if not _NEW_GRANT.run(db.session.connection(), values, refresh_token_row, audit_row, ledger_row):
        raise RuntimeError("the new grant was not written")  # cannot happen: an insert without conditions


def _ledger_row(release: Release | None, grant: Grant) -> dict[str, Any] | None:
    if release is None or grant.user_id is None:
        return None
    return release.row(grant.user_id, grant.session_id, clock.now())


def is_grant_active(grant: Grant | None, now: dt.datetime | None = None) -> bool:
    return grant is not None and grant.revoked_at is None and grant.expires_at > (now or clock.now())


def find_grant_by_code_hash(code_hash: str) -> Grant | None:
    return db.session.scalar(select(Grant).where(Grant.code_hash == code_hash))


def revoke_grant(grant: Grant, reason: str) -> bool:
    """Revoke the grant and with it every token issued under it. True when it was active."""
    if grant.revoked_at is not None:
        return False
    grant.revoked_at = clock.now()
    grant.revoked_reason = reason
    announce_at_commit([grant_memory_key(grant.id)])
    return True


def revoke_session_grants(session_id: str, reason: str) -> int:
    return _revoke_where(Grant.session_id == session_id, reason=reason)


def revoke_user_grants(user_id: str, reason: str, keep_session_id: str | None = None) -> int:
    """Revoke every grant of the user (all their refresh tokens), except those made in ``keep_session_id``."""
    conditions = [Grant.user_id == user_id]
    if keep_session_id is not None:
        conditions.append((Grant.session_id != keep_session_id) | Grant.session_id.is_(None))
    return _revoke_where(*conditions, reason=reason)


def revoke_client_grants(user_id: str, client_id: str, reason: str) -> int:
    """Revoke what one client holds for one user ("revoke" on the connected apps page)."""
    return _revoke_where(Grant.user_id == user_id, Grant.client_id == client_id, reason=reason)


def _revoke_where(*conditions: Any, reason: str) -> int:
    """Revoke the active grants that meet ``conditions``; how many."""
    revoked = db.session.scalars(
        update(Grant)
        .where(*conditions, Grant.revoked_at.is_(None))
        .values(revoked_at=clock.now(), revoked_reason=reason)
        .returning(Grant.id)
    ).all()
    announce_at_commit([grant_memory_key(grant_id) for grant_id in revoked])
    return len(revoked)


def revoke_grant_by_id(grant_id: str, reason: str) -> bool:
    """Revoke the grant in one statement; True for the one caller that found it active (of concurrent ones)."""
    result = db.session.connection().execute(
        _REVOKE_GRANT, {"grant_id": grant_id, "now": clock.now(), "reason": reason}
    )
    if result.rowcount != 1:
        return False
    announce_at_commit([grant_memory_key(grant_id)])
    return True


def grant_memory_key(grant_id: str) -> str:
    """The key under which a worker may remember the grant active (idp.store.access_tokens), announced when it is
    revoked."""
    return "grant:" + grant_id


@dataclass(frozen=True)
class NewRefreshToken:
    """A refresh token made but not yet written: the token itself (for the answer) and its row."""

    token: str
    grant_id: str
    issued_at: dt.datetime
    expires_at: dt.datetime

    @property
    def token_hash(self) -> str:
        return sha256_hex(self.token)

    def row(self) -> dict[str, Any]:
        return {
            "token_hash": self.token_hash,
            "grant_id": self.grant_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }


def new_refresh_token(grant: Grant, idle_ttl: int) -> NewRefreshToken:
    """A new refresh token in ``grant``'s family; it never outlives the family's absolute end."""
    now = clock.now()
    expires_at = min(now + dt.timedelta(seconds=idle_ttl), grant.expires_at)
    return NewRefreshToken(token=new_token(32), grant_id=grant.id, issued_at=now, expires_at=expires_at)


def extend_refresh_token(row: RefreshToken, idle_ttl: int, audit_row: dict[str, Any], release: Release | None) -> bool:
    """Move the idle expiry of a refresh token that is used again rather than rotated (a FAPI 2.0 client's), never
    past its family's end, and write the ``token.issued`` audit row and the ledger's record of ``release``, all or
    nothing, in the caller's transaction. False, writing nothing, when the token is gone (its account deleted)."""
    expires_at = min(clock.now() + dt.timedelta(seconds=idle_ttl), row.grant.expires_at)
    first = {"presented_hash": row.token_hash, "expires_at": expires_at}
    return _EXTENSION.run(db.session.connection(), first, audit_row, _ledger_row(release, row.grant))


def find_refresh_token(token: str) -> RefreshToken | None:
    """The refresh token, with its grant and the grant's user (one statement), or None."""
    if not token or len(token) > 200:
        return None  # cannot be one of ours
    return db.session.scalar(_FIND_REFRESH_TOKEN, {"token_hash": sha256_hex(token)})


def rotate_refresh_token(
    presented: RefreshToken, successor: NewRefreshToken, audit_row: dict[str, Any], release: Release | None
) -> bool:
    """Mark ``presented`` rotated and write its ``successor``, the ``token.issued`` audit row and the ledger's
    record of ``release`` (what the new ID token released, if one was issued), all or nothing, in the caller's
    transaction. False, writing nothing, when another use of the token rotated it since it was read (on PostgreSQL
    this waits for that use's transaction: of concurrent uses exactly one rotates the token)."""
    first = {"presented_hash": presented.token_hash, "now": clock.now()}
    return _ROTATION.run(
        db.session.connection(), first, successor.row(), audit_row, _ledger_row(release, presented.grant)
    )
