"""The second factor (step-up): when a relying party asks for ``urn:hoviyat:loa:2`` and the session has one
factor, the logged-in user proves one more. Something known (the password) and something held
(an SMS code to the account's mobile, an authenticator-app code or a recovery code) together make loa:2.

Offered: the password when the session lacks it (after an SMS login); otherwise the authenticator app when
enrolled (or a recovery code), and an SMS code.
"""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import totp
from ..i18n import display_mobile
from ..otp import CodeNotSent, consume_code
from ..store import commit
from ..store.models import User
from ..web.forms import ButtonForm, CodeForm, PasswordForm
from ..web.login_state import add_factor, current_session
from .blueprint import bp
from .flow import (
    PendingAuthorization,
    client_of,
    code_not_sent_message,
    done,
    for_pending_authorization,
    send_code,
    with_tx,
)
from .password_login import check_password_attempt, throttled_check


def offered_methods(amr: list[str], has_totp: bool) -> list[str]:
    if "pwd" not in amr:
        return ["pwd"]
    return (["otp", "recovery"] if has_totp else []) + ["sms"]


@bp.route("/login/second-factor", methods=["GET", "POST"])
@for_pending_authorization
def second_factor(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    login = current_session()
    if login is None:
        return redirect(with_tx("auth.login", pending))
    user = login.user
    offered = offered_methods(list(login.amr), user.has_totp)
    method = request.values.get("method") or offered[0]
    if method not in offered:
        method = offered[0]
    form = PasswordForm() if method == "pwd" else CodeForm()
    if form.validate_on_submit():
        proved, error = _prove(user, method, form)
        if proved is not None:
            add_factor(login, proved)  # commits the TOTP step or recovery code used, too
            return done(pending)
        field = form.password if method == "pwd" else form.code
        field.errors = [error]
    form.tx.data = pending.id if pending else ""
    return render_template(
        "second_factor.html",
        form=form,
        method=method,
        offered=offered,
        send_form=ButtonForm(),
        client=client_of(pending),
        pending=pending,
        mobile=user.mobile,
    )


def _prove(user: User, method: str, form: PasswordForm | CodeForm) -> tuple[str | None, str]:
    """Check the factor the user gave; returns the ``amr`` method proved, or None and the message."""
    wrong_code = gettext("The code is not correct or has expired.")
    if method == "pwd":
        person, error = check_password_attempt(user.national_code, form.password.data, captcha_solved=None)
        return ("pwd", "") if person is not None and person.id == user.id else (None, error or "")
    code = form.code.data
    if method == "sms":
        # SMS codes carry their own limit of tries.
        return ("sms", "") if consume_code("step_up", user.mobile, code) else (None, wrong_code)
    # Six digits or a recovery code: guessing is slowed by the same throttle as passwords.
    check = (lambda: totp.verify(user, code)) if method == "otp" else (lambda: totp.use_recovery_code(user, code))
    message = throttled_check(user.national_code, captcha_solved=None, check=check)
    commit()  # the TOTP step or recovery code now spent
    return ("otp", "") if message is None else (None, message or wrong_code)


@bp.post("/login/second-factor/send")
@for_pending_authorization
def second_factor_send(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    login = current_session()
    if login is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx("auth.login", pending))
    try:
        send_code("step_up", login.user.mobile)
        flash(gettext("We sent a code to %(mobile)s.", mobile=display_mobile(login.user.mobile, masked=True)), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(url_for("auth.second_factor", method="sms", tx=pending.id if pending else None), 303)
