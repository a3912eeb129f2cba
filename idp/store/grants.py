"""Grants and their refresh tokens: each grant is one refresh-token family (OAuth 2.0 Security BCP 4.14)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.util import scope_to_list
from flask import has_app_context
from sqlalchemy import Text, bindparam, delete, event, func, insert, inspect, literal_column, null, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from .. import clock
from ..extensions import db
from ..security import new_token, sha256_hex
from . import direct
from .kv import StoreUnavailable
from .models import AuditEvent, Grant, RefreshToken, User

log = logging.getLogger(__name__)

# The statements and loader options of the refresh path and the code exchange, built once: on every refresh,
# building them again cost about as much as running them. Core statements on the table, not ORM ones: nothing
# reads the rows back in the request, and the ORM's paths cost more than the statements themselves.
_refresh_tokens = RefreshToken.__table__
_audit_events = AuditEvent.__table__
_INSERT_REFRESH_TOKEN = insert(_refresh_tokens)
_INSERT_AUDIT_EVENT = insert(_audit_events)
_INSERT_GRANT = insert(Grant.__table__)
_MARK_ROTATED = (
    update(_refresh_tokens)
    .where(_refresh_tokens.c.token_hash == bindparam("presented_hash"), _refresh_tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
_REVOKE_GRANT = (
    update(Grant.__table__)
    .where(Grant.__table__.c.id == bindparam("grant_id"), Grant.__table__.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
)
_grants, _users = Grant.__table__, User.__table__
#: The refresh path's read: the token, its grant and the grant's user in one row (claim_refresh_token's; on
#: PostgreSQL the main SELECT of its one statement).
_READ_REFRESH_TOKEN = (
    select(_refresh_tokens, _grants, _users)
    .select_from(
        _refresh_tokens.join(_grants, _refresh_tokens.c.grant_id == _grants.c.id).outerjoin(
            _users, _grants.c.user_id == _users.c.id
        )
    )
    .where(_refresh_tokens.c.token_hash == bindparam("token_hash"))
)


def _attribute_names(model: type) -> tuple[str, ...]:
    """The model's attribute for each column of its table, in the table's order."""
    return tuple(inspect(model).get_property_by_column(column).key for column in model.__table__.c)


#: Each model of that row with its attribute names; and of the rows of an access token's grant (_READ_GRANT...).
_READ_MODELS = tuple((model, _attribute_names(model)) for model in (RefreshToken, Grant, User))
_GRANT_MODEL, _GRANT_AND_USER_MODELS = _READ_MODELS[1:2], _READ_MODELS[1:]
#: An access token's grant, with or without its user (find_grant_of_access_token).
_READ_GRANT = direct.DirectStatement(select(_grants).where(_grants.c.id == bindparam("grant_id")))
_READ_GRANT_WITH_USER = direct.DirectStatement(
    select(_grants, _users)
    .select_from(_grants.outerjoin(_users, _grants.c.user_id == _users.c.id))
    .where(_grants.c.id == bindparam("grant_id"))
)
_WITH_GRANT_AND_USER = [joinedload(RefreshToken.grant).joinedload(Grant.user)]


def _claim_in_one_statement() -> Any:
    """PostgreSQL: the whole of a refresh's database work in one statement (:func:`claim_refresh_token`).

    The presented token is marked rotated only if this client may use it now for the scope asked (the same
    checks the refresh grant makes in Python afterwards, which pick the error); its successor and the audit row
    are inserted from the rotation's RETURNING, so all three are written or none. The main SELECT reads the token,
    its grant and the grant's user as they were before the statement (the CTEs' writes share its snapshot), with
    whether this statement rotated the token and the id of the audit row it wrote. Of two concurrent uses of one
    token the second waits for the first's row lock, then finds it rotated and writes nothing. One statement is
    its own transaction: no BEGIN or COMMIT (it runs on the request's direct connection, in autocommit).
    """
    rt, grants, audit = _refresh_tokens, _grants, _audit_events
    now = bindparam("now", type_=rt.c.rotated_at.type)
    granted_scopes = func.string_to_array(grants.c.scope, literal_column("' '"), type_=postgresql.ARRAY(Text))
    rotated = (
        update(rt)
        .where(
            rt.c.token_hash == bindparam("token_hash"),  # the same parameter as the main SELECT's
            rt.c.rotated_at.is_(None),
            rt.c.expires_at > now,
            grants.c.id == rt.c.grant_id,
            grants.c.client_id == bindparam("claiming_client_id", type_=grants.c.client_id.type),
            grants.c.revoked_at.is_(None),
            grants.c.expires_at > now,
            grants.c.user_id.is_not(None),
            # An empty list when the request asks for no scope: every array contains it.
            granted_scopes.contains(bindparam("requested_scopes", type_=postgresql.ARRAY(Text))),
        )
        .values(rotated_at=now)
        .returning(rt.c.grant_id, grants.c.user_id, grants.c.scope, grants.c.expires_at.label("grant_expires_at"))
        .cte("rotated")
    )
    successor = _refresh_token_from(rotated.c.grant_id, "successor", family_end=rotated.c.grant_expires_at)
    scope = func.coalesce(bindparam("requested_scope", type_=Text), rotated.c.scope)
    # The detail of _issued_row, in the same order.
    detail = func.json_build_object(
        literal_column("'grant_type'"),
        literal_column("'refresh_token'"),
        literal_column("'grant_id'"),
        rotated.c.grant_id,
        literal_column("'scope'"),
        scope,
        type_=audit.c.detail.type,
    )
    logged = _audit_row_from(rotated, user_id=rotated.c.user_id, detail=detail).returning(audit.c.id).cte("logged")
    was_rotated = select(func.count()).select_from(rotated).scalar_subquery().label("rotated")
    audit_id = select(logged.c.id).scalar_subquery().label("audit_id")
    return _READ_REFRESH_TOKEN.add_columns(was_rotated, audit_id).add_cte(successor.cte("successor"))


#: The three writes that undo a claim whose answer could not be made (:func:`withdraw_claim`): the presented token
#: unrotated (if this claim's rotation is still the one recorded), its successor and the audit row deleted.
_RESTORE_PRESENTED = (
    update(_refresh_tokens)
    .where(
        _refresh_tokens.c.token_hash == bindparam("presented_hash"),
        _refresh_tokens.c.rotated_at == bindparam("rotated_at", type_=_refresh_tokens.c.rotated_at.type),
    )
    .values(rotated_at=null())
)
_DELETE_SUCCESSOR = delete(_refresh_tokens).where(_refresh_tokens.c.token_hash == bindparam("successor_hash"))
_DELETE_AUDIT_ROW = delete(_audit_events).where(
    _audit_events.c.id == bindparam("audit_id", type_=_audit_events.c.id.type)
)


def _withdrawal_in_one_statement() -> Any:
    """PostgreSQL: the three writes of a withdrawal as one statement."""
    restored = _RESTORE_PRESENTED.returning(_refresh_tokens.c.grant_id).cte("restored")
    return (
        select(func.count())
        .select_from(restored)
        .add_cte(_DELETE_SUCCESSOR.cte("withdrawn"), _DELETE_AUDIT_ROW.cte("unlogged"))
    )


def _refresh_token_from(grant_id: Any, name: str, family_end: Any = None) -> Any:
    """An insert of a refresh token in the family ``grant_id`` (a column of a CTE: one token per row of it), its
    values bound as ``<name>_hash``, ``<name>_issued_at`` and ``<name>_expires_at`` (:meth:`NewRefreshToken.bound`).
    With ``family_end`` (the family's expiry, a column beside ``grant_id``) it expires at the earlier of the two: it
    never outlives its family (as :func:`new_refresh_token` makes it in Python)."""
    rt = _refresh_tokens
    expires_at: Any = bindparam(name + "_expires_at", type_=rt.c.expires_at.type)
    if family_end is not None:
        expires_at = func.least(expires_at, family_end)
    return insert(rt).from_select(
        ["token_hash", "grant_id", "issued_at", "expires_at"],
        select(
            bindparam(name + "_hash", type_=rt.c.token_hash.type),
            grant_id,
            bindparam(name + "_issued_at", type_=rt.c.issued_at.type),
            expires_at,
        ),
    )


def _audit_row_from(written: Any, *, user_id: Any = None, detail: Any = None) -> Any:
    """An insert of the audit row (bound parameters named as :func:`audit.event_row`'s keys), one per row of the
    ``written`` CTE: none when that write wrote nothing. ``user_id`` and ``detail``, when given, are SQL expressions
    (columns of ``written``, say) in place of their parameters."""
    audit = _audit_events
    return insert(audit).from_select(
        ["at", "event", "user_id", "client_id", "ip_address", "detail"],
        select(
            bindparam("at", type_=audit.c.at.type),
            bindparam("event", type_=audit.c.event.type),
            bindparam("user_id", type_=audit.c.user_id.type) if user_id is None else user_id,
            bindparam("client_id", type_=audit.c.client_id.type),
            bindparam("ip_address", type_=audit.c.ip_address.type),
            bindparam("detail", type_=audit.c.detail.type) if detail is None else detail,
        ).select_from(written),
    )


_CLAIM_IN_ONE_STATEMENT = direct.DirectStatement(_claim_in_one_statement())
_WITHDRAW_IN_ONE_STATEMENT = direct.DirectStatement(_withdrawal_in_one_statement())


def _new_grant_in_one_statement(with_token: bool) -> Any:
    """PostgreSQL: insert a new grant, its first refresh token and the audit row in one statement (the code
    exchange); the other inserts select from the grant's RETURNING, so the foreign key is met within it."""
    granted = (
        insert(_grants)
        .values({column.key: bindparam("grant_" + column.key, type_=column.type) for column in _grants.c})
        .returning(_grants.c.id)
        .cte("granted")
    )
    ctes = []
    if with_token:
        ctes.append(_refresh_token_from(granted.c.id, "first_token").cte("first_token"))
    ctes.append(_audit_row_from(granted).cte("logged"))
    return select(func.count()).select_from(granted).add_cte(*ctes)


_NEW_GRANT_WITH_TOKEN = _new_grant_in_one_statement(with_token=True)
_NEW_GRANT_WITHOUT_TOKEN = _new_grant_in_one_statement(with_token=False)
#: Each column of the grants table with the Grant attribute that holds it.
_GRANT_COLUMNS = tuple(zip(_grants.c, _attribute_names(Grant), strict=True))


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


def write_new_grant(grant: Grant, first_refresh_token: NewRefreshToken | None, audit_row: dict[str, Any]) -> None:
    """Write a grant made by :func:`new_grant`, its first refresh token (if any) and the audit row, all or nothing.

    In the caller's transaction: on PostgreSQL as one statement (the inserts of the token and the audit row select
    from the grant's), on SQLite as three.
    """
    connection = db.session.connection()
    row = {column.key: getattr(grant, key) for column, key in _GRANT_COLUMNS}
    if _on_postgresql():
        values = {"grant_" + name: value for name, value in row.items()} | audit_row
        if first_refresh_token is not None:
            values.update(first_refresh_token.bound("first_token"))
        statement = _NEW_GRANT_WITH_TOKEN if first_refresh_token is not None else _NEW_GRANT_WITHOUT_TOKEN
        if connection.execute(statement, values).scalar_one() != 1:
            raise RuntimeError("the new grant was not written")  # cannot happen: an insert without conditions
        return
    connection.execute(_INSERT_GRANT, row)
    if first_refresh_token is not None:
        connection.execute(_INSERT_REFRESH_TOKEN, first_refresh_token.row())
    connection.execute(_INSERT_AUDIT_EVENT, audit_row)


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
    _announce_at_commit([grant.id])
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
    _announce_at_commit(revoked)
    return len(revoked)


def grant_memory_key(grant_id: str) -> str:
    """The key under which a worker may remember the grant active (idp.oidc.tokens), announced when it is revoked."""
    return "grant:" + grant_id


_REVOKED_IN_TRANSACTION = "idp.revoked_grants"


def _announce_at_commit(grant_ids: Iterable[str]) -> None:
    """Announce these grants' revocation once the session's transaction commits (and not if it rolls back): an
    announcement made earlier could be read, and the grant read again still active, before the commit."""
    db.session.info.setdefault(_REVOKED_IN_TRANSACTION, set()).update(grant_ids)


@event.listens_for(Session, "after_commit")
def _announce_revocations(session: Session) -> None:
    revoked = session.info.pop(_REVOKED_IN_TRANSACTION, None)
    if not revoked or not has_app_context():
        return
    from ..provider import current_provider

    try:
        current_provider().store.announce([grant_memory_key(grant_id) for grant_id in revoked])
    except StoreUnavailable:
        # Committed all the same; a worker that remembers one of these grants active forgets it within
        # idp.oidc.tokens.REVOCATION_MEMORY_SECONDS (and one that lost Redis remembers nothing).
        log.warning("could not announce the revocation of %d grant(s): Redis is unavailable", len(revoked))


@event.listens_for(Session, "after_rollback")
def _forget_revocations(session: Session) -> None:
    session.info.pop(_REVOKED_IN_TRANSACTION, None)


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

    def bound(self, name: str) -> dict[str, Any]:
        """Its values under the parameter names of :func:`_refresh_token_from`'s insert named ``name``."""
        return {
            name + "_hash": self.token_hash,
            name + "_issued_at": self.issued_at,
            name + "_expires_at": self.expires_at,
        }

    def row(self) -> dict[str, Any]:
        return {
            "token_hash": self.token_hash,
            "grant_id": self.grant_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }


def new_refresh_token(
    grant: Grant, idle_ttl: int, *, token: str | None = None, now: dt.datetime | None = None
) -> NewRefreshToken:
    """A new refresh token in ``grant``'s family (``token``: its value when already drawn, as a refresh claim's
    successor is, to be written under its hash in the claim's SQL); it never outlives the family's absolute end,
    as the claim's SQL makes it too."""
    now = now or clock.now()
    expires_at = min(now + dt.timedelta(seconds=idle_ttl), grant.expires_at)
    return NewRefreshToken(token=token or new_token(32), grant_id=grant.id, issued_at=now, expires_at=expires_at)


def extend_refresh_token(row: RefreshToken, idle_ttl: int) -> None:
    """Move the idle expiry of a refresh token that is used again rather than rotated (a FAPI 2.0 client's), never
    past its family's end; written with the caller's commit."""
    expires_at = min(clock.now() + dt.timedelta(seconds=idle_ttl), row.grant.expires_at)
    db.session.execute(
        update(RefreshToken).where(RefreshToken.token_hash == row.token_hash).values(expires_at=expires_at)
    )


def _presented_hash(token: str) -> str | None:
    """The hash a presented refresh token is kept under, or None for what cannot be one of ours."""
    if not token or len(token) > 200:
        return None
    return sha256_hex(token)


def find_refresh_token(token: str) -> RefreshToken | None:
    token_hash = _presented_hash(token)
    if token_hash is None:
        return None
    # With its grant (a joined relationship) and the grant's user, whom the refresh grant asks for next.
    return db.session.get(RefreshToken, token_hash, options=_WITH_GRANT_AND_USER)


def find_grant_of_access_token(grant_id: str, *, with_user: bool) -> Grant | None:
    """An access token's grant (``with_user``: and the grant's user, as ``grant.user``), detached from the session,
    read in one statement: on PostgreSQL outside a transaction on the request's direct connection, as the refresh
    reads (userinfo and introspection read nothing else from the database)."""
    row = _read_one(_READ_GRANT_WITH_USER if with_user else _READ_GRANT, {"grant_id": grant_id})
    if row is None:
        return None
    if not with_user:
        (grant,) = _objects(row, _GRANT_MODEL)
        return grant
    grant, user = _objects(row, _GRANT_AND_USER_MODELS)
    _link(grant, "user", user)
    return grant


def _read_one(statement: direct.DirectStatement, params: dict[str, Any]) -> Any:
    """The first row of a read: on PostgreSQL on the request's direct connection, on SQLite in the session's."""
    if _on_postgresql():
        rows = direct.run(statement, params)
        return rows[0] if rows else None
    return db.session.connection().execute(statement.statement, params).first()


def _objects(row: Any, models: tuple[tuple[type, tuple[str, ...]], ...]) -> list[Any]:
    """One object per model from consecutive columns of ``row``, as if loaded by a session since closed (nothing
    pending, so a later add() would write nothing; nothing left to load); None for a model whose columns are all
    NULL (an outer join's missing side).

    The values go into each new instance's ``__dict__``, where the ORM's own loading puts them: the models'
    constructor would set them one by one through the instrumented attributes, an event and a history record
    each: ~70 µs for the refresh's three objects (38 columns) against ~20 here."""
    objects: list[Any] = []
    start = 0
    for model, keys in models:
        values = row[start : start + len(keys)]
        start += len(keys)
        if all(value is None for value in values):
            objects.append(None)
            continue
        loaded = model.__mapper__.class_manager.new_instance()
        loaded.__dict__.update(zip(keys, values, strict=True))
        make_transient_to_detached(loaded)  # its identity key from the values; none of them pending
        objects.append(loaded)
    return objects


def _link(parent: Any, relationship: str, child: Any) -> None:
    """Set a many-to-one relationship of an object made by :func:`_objects` as loaded, not as a change."""
    if parent is not None:
        set_committed_value(parent, relationship, child)


@dataclass
class RefreshClaim:
    """What :func:`claim_refresh_token` found and did.

    ``presented`` is the token as it was before the claim (None if there is no such token), with its grant and
    the grant's user; when the claim rotated it, ``successor`` and ``audit_row`` are what it wrote with that."""

    presented: RefreshToken | None
    at: dt.datetime
    successor: NewRefreshToken | None = None
    audit_row: dict[str, Any] | None = None
    audit_id: int | None = None

    @property
    def rotated(self) -> bool:
        return self.successor is not None


def claim_refresh_token(
    token: str, *, client_id: str, scope: str | None, idle_ttl: int, audit_row: dict[str, Any]
) -> RefreshClaim:
    """Read the refresh token presented by ``client_id`` and, if that client may use it now for ``scope`` (None:
    the grant's own), rotate it: mark it rotated, write its successor and the ``token.issued`` audit row (``audit_row``
    from :func:`audit.event_row`, completed here with the grant's user and detail). All or nothing.

    The caller checks the token as it was (``claim.presented``) to pick its answer: a rotated token is a replay; a
    usable token the claim did not rotate was rotated by a concurrent use meanwhile. If the answer then cannot be
    made, :func:`withdraw_claim` undoes the claim, so the client's retry works.

    On PostgreSQL this is one statement outside any transaction, on the request's direct connection (:mod:`.direct`):
    one round trip for the refresh, the path relying parties call most after client credentials. Its checks are
    those of the refresh grant, in SQL. On SQLite, a read and three writes in the session's transaction, committed
    at once, before the answer is made, as PostgreSQL's statement is. The rows come back as objects made here
    rather than loaded by the ORM (:func:`_objects`): its load of the same join cost ~0.3 ms more per refresh.
    """
    now = clock.now()
    token_hash = _presented_hash(token)
    if token_hash is None:
        return RefreshClaim(presented=None, at=now)
    if scope and "\x00" in scope:
        # PostgreSQL's text cannot hold NUL. The grant's scope cannot either, so the scope asked is not within it
        # (the grant's check says invalid_scope); in its place a character no scope has, to the same effect.
        scope = scope.replace("\x00", "\ufffd")
    requested_scopes = scope_to_list(scope) if scope else []
    successor_token = new_token(32)
    if _on_postgresql():
        values = {
            **audit_row,  # at, event, client_id and ip_address of the audit row (its other columns come from SQL)
            "token_hash": token_hash,
            "now": now,
            "claiming_client_id": client_id,
            "requested_scopes": requested_scopes,
            "requested_scope": scope,
            "successor_hash": sha256_hex(successor_token),
            "successor_issued_at": now,
            "successor_expires_at": now + dt.timedelta(seconds=idle_ttl),
        }
        rows = direct.run(_CLAIM_IN_ONE_STATEMENT, values)
        if not rows:
            return RefreshClaim(presented=None, at=now)
        row = rows[0]
        presented = _presented_from(row)
        claim = RefreshClaim(presented=presented, at=now)
        if row[-2] == 1:
            claim.successor = new_refresh_token(presented.grant, idle_ttl, token=successor_token, now=now)
            claim.audit_row = _issued_row(audit_row, presented.grant, scope)
            claim.audit_id = row[-1]
        return claim
    connection = db.session.connection()
    row = connection.execute(_READ_REFRESH_TOKEN, {"token_hash": token_hash}).first()
    if row is None:
        return RefreshClaim(presented=None, at=now)
    presented = _presented_from(row)
    claim = RefreshClaim(presented=presented, at=now)
    grant = presented.grant
    usable = (
        presented.rotated_at is None
        and presented.expires_at > now
        and grant.client_id == client_id
        and is_grant_active(grant, now)
        and grant.user_id is not None
        and set(grant.scope.split(" ")).issuperset(requested_scopes)
    )
    # The update's condition is what makes it atomic (SQLite serialises the writers).
    if not usable or connection.execute(_MARK_ROTATED, {"presented_hash": token_hash, "now": now}).rowcount != 1:
        return claim
    claim.successor = new_refresh_token(grant, idle_ttl, token=successor_token, now=now)
    claim.audit_row = _issued_row(audit_row, grant, scope)
    connection.execute(_INSERT_REFRESH_TOKEN, claim.successor.row())
    claim.audit_id = connection.execute(_INSERT_AUDIT_EVENT, claim.audit_row).inserted_primary_key[0]
    # Committed now, as PostgreSQL's statement is: a concurrent use then finds the token rotated, rather than
    # waiting on this transaction's lock while this answer is made.
    db.session.commit()
    return claim


def _presented_from(row: Any) -> RefreshToken:
    refresh_token, grant, user = _objects(row, _READ_MODELS)
    _link(refresh_token, "grant", grant)
    _link(grant, "user", user)
    return refresh_token


def _issued_row(audit_row: dict[str, Any], grant: Grant, scope: str | None) -> dict[str, Any]:
    """The refresh's ``token.issued`` row: ``audit_row`` with the grant's user and the detail (as the claim's SQL
    writes them; the same detail as tokens.token_issued_event's)."""
    detail = {"grant_type": "refresh_token", "grant_id": grant.id, "scope": scope or grant.scope}
    return {**audit_row, "user_id": grant.user_id, "detail": detail}


def withdraw_claim(claim: RefreshClaim) -> None:
    """Undo a claim that rotated its token, for a refresh whose answer could not be made: the presented token
    usable again, its successor (which no one received) and its audit row gone. Nothing to undo if the claim
    rotated nothing; the token stays rotated if something rotated it again since (it cannot: only a replay of it
    would try, and a replay revokes the family)."""
    if not claim.rotated or claim.presented is None:
        return
    values = {
        "presented_hash": claim.presented.token_hash,
        "rotated_at": claim.at,
        "successor_hash": claim.successor.token_hash,
        "audit_id": claim.audit_id,
    }
    if _on_postgresql():
        direct.run(_WITHDRAW_IN_ONE_STATEMENT, values)
        return
    db.session.rollback()  # whatever failed with the answer
    connection = db.session.connection()
    for statement in (_RESTORE_PRESENTED, _DELETE_SUCCESSOR, _DELETE_AUDIT_ROW):
        connection.execute(statement, values)
    db.session.commit()


def revoke_grant_by_id(grant_id: str, reason: str) -> bool:
    """Revoke the grant in one statement; True for the one caller that found it active (of concurrent ones)."""
    result = db.session.connection().execute(
        _REVOKE_GRANT, {"grant_id": grant_id, "now": clock.now(), "reason": reason}
    )
    if result.rowcount != 1:
        return False
    _announce_at_commit([grant_id])
    return True


def _on_postgresql() -> bool:
    """PostgreSQL runs several writes as one statement (CTEs) and the hot reads and writes on the request's direct
    connection; SQLite runs them one by one in the session's transaction (its round trips cost nothing)."""
    return db.engine.dialect.name == "postgresql"
