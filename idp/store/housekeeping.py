"""When periodic tasks last ran, in the database (shared by every instance, and kept across restarts, which the
in-process key-value store is not): a task due at start-up runs on the one instance that claims it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam

from .. import clock
from ..extensions import db
from .models import HousekeepingRun
from .write_groups import DIALECT_INSERTS

_runs = HousekeepingRun.__table__


def claim_run(task: str, every: dt.timedelta | None = None) -> bool:
    """Record that ``task`` runs now, if it last ran ``every`` ago or longer (None: whenever it last ran), in the
    caller's transaction. True for the one caller that did, of concurrent ones (on PostgreSQL the others wait for
    its transaction, then find the task done): that caller runs the task, and commits both together."""
    now = clock.now()
    insert = DIALECT_INSERTS[db.engine.dialect.name](_runs).values(task=bindparam("task"), ran_at=bindparam("now"))
    due = None if every is None else _runs.c.ran_at <= bindparam("due", type_=_runs.c.ran_at.type)
    statement = insert.on_conflict_do_update(
        index_elements=[_runs.c.task], set_={"ran_at": insert.excluded.ran_at}, where=due
    ).execution_options(preserve_rowcount=True)  # an INSERT's row count is kept only when asked for
    values = {"task": task, "now": now}
    if every is not None:
        values["due"] = now - every
    return db.session.connection().execute(statement, values).rowcount == 1


def last_run(task: str) -> dt.datetime | None:
    row = db.session.get(HousekeepingRun, task)
    return row.ran_at if row is not None else None
