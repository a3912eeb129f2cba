"""Statements run on a pooled PostgreSQL connection directly, for the few paths relying parties call most.

A refresh, an introspection or a userinfo request runs one or two statements, each its own transaction. Through
the ORM session and SQLAlchemy's ``Connection``, each statement cost ~0.35 ms of CPU on this project's benchmark
machine, of which psycopg's own round trip was ~0.15 ms: the session's transaction bookkeeping and connection
handling, the statement's cache key, an execution context and a result object per call. Here a Core statement is
compiled once, with SQLAlchemy's own bind and result processors for its types (so values go in and come out as
SQLAlchemy would pass and return them), and run on a connection taken from the engine's pool (its checkout
events, such as the ping after idleness, still run) and held in autocommit for the rest of the request.

Only for statements that are each a whole unit of work: nothing run here can be rolled back. The request's ORM
session keeps its own connection; a request must not lock rows in a session transaction that a statement here
then writes (it would wait for itself). Errors come out as SQLAlchemy's (``OperationalError`` and the rest), and a
connection found dead is replaced by the pool when the request gives it back: the 503 handling and recovery are
those of every other statement (tests/test_faults.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flask import Flask, g
from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from ..extensions import db

Processor = Callable[[Any], Any] | None

#: Called with the SQL and the DBAPI connection of every statement run here, before it runs: SQLAlchemy's
#: ``before_cursor_execute`` event does not see these statements, and tests count round trips with it
#: (tests.helpers.statements_run).
statement_observers: list[Callable[[str, Any], None]] = []


class DirectStatement:
    """A Core statement, compiled once per dialect, run by :func:`run` on the request's direct connection."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: tuple[Dialect, str, dict[str, Processor], list[Processor]] | None = None

    def compiled_for(self, dialect: Dialect) -> tuple[str, dict[str, Processor], list[Processor]]:
        if self._compiled is None or self._compiled[0] is not dialect:
            compiled = self.statement.compile(dialect=dialect)
            binds = {
                name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()
            }
            columns = getattr(self.statement, "selected_columns", ())
            results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
            self._compiled = (dialect, str(compiled), binds, results)
        return self._compiled[1:]


def _processed(row: Sequence[Any], processors: list[Processor]) -> tuple[Any, ...]:
    return tuple(
        value if processor is None else processor(value) for value, processor in zip(row, processors, strict=True)
    )


def run(statement: DirectStatement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``statement`` with ``params`` (by bind name), in its own transaction, and return its rows (processed as
    SQLAlchemy would: a ``UTCDateTime`` comes back aware, a JSON column parsed)."""
    connection = _request_connection()
    dialect = db.engine.dialect
    sql, binds, results = statement.compiled_for(dialect)
    values = {name: (value if binds.get(name) is None else binds[name](value)) for name, value in params.items()}
    driver = connection.driver_connection
    for observe in statement_observers:
        observe(sql, driver)
    try:
        cursor = driver.execute(sql, values)
        # The result's status, not cursor.description: psycopg builds a description object per column for that
        # (38 on the refresh read), ~40 µs a statement on this project's benchmark machine.
        rows = cursor.fetchall() if cursor.pgresult.status == dialect.loaded_dbapi.pq.ExecStatus.TUPLES_OK else []
    except dialect.loaded_dbapi.Error as error:
        # A connection found dead is replaced by the pool when the request gives it back (its reset fails there).
        raise _as_sqlalchemy_error(error, sql) from error
    return [_processed(row, results) for row in rows] if results else rows


def _as_sqlalchemy_error(error: Exception, sql: str | None) -> exc.DBAPIError:
    """psycopg's error as SQLAlchemy's (OperationalError and the rest), which the 503 handling knows; without the
    parameters, which may be a token's hash."""
    dialect = db.engine.dialect
    return exc.DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect)


def _request_connection() -> Any:
    """The connection this request took from the pool for its direct statements, taken at its first one."""
    held = g.get("_direct_connection")
    if held is None:
        try:
            held = db.engine.raw_connection()  # the pool's checkout (unlike a Connection's) raises psycopg's errors
        except db.engine.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy_error(error, None) from error
        held.driver_connection.autocommit = True
        g._direct_connection = held
    return held


def _give_back(_error: BaseException | None = None) -> None:
    # Back to the pool as the session's connections come: out of autocommit, which the pool does not reset.
    held = g.pop("_direct_connection", None)
    if held is None:
        return
    try:
        held.driver_connection.autocommit = False
    except db.engine.dialect.loaded_dbapi.Error as error:
        held.invalidate(error)  # never back in the pool in a state unknown: it is replaced
        return
    held.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_give_back)
