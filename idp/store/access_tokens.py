"""What an access token is checked against at userinfo and introspection: whether it was revoked (RFC 7009), and
its grant, which must still be active.

The database is the authority for both. A revocation is a row of ``revoked_access_tokens``, written in the
revoking request's transaction and kept until the token would have expired; the key-value store holds nothing
about it, so a Redis that loses everything (a restart without persistence, a flush) cannot bring a revoked token
back. In front of the database, a worker may remember what it read (idp.store.absences): that a token was revoked
(for the rest of its life: a revocation is never undone), that it was not, or that its grant is active (each for
up to :data:`MEMORY_SECONDS`). Every revocation, of a token or a grant, is announced when it commits, and every
worker forgets the key at once; the bound covers an announcement lost with Redis. Nothing is remembered without
a working subscription to those announcements, so after a Redis restart every worker asks the database again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.orm import joinedload
from sqlalchemy.sql.dml import Insert

from .. import clock
from ..extensions import db
from ..provider import current_provider
from ..security import sha256_hex
from . import read_outside_a_transaction
from .announcements import announce_at_commit
from .grants import grant_memory_key, is_grant_active
from .models import Grant, RevokedAccessToken
from .write_groups import DIALECT_INSERTS

#: How long a worker may remember an access token not revoked, or its grant active, instead of reading again.
#: Announcements make every worker forget at once; this bounds the time a worker whose subscription died unnoticed
#: (or that missed an announcement Redis could not send) could still say "active".
MEMORY_SECONDS = 5.0

_revoked = RevokedAccessToken.__table__
_IS_REVOKED = exists().where(_revoked.c.jti_hash == bindparam("jti_hash")).label("revoked")
#: The grant and whether the token was revoked, in one statement; with the grant's user for userinfo.
_GRANT_AND_REVOCATION = select(Grant, _IS_REVOKED).where(Grant.id == bindparam("grant_id"))
_GRANT_WITH_USER_AND_REVOCATION = _GRANT_AND_REVOCATION.options(joinedload(Grant.user))
_REVOCATION_ALONE = select(_IS_REVOKED)
_PRUNE = delete(_revoked).where(_revoked.c.expires_at <= bindparam("now", type_=_revoked.c.expires_at.type))


@dataclass(frozen=True)
class AccessTokenState:
    """What an access token is checked against, as the database has it (or a worker remembers it)."""

    #: Revoked itself, or its grant is no longer active: refused either way.
    revoked: bool
    #: The token's grant, read from the database with its user; None for a token without a grant (client
    #: credentials) and when the answer came from this worker's memory (``with_user=False`` only).
    grant: Grant | None = None


def revocation_memory_key(jti_hash: str) -> str:
    """The key under which a worker may remember whether the token was revoked, announced when it is."""
    return "revoked-access-token:" + jti_hash


def read_state(jti: str, grant_id: str | None, expires_at: int, *, with_user: bool) -> AccessTokenState | None:
    """The state of the access token ``jti`` of grant ``grant_id`` (None: it has none), which expires at
    ``expires_at`` (a timestamp); None when it names a grant that does not exist.

    ``with_user`` (userinfo): read from the database, the grant with its user, every time (the user's claims are
    not remembered). Otherwise (introspection) from this worker's memory when it has both facts, else read (one
    statement) and remembered.
    """
    jti_hash = sha256_hex(jti)
    if with_user:
        read = _read(jti_hash, grant_id, with_user=True)
        return None if read is None else _state(*read)
    store = current_provider().store
    revoked_key = revocation_memory_key(jti_hash)
    revoked, revoked_ticket = store.remembered(revoked_key)
    if revoked is True:
        return AccessTokenState(revoked=True)
    grant_key = grant_memory_key(grant_id) if grant_id is not None else None
    grant_ends, grant_ticket = store.remembered(grant_key) if grant_key is not None else (None, None)
    if revoked is False and (grant_key is None or grant_ends is not None):
        return AccessTokenState(revoked=grant_ends is not None and grant_ends <= clock.now())
    read = _read(jti_hash, grant_id, with_user=False)
    if read is None:
        return None
    token_revoked, grant = read
    if revoked_ticket is not None:
        # A revocation is never undone: remembered as long as the token lives.
        remember_for = max(expires_at - clock.timestamp(), 0) if token_revoked else MEMORY_SECONDS
        store.remember(revoked_key, token_revoked, revoked_ticket, remember_for)
    if grant is not None and grant_key is not None and grant_ticket is not None and is_grant_active(grant):
        store.remember(grant_key, grant.expires_at, grant_ticket, MEMORY_SECONDS)
    return _state(token_revoked, grant)


def _state(token_revoked: bool, grant: Grant | None) -> AccessTokenState:
    return AccessTokenState(revoked=token_revoked or (grant is not None and not is_grant_active(grant)), grant=grant)


def _read(jti_hash: str, grant_id: str | None, *, with_user: bool) -> tuple[bool, Grant | None] | None:
    """(whether the token was revoked, its grant) from the database; None when the grant does not exist. One
    statement, and the only one of a userinfo or introspection request: outside a transaction."""
    read_outside_a_transaction()
    if grant_id is None:
        return bool(db.session.scalar(_REVOCATION_ALONE, {"jti_hash": jti_hash})), None
    statement = _GRANT_WITH_USER_AND_REVOCATION if with_user else _GRANT_AND_REVOCATION
    row = db.session.execute(statement, {"grant_id": grant_id, "jti_hash": jti_hash}).first()
    if row is None:
        return None
    grant, revoked = row
    return bool(revoked), grant


def revoke_access_token(jti: str, expires_at: int) -> None:
    """Record that the access token ``jti`` (expiring at the timestamp ``expires_at``) is revoked, in the caller's
    transaction, and announce it when that commits. Rows of tokens that have expired since are pruned first (each
    statement whole by itself: the request may run outside a transaction, its read having been its first
    statement)."""
    now = clock.now()
    jti_hash = sha256_hex(jti)
    connection = db.session.connection()
    connection.execute(_PRUNE, {"now": now})
    connection.execute(
        _insert_unless_present(),
        {"jti_hash": jti_hash, "expires_at": dt.datetime.fromtimestamp(expires_at, dt.UTC), "revoked_at": now},
    )
    announce_at_commit([revocation_memory_key(jti_hash)])


def _insert_unless_present() -> Insert:
    """An insert of a revocation that does nothing if the token was revoked already (two concurrent revocations)."""
    insert = DIALECT_INSERTS[db.engine.dialect.name](_revoked)
    return insert.on_conflict_do_nothing(index_elements=[_revoked.c.jti_hash])
