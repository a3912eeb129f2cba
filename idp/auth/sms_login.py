"""Login with national code and a code sent by SMS to the account's mobile (EMTA's "one-time password").

Step one answers the same whether or not the national code has an account, so the page tells nobody who
is registered; step two fails the same way, and with the same work, for a wrong code and for no account.
Wrong codes count towards the account's long-run cap (idp.auth.throttle): after many in a row the page asks
for a CAPTCHA and spaces the checks.
"""

from __future__ import annotations

from flask import Response, redirect, render_template
from flask_babel import gettext

from ..store.users import find_user_by_national_code
from ..web.forms import ButtonForm, CodeForm, OtpLoginStartForm
from ..web.login_state import log_in
from .blueprint import bp
from .flow import (
    PendingAuthorization,
    captcha_due,
    check_code_attempt,
    client_of,
    code_target,
    done,
    for_pending_authorization,
    forget,
    national_code_resend,
    national_code_step,
    recall,
    shown_with_captcha_if_due,
    with_tx,
)

FLOW = "sms_login"


@bp.route("/login/sms", methods=["GET", "POST"])
@for_pending_authorization
def sms_login_start(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    return national_code_step(
        purpose="login",
        flow=FLOW,
        form=OtpLoginStartForm(),
        pending=pending,
        next_endpoint="auth.sms_login_verify",
        template="sms_login.html",
    )


@bp.route("/login/sms/verify", methods=["GET", "POST"])
@for_pending_authorization
def sms_login_verify(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(with_tx("auth.sms_login_start", pending))
    user = find_user_by_national_code(state["national_code"])
    target = code_target(user, state["national_code"])
    form = CodeForm(show_captcha=captcha_due(code_target=target))
    if form.validate_on_submit():
        error = check_code_attempt("login", target, form.code.data, form.shows_captcha)
        if error is None and user is not None:
            forget(FLOW)
            log_in(user, amr=["sms"])
            return done(pending)
        form.code.errors = [error or gettext("The code is not correct or has expired.")]
        form = shown_with_captcha_if_due(form, code_target=target)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "sms_login_verify.html", form=form, resend_form=ButtonForm(), client=client_of(pending), pending=pending
    )


@bp.post("/login/sms/resend")
@for_pending_authorization
def sms_login_resend(pending: PendingAuthorization | None) -> Response:
    return national_code_resend(
        purpose="login",
        flow=FLOW,
        pending=pending,
        start_endpoint="auth.sms_login_start",
        next_endpoint="auth.sms_login_verify",
    )
