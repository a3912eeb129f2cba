"""The database schema, managed by Alembic migrations (``idp db upgrade``)."""

from __future__ import annotations

from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import upgrade

from ..extensions import db


def render_migration_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our UTC column type as a plain ``sa.DateTime()`` in generated migrations, so a migration never
    imports application code (it must keep working when the models change later)."""
    from .models import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def upgrade_schema() -> None:
    """Apply every migration not yet applied (what ``idp db upgrade`` does)."""
    upgrade(directory=current_app.extensions["migrate"].directory)


def schema_is_current() -> bool:
    migrate = current_app.extensions["migrate"]
    script = ScriptDirectory.from_config(migrate.migrate.get_config(migrate.directory))
    with db.engine.connect() as connection:
        applied = set(MigrationContext.configure(connection).get_current_heads())
    return applied == set(script.get_heads())
