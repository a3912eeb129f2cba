"""Login with national code and a code sent by SMS to the account's mobile (EMTA's "one-time password").

Step one answers the same whether or not the national code has an account, so the page tells nobody who
is registered; step two fails the same way for a wrong code and for no account.
"""

from __future__ import annotations

from flask import Response, flash, redirect, render_template
from flask_babel import gettext

from ..otp import CodeNotSent, consume_code
from ..store.users import find_user_by_national_code
from ..web.forms import ButtonForm, CodeForm, OtpLoginStartForm
from ..web.login_state import log_in
from .blueprint import bp
from .flow import (
    PendingAuthorization,
    client_of,
    code_not_sent_message,
    done,
    for_pending_authorization,
    forget,
    national_code_step,
    recall,
    send_code_for_account,
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
    form = CodeForm()
    if form.validate_on_submit():
        user = find_user_by_national_code(state["national_code"])
        if user is not None and consume_code("login", user.mobile, form.code.data):
            forget(FLOW)
            log_in(user, amr=["sms"])
            return done(pending)
        form.code.errors = [gettext("The code is not correct or has expired.")]
    form.tx.data = pending.id if pending else ""
    return render_template(
        "sms_login_verify.html", form=form, resend_form=ButtonForm(), client=client_of(pending), pending=pending
    )


@bp.post("/login/sms/resend")
@for_pending_authorization
def sms_login_resend(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx("auth.sms_login_start", pending))
    user = find_user_by_national_code(state["national_code"])
    try:
        send_code_for_account("login", user, state["national_code"])
        flash(gettext("If the national code has an account, a new code was sent to its mobile."), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(with_tx("auth.sms_login_verify", pending), 303)
