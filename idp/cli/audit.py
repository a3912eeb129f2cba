"""``idp audit``: read the audit log."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from ..store.audit import recent_events
from .output import emit


@click.group(help="The audit log: logins, tokens, consents, admin changes.")
def audit() -> None:
    pass


@audit.command(name="list", help="Most recent events first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--event", help="Only this event name, e.g. login.failed.")
@click.option("--user", "user_id", help="Only events of this user id.")
@click.option("--client", "client_id", help="Only events of this client id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_events(limit: int, event: str | None, user_id: str | None, client_id: str | None, as_json: bool) -> None:
    rows = [
        {
            "at": e.at.isoformat(),
            "event": e.event,
            "user_id": e.user_id,
            "client_id": e.client_id,
            "ip_address": e.ip_address,
            "detail": e.detail,
        }
        for e in recent_events(limit=limit, event=event, user_id=user_id, client_id=client_id)
    ]
    lines = [
        f"{r['at']}  {r['event']:24} user={r['user_id'] or '-'} client={r['client_id'] or '-'} "
        f"ip={r['ip_address'] or '-'} {json.dumps(r['detail'], ensure_ascii=False)}"
        for r in rows
    ]
    emit(rows, as_json, "\n".join(lines) if lines else "no events")
