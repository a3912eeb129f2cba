"""``idp support``: read the messages sent from the support page."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..extensions import db
from ..store.models import SupportMessage
from .output import emit


@click.group(help="Messages sent from the support page.")
def support() -> None:
    pass


@support.command(name="list", help="Most recent messages first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_messages(limit: int, as_json: bool) -> None:
    query = select(SupportMessage).order_by(SupportMessage.id.desc()).limit(limit)
    rows = [
        {
            "id": m.id,
            "at": m.created_at.isoformat(),
            "user_id": m.user_id,
            "name": m.name,
            "contact": m.contact,
            "subject": m.subject,
            "body": m.body,
        }
        for m in db.session.scalars(query)
    ]
    text = "\n\n".join(
        f"#{r['id']}  {r['at']}  {r['name']} <{r['contact']}>  user={r['user_id'] or '-'}\n{r['subject']}\n{r['body']}"
        for r in rows
    )
    emit(rows, as_json, text or "no messages")
