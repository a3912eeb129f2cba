"""The support page: contact details from the configuration and a message form (``idp support list``)."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import clock
from ..extensions import db
from ..provider import current_provider
from ..rate_limits import limited
from ..store import audit, commit
from ..store.models import SupportMessage
from ..web.forms import SupportForm
from ..web.login_state import current_user
from .blueprint import bp


@bp.route("/support", methods=["GET", "POST"])
@limited("10 per hour", "support")
def support() -> Response | str:
    user = current_user()
    form = SupportForm()
    if request.method == "GET" and user is not None:
        form.name.data = user.name
        form.contact.data = user.email or ("0" + user.mobile.removeprefix("+98"))
    if form.validate_on_submit():
        message = SupportMessage(
            user_id=user.id if user else None,
            name=form.name.data.strip(),
            contact=form.contact.data.strip(),
            subject=form.subject.data.strip(),
            body=form.body.data.strip(),
            created_at=clock.now(),
        )
        db.session.add(message)
        audit.record("support.message", user_id=user.id if user else None)
        commit()
        flash(gettext("Your message was sent. We will answer you at the contact you gave."), "info")
        return redirect(url_for("account.support"), 303)
    return render_template("support.html", form=form, contact=current_provider().config.support)
