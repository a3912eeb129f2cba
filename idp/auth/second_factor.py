"""The second factor (step-up): when a relying party asks for ``urn:hoviyat:loa:2`` and the session has one
factor, the logged-in user proves one more. Something known (the password) and something held
(an SMS code to the account's mobile, an authenticator-app code or a recovery code) together make loa:2.

Offered: the password when the session lacks it (after an SMS login), unless the password was chosen in this
session through a reset by SMS (then nothing here can add a factor: the user logs in again); otherwise the
authenticator app when enrolled (or a recovery code), and an SMS code.
"""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import totp
from ..i18n import display_mobile
from ..otp import CodeNotSent
from ..store import commit
from ..store.models import User, UserSession
from ..web.forms import ButtonForm, CodeForm, PasswordForm
from ..web.login_state import add_factor, counts_as_factor, current_session
from .blueprint import bp
from .flow import (
    PendingAuthorization,
    captcha_due,
    check_code_attempt,
    client_of,
    code_not_sent_message,
    done,
    for_pending_authorization,
    send_code,
    shown_with_captcha_if_due,
    with_tx,
)
from .password_login import check_password_attempt, throttled_check


def enrolled_second_factors(user: User) -> list[str]:
    """The second factors ``user`` has enrolled besides the SIM, by their ``amr`` names (RFC 8176): "otp" for an
    authenticator app (its recovery codes stand in for it). A password reset by SMS must prove one of them too
    (ASVS 5.0 section 6.4.3); passkeys join here when they exist."""
    return ["otp"] if user.has_totp else []


def proves_enrolled_factor(user: User, code: str) -> bool:
    """Whether ``code`` proves one of :func:`enrolled_second_factors`: six digits from the authenticator app,
    or one of its recovery codes (eight letters and digits), which is then used up (not committed)."""
    typed = code.strip().replace(" ", "")
    if typed.isascii() and typed.isdigit():
        return totp.verify(user, typed)
    return totp.use_recovery_code(user, typed)


def offered_methods(login: UserSession) -> list[str]:
    """The methods this session may prove next; empty when none would add a factor."""
    if "pwd" not in login.amr:
        return ["pwd"] if counts_as_factor(login, "pwd") else []
    return (["otp", "recovery"] if "otp" in enrolled_second_factors(login.user) else []) + ["sms"]


def _throttle_keys(user: User, method: str) -> dict[str, str]:
    """What the throttle counts for ``method``: wrong SMS codes per number, other secrets per account."""
    return {"code_target": user.mobile} if method == "sms" else {"national_code": user.national_code}


@bp.route("/login/second-factor", methods=["GET", "POST"])
@for_pending_authorization
def second_factor(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    login = current_session()
    if login is None:
        return redirect(with_tx("auth.login", pending))
    user = login.user
    offered = offered_methods(login)
    if not offered:
        return render_template(
            "second_factor.html", method=None, offered=[], client=client_of(pending), pending=pending, form=None
        )
    method = request.values.get("method") or offered[0]
    if method not in offered:
        method = offered[0]
    keys = _throttle_keys(user, method)
    form_class = PasswordForm if method == "pwd" else CodeForm
    form = form_class(show_captcha=captcha_due(**keys))
    if form.validate_on_submit():
        proved, error = _prove(user, method, form)
        if proved is not None:
            add_factor(login, proved)  # commits the TOTP step or recovery code used, too
            return done(pending)
        field = form.password if method == "pwd" else form.code
        field.errors = [error]
        form = shown_with_captcha_if_due(form, **keys)
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
    solved = form.shows_captcha
    if method == "pwd":
        person, error = check_password_attempt(user.national_code, form.password.data, solved)
        return ("pwd", "") if person is not None and person.id == user.id else (None, error or "")
    code = form.code.data
    if method == "sms":
        error = check_code_attempt("step_up", user.mobile, code, solved)
        return ("sms", "") if error is None else (None, error)
    # Six digits or a recovery code: guessing is slowed by the same throttle as passwords.
    check = (lambda: totp.verify(user, code)) if method == "otp" else (lambda: totp.use_recovery_code(user, code))
    message = throttled_check(user.national_code, solved, check)
    commit()  # the TOTP step or recovery code now spent
    return ("otp", "") if message is None else (None, message or gettext("The code is not correct or has expired."))


@bp.post("/login/second-factor/send")
@for_pending_authorization
def second_factor_send(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    login = current_session()
    if login is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx("auth.login", pending))
    try:
        send_code("step_up", login.user.mobile, captcha_solved=False)  # the owner, logged in
        flash(gettext("We sent a code to %(mobile)s.", mobile=display_mobile(login.user.mobile, masked=True)), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(url_for("auth.second_factor", method="sms", tx=pending.id if pending else None), 303)
