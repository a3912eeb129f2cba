"""Recent security events of the account, from the audit log, in plain words (idp.audit_events) with the names of
the apps they are about and times in the reader's calendar."""

from __future__ import annotations

from flask import g, render_template

from ..audit_events import describe_event
from ..store.audit import recent_events
from ..store.clients import client_names
from .blueprint import bp, login_required


@bp.get("/account/activity")
@login_required
def activity() -> str:
    events = recent_events(limit=50, user_id=g.login.user_id)
    names = client_names({e.client_id for e in events if e.client_id})
    rows = [{"event": e, "text": describe_event(e.event, names.get(e.client_id or ""))} for e in events]
    return render_template("account/activity.html", rows=rows)
