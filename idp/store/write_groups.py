"""Writes that belong together: a first write and the rows inserted because of it, all or none.

A group is defined once, as SQLAlchemy statements, and run the best way each database allows. On PostgreSQL it is
one statement generated from that definition: the first write as a CTE with ``RETURNING``, and each insert
selecting its values ``FROM`` that CTE, so it writes its row only if the first wrote one (data-modifying CTEs
always run, whether or not the main query reads them). Elsewhere the statements run one after the other, the
inserts only when the first wrote a row. Either way they run in the caller's transaction.

An insert may fold into a row already there (:class:`Upsert`: ``INSERT ... ON CONFLICT DO UPDATE``), on PostgreSQL
as on SQLite, whose dialects' inserts share ``on_conflict_do_update``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update

#: Each dialect's own INSERT, which knows ``ON CONFLICT`` (``on_conflict_do_update``, ``excluded``).
DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True)
class Upsert:
    """Rows inserted into ``table`` or, when one conflicts with a row there, folded into it: ``on_conflict`` adds
    the ``ON CONFLICT`` clause to a dialect's INSERT into ``table`` (of values, or from a SELECT)."""

    table: Table
    on_conflict: Callable[[Any], Insert]

    def statement(self, dialect_name: str) -> Insert:
        """The INSERT of one row (values by column name) for this dialect."""
        return self.on_conflict(DIALECT_INSERTS[dialect_name](self.table))


Then = Table | Upsert


class WriteGroup:
    """A first write (an UPDATE or INSERT of at most one row, its values bound parameters) and inserts into
    ``then`` (tables, or :class:`Upsert` s) that follow it: one row per table, or none."""

    def __init__(self, first: Update | Insert, *then: Then) -> None:
        self.first = first
        self.then = then
        # The PostgreSQL statement for each combination of inserted columns (one in practice), built once: building
        # it costs about as much as running it.
        self._combined: dict[tuple[tuple[str, ...] | None, ...], Any] = {}
        # Elsewhere, each insert of ``then`` by itself, per dialect.
        self._separate: dict[str, list[Insert]] = {}

    def run(self, connection: Connection, first_values: Mapping[str, Any], *rows: Mapping[str, Any] | None) -> bool:
        """Run the first write with ``first_values`` (by bound parameter name) and, if it wrote a row, insert
        ``rows`` (by column; one per table of ``then``, None for a table that gets nothing). True when the first
        wrote a row."""
        if len(rows) != len(self.then):
            raise TypeError(f"{len(self.then)} rows expected, one per table (None for none)")
        if connection.dialect.name == "postgresql":
            shape = tuple(None if row is None else tuple(row) for row in rows)
            statement = self._combined.get(shape)
            if statement is None:
                statement = self._combined[shape] = self._one_statement(shape)
            values = dict(first_values)
            for index, row in enumerate(rows):
                if row is not None:
                    values.update({_bound_name(index, column): value for column, value in row.items()})
            return connection.execute(statement, values).scalar_one() > 0
        if connection.execute(self.first, dict(first_values)).rowcount != 1:
            return False
        statements = self._separate.get(connection.dialect.name)
        if statements is None:
            statements = self._separate[connection.dialect.name] = [
                target.statement(connection.dialect.name) if isinstance(target, Upsert) else insert(target)
                for target in self.then
            ]
        for statement, row in zip(statements, rows, strict=True):
            if row is not None:
                connection.execute(statement, dict(row))
        return True

    def _one_statement(self, shape: tuple[tuple[str, ...] | None, ...]) -> Any:
        first_table = self.first.table
        written = self.first.returning(*first_table.primary_key.columns).cte("written")  # type: ignore[attr-defined]
        inserts = []
        for index, (target, columns) in enumerate(zip(self.then, shape, strict=True)):
            if columns is None:
                continue
            table = target.table if isinstance(target, Upsert) else target
            values = select(*(bindparam(_bound_name(index, c), type_=table.c[c].type) for c in columns))
            statement = postgresql.insert(table).from_select(list(columns), values.select_from(written))
            if isinstance(target, Upsert):
                statement = target.on_conflict(statement)
            inserts.append(statement.cte(f"then_{index}"))
        return select(func.count()).select_from(written).add_cte(*inserts)


def _bound_name(index: int, column: str) -> str:
    # Apart from the first write's parameters and from another table's columns of the same name.
    return f"then_{index}_{column}"
