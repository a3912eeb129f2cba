"""Database connections: tested before use only when they have been idle.

A pooled connection can be dead (PostgreSQL restarted, a proxy dropped it). SQLAlchemy's ``pool_pre_ping``
tests every connection at every checkout: one more round trip on every request that touches the database,
about a fifth of a token refresh. A connection returned to the pool less than :data:`TRUSTED_FOR` seconds ago
was working a moment ago; only one idle for longer is pinged (SQLAlchemy's "custom pessimistic ping" recipe).
So under load, when the round trip matters, there are no pings, and after a quiet spell, when a restart may
have happened unseen, every connection is tested before a request uses it and replaced if it is dead. A
restart in the second before a connection's next use shows as a 503 on that one request (SQLAlchemy then
discards the whole pool, so the next request connects afresh).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

#: Seconds since a connection was last returned to the pool during which it is used without a ping.
TRUSTED_FOR = 1.0


def ping_connections_after_idle(engine: Engine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is not None and time.monotonic() - returned_at < TRUSTED_FOR:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool replaces the connection and tries again (up to three times).
                raise exc.DisconnectionError(str(error)) from error
            raise
