"""Storage behind small interfaces: SQL repositories (one module per record kind) and the key-value store.

Repository functions add and change rows but leave the commit to the caller, so one unit of work (say,
a grant with its first refresh token) lands in one transaction: call :func:`commit` at its end.
"""

from __future__ import annotations

from ..extensions import db


def commit() -> None:
    # A session that began no transaction holds nothing to write (adding an object or running a statement
    # begins one): committing it would still run the whole unit-of-work machinery, on the token endpoint's
    # busiest grant, which writes nothing. A request that never used the session (the refresh and the
    # client-credentials grant on PostgreSQL) has none yet, and asking it would make one.
    if db.session.registry.has() and db.session().in_transaction():
        db.session.commit()


def rollback() -> None:
    db.session.rollback()


def read_outside_a_transaction() -> None:
    """Run the request's statements without a transaction, on PostgreSQL, for a request that only reads or whose
    writes are each whole by themselves (one statement each): psycopg would otherwise send BEGIN before the first
    statement, and the request would end with ROLLBACK or COMMIT, two round trips that protect nothing there. Until
    the session's next commit or rollback. Nothing to do once a transaction has begun, nor on SQLite (whose BEGIN
    costs no round trip)."""
    session = db.session()
    if db.engine.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def commit_written() -> None:
    """Make what the request wrote durable: :func:`commit`, unless its statements ran outside a transaction
    (:func:`read_outside_a_transaction`), where each was committed as it ran and the session's commit would run its
    whole unit-of-work machinery for nothing."""
    session = db.session()
    if session.in_transaction() and session.connection().get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    commit()
