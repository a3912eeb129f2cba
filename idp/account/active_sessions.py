"""Active sessions: where the account is logged in, with "log out this session" and "log out everywhere"."""

from __future__ import annotations

from flask import Response, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext

from ..store import audit, commit
from ..store import grants as grant_store
from ..store import login_sessions as session_store
from ..web.forms import ButtonForm
from ..web.login_state import end_other_sessions, log_out, notify_sessions_ended
from .blueprint import bp, login_required
from .devices import device_of


@bp.get("/account/sessions")
@login_required
def sessions() -> str:
    rows = [{"session": s, "device": device_of(s.user_agent)} for s in session_store.live_sessions_of(g.login.user_id)]
    return render_template("account/sessions.html", rows=rows, current=g.login, form=ButtonForm())


@bp.post("/account/sessions/<session_id>/end")
@login_required
def end_session(session_id: str) -> Response:
    if not ButtonForm().validate_on_submit():
        abort(400)
    if session_id == g.login.id:
        log_out(reason="user_logged_out")
        return redirect(url_for("auth.login"), 303)
    target = next((s for s in session_store.live_sessions_of(g.login.user_id) if s.id == session_id), None)
    if target is None:
        abort(404)
    session_store.end_session(target)
    grant_store.revoke_session_grants(target.id, "ended_by_user")
    audit.record("session.ended", user_id=g.login.user_id, session_id=target.id)
    commit()
    notify_sessions_ended([target.id])
    flash(gettext("That session is logged out."), "info")
    return redirect(url_for("account.sessions"), 303)


@bp.post("/account/sessions/end-all")
@login_required
def end_all_sessions() -> Response:
    if not ButtonForm().validate_on_submit():
        abort(400)
    ended = end_other_sessions(g.login.user, keep=g.login, reason="logged_out_everywhere")
    audit.record("session.ended_everywhere", user_id=g.login.user_id, other_sessions=len(ended))
    commit()
    notify_sessions_ended(ended)
    log_out(reason="logged_out_everywhere")
    return redirect(url_for("auth.login"), 303)
