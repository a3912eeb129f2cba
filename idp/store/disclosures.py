"""The disclosure ledger: every release of claims about a user to a client, by the claims' names (never their
values), kept ``privacy.ledger_retention`` seconds after the last release of its row.

A release is written with what it describes: the code exchange's and the refresh's with their grant, refresh token
and audit rows (:data:`LEDGER` in their idp.store.write_groups.WriteGroup, one statement on PostgreSQL), userinfo's
and introspection's by themselves before the answer (:func:`record_under_grant`). Identical releases (the same user,
client, session, purpose and claims) fold into one row, counted, by one ``INSERT ... ON CONFLICT DO UPDATE``
(:func:`fold`), so a concurrent release can neither be lost nor make a second row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, literal, select

from .. import clock
from ..extensions import db
from .models import Disclosure, Grant
from .write_groups import DIALECT_INSERTS, Upsert

#: Why the claims were released: the code exchange's ID token, a refreshed ID token, userinfo, introspection.
PURPOSES = ("login", "refresh", "userinfo", "introspection")
#: The columns that make releases identical: such releases fold into one row (its unique index).
FOLD_KEY = ("user_id", "client_id", "session_id", "purpose", "claims")

_disclosures = Disclosure.__table__
_grants = Grant.__table__


@dataclass(frozen=True)
class Release:
    """What was released to whom and why; the user and session come from the grant it was released under."""

    client_id: str
    purpose: str
    #: The claims' names, in the ledger's order (idp.oidc.claims.release_of).
    claims: tuple[str, ...]
    national_id: bool
    verified_claims: bool

    def row(self, user_id: str, session_id: str | None, at: dt.datetime) -> dict[str, Any]:
        """The ledger row of this release (by column), for a write group."""
        return {
            "user_id": user_id,
            "client_id": self.client_id,
            "session_id": session_id or "",
            "purpose": self.purpose,
            "claims": " ".join(self.claims),
            "national_id": self.national_id,
            "verified_claims": self.verified_claims,
            "count": 1,
            "first_at": at,
            "last_at": at,
        }


def fold(statement: Any) -> Any:
    """``ON CONFLICT`` of a dialect's INSERT into the ledger: a release identical to a row's (:data:`FOLD_KEY`) adds
    to its count and moves its last time; the national code is marked if any of them carried it."""
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_disclosures.c[name] for name in FOLD_KEY],
        set_={
            "count": _disclosures.c.count + excluded.count,
            "last_at": excluded.last_at,
            "national_id": _disclosures.c.national_id | excluded.national_id,
        },
    )


#: The ledger's row in a write group (idp.store.grants).
LEDGER = Upsert(_disclosures, fold)

_UNDER_GRANT_COLUMNS = [
    "user_id", "client_id", "session_id", "purpose", "claims", "national_id", "verified_claims", "count", "first_at",
    "last_at",
]  # fmt: skip
_AT = bindparam("at", type_=_disclosures.c.last_at.type)
#: The row of a release under a grant, its user and session read from the grant in the same statement.
_RELEASE_UNDER_GRANT = (
    select(
        _grants.c.user_id,
        bindparam("client_id", type_=_disclosures.c.client_id.type),
        func.coalesce(_grants.c.session_id, ""),
        bindparam("purpose", type_=_disclosures.c.purpose.type),
        bindparam("claims", type_=_disclosures.c.claims.type),
        bindparam("national_id", type_=_disclosures.c.national_id.type),
        bindparam("verified_claims", type_=_disclosures.c.verified_claims.type),
        literal(1),
        _AT,
        _AT,
    )
    # SQLite reads "ON CONFLICT" after a SELECT without WHERE as part of a join: the WHERE is also needed there.
    .where(_grants.c.id == bindparam("grant_id"), _grants.c.user_id.is_not(None))
)
_under_grant: dict[str, Any] = {}  # per dialect, built once: building costs about as much as running


def record_under_grant(release: Release, grant_id: str) -> bool:
    """Write ``release``, made under grant ``grant_id``, in one statement (whole by itself; the caller commits).
    False, writing nothing, when the grant no longer exists (its user was deleted)."""
    dialect = db.engine.dialect.name
    statement = _under_grant.get(dialect)
    if statement is None:
        insert = DIALECT_INSERTS[dialect](_disclosures).from_select(_UNDER_GRANT_COLUMNS, _RELEASE_UNDER_GRANT)
        # An INSERT's row count is kept only when asked for (SQLAlchemy's preserve_rowcount).
        statement = _under_grant[dialect] = fold(insert).execution_options(preserve_rowcount=True)
    values = {
        "grant_id": grant_id,
        "client_id": release.client_id,
        "purpose": release.purpose,
        "claims": " ".join(release.claims),
        "national_id": release.national_id,
        "verified_claims": release.verified_claims,
        "at": clock.now(),
    }
    return db.session.connection().execute(statement, values).rowcount == 1


# -- reading and pruning ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerQuery:
    """Which of a user's rows: of one client (None: all) whose last release is at ``since`` or later (None: ever)."""

    user_id: str
    client_id: str | None = None
    since: dt.datetime | None = None

    def select(self) -> Select[Any]:
        query = select(Disclosure).where(Disclosure.user_id == self.user_id)
        if self.client_id is not None:
            query = query.where(Disclosure.client_id == self.client_id)
        if self.since is not None:
            query = query.where(Disclosure.last_at >= self.since)
        return query


def disclosures(query: LedgerQuery, limit: int | None = None, offset: int = 0) -> Sequence[Disclosure]:
    """The rows ``query`` names, the latest release first."""
    statement = query.select().order_by(Disclosure.last_at.desc(), Disclosure.id.desc()).offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return db.session.scalars(statement).all()


def count_disclosures(query: LedgerQuery) -> int:
    return db.session.scalar(select(func.count()).select_from(query.select().subquery())) or 0


def clients_disclosed_to(user_id: str) -> list[str]:
    """The ids of the clients the user's ledger names."""
    statement = select(Disclosure.client_id).where(Disclosure.user_id == user_id).distinct()
    return sorted(db.session.scalars(statement))


def prune(before: dt.datetime) -> int:
    """Delete the rows whose last release is older than ``before`` (in the caller's transaction); how many."""
    return db.session.execute(delete(Disclosure).where(Disclosure.last_at < before)).rowcount


def as_record(row: Disclosure, client_name: str | None) -> dict[str, Any]:
    """A row as data (downloads, ``idp audit disclosures --json``): ISO times, the claims' names; ``client_name``
    None where the client is no longer registered."""
    return {
        "client_id": row.client_id,
        "client_name": client_name,
        "purpose": row.purpose,
        "claims": row.claims.split(),
        "national_id": row.national_id,
        "verified_claims": row.verified_claims,
        "count": row.count,
        "first_at": row.first_at.isoformat(),
        "last_at": row.last_at.isoformat(),
    }
