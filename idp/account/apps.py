"""Connected apps: each relying party the user allowed, what it receives, and "revoke"."""

from __future__ import annotations

from flask import Response, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext

from ..extensions import db
from ..scopes import claims_for_scopes
from ..store import audit, commit
from ..store import grants as grant_store
from ..store.clients import get_client
from ..store.consents import consents_of
from ..web.forms import ButtonForm
from .blueprint import bp, login_required


@bp.get("/account/apps")
@login_required
def apps() -> str:
    rows = []
    for consent in consents_of(g.login.user_id):
        client = get_client(consent.client_id)
        claims = [c for c in claims_for_scopes(consent.scope.split()) if c != "sub"] + list(consent.claims or [])
        rows.append({"consent": consent, "client": client, "claims": list(dict.fromkeys(claims))})
    return render_template("account/apps.html", rows=rows, form=ButtonForm())


@bp.post("/account/apps/<client_id>/revoke")
@login_required
def revoke_app(client_id: str) -> Response:
    if not ButtonForm().validate_on_submit():
        abort(400)
    consent = next((c for c in consents_of(g.login.user_id) if c.client_id == client_id), None)
    if consent is None:
        abort(404)
    db.session.delete(consent)
    revoked = grant_store.revoke_client_grants(g.login.user_id, client_id, "revoked_by_user")
    audit.record("consent.revoked", user_id=g.login.user_id, client_id=client_id, grants_revoked=revoked)
    commit()
    flash(gettext("The app can no longer use your account; it will ask again next time."), "info")
    return redirect(url_for("account.apps"), 303)
