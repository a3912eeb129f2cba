"""Logging in with a passkey, and the challenges of every passkey ceremony.

The login is usernameless: the browser offers the passkeys it holds for this site (in the national-code
field's autofill where it supports conditional mediation, or after a tap on the passkey button), and the
passkey names the account. A passkey with user verification is two factors, one of them phishing-resistant:
``urn:hoviyat:loa:3``, with no text message sent.
"""

from __future__ import annotations

from flask import Response, flash, jsonify, redirect, request, url_for
from flask_babel import gettext

from .. import passkeys
from ..rate_limits import limited
from ..web.forms import PasskeyForm
from ..web.login_state import current_session, is_fresh, log_in
from .blueprint import bp
from .flow import PendingAuthorization, done, for_pending_authorization, passkey_refused_message, with_tx
from .passkey_recovery import cancel_sms_recovery


@bp.app_context_processor
def passkey_template_values() -> dict[str, object]:
    """Pages offer passkeys only where browsers can use them here (see passkeys.passkeys_possible)."""
    return {"passkeys_possible": passkeys.passkeys_possible}


@bp.post("/passkeys/options")
@limited(lambda config: config.limits.login_per_ip, "passkey_options")
def passkey_options() -> Response | tuple[Response, int]:
    """Options for ``navigator.credentials`` (JSON), for the ceremony named in ``ceremony``: ``login`` and
    ``recovery`` for anyone; ``step_up`` for the logged-in user's passkeys; ``register`` after a fresh login."""
    ceremony = request.form.get("ceremony", "")
    if not passkeys.passkeys_possible():
        return _json_error("passkeys_unavailable", 404)
    if ceremony in (passkeys.LOGIN, passkeys.RECOVERY):
        return _json(passkeys.authentication_options(ceremony))
    login = current_session()
    if login is None:
        return _json_error("login_required", 401)
    if ceremony == passkeys.STEP_UP:
        return _json(passkeys.authentication_options(ceremony, login.user))
    if ceremony == passkeys.REGISTER:
        if not is_fresh(login):
            return _json_error("confirm_again", 403)
        return _json(passkeys.registration_options(login.user))
    return _json_error("unknown_ceremony", 400)


@bp.post("/login/passkey")
@limited(lambda config: config.limits.login_per_ip, "login")
@for_pending_authorization
def passkey_login(pending: PendingAuthorization | None) -> Response:
    form = PasskeyForm()
    if not form.validate_on_submit():
        flash(gettext("The passkey could not be checked. Try again."), "error")
        return redirect(with_tx("auth.login", pending), 303)
    try:
        passkey = passkeys.authenticate(passkeys.LOGIN, form.credential.data)
    except passkeys.PasskeyRefused as refused:
        flash(passkey_refused_message(refused), "error")
        return redirect(with_tx("auth.login", pending), 303)
    user = passkey.user
    # The owner is back with a passkey: a password reset by SMS waiting for this account was not theirs to need.
    cancel_sms_recovery(user)
    log_in(user, amr=passkeys.amr_of(passkey))
    return done(pending)


def _json(options: str) -> Response:
    response = Response(options, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _json_error(error: str, status: int) -> tuple[Response, int]:
    response = jsonify(error=error, login=url_for("auth.login"))
    response.headers["Cache-Control"] = "no-store"
    return response, status
