"""Storage behind small interfaces: SQL repositories (one module per record kind) and the key-value store.

Repository functions add and change rows but leave the commit to the caller, so one unit of work (say,
a grant with its first refresh token) lands in one transaction: call :func:`commit` at its end.
"""

from __future__ import annotations

from ..extensions import db


def commit() -> None:
    # A session that began no transaction holds nothing to write (adding an object or running a statement
    # begins one): committing it would still run the whole unit-of-work machinery, ~0.1 ms on the token
    # endpoint's busiest grant, which writes nothing.
    if db.session().in_transaction():
        db.session.commit()


def rollback() -> None:
    db.session.rollback()
