"""Forgotten password: a code to the account's registered mobile, then a new password.

Step one answers alike whether or not the national code has an account. A reset ends every other session
and revokes every refresh token of the account, and is recorded in the audit log. An account with a passkey
is recovered with the passkey, or by SMS only after a wait (:mod:`idp.auth.passkey_recovery`).
"""

from __future__ import annotations

from flask import Response, flash, redirect, render_template
from flask_babel import gettext

from ..otp import CodeNotSent, consume_code
from ..passwords import hash_password
from ..rules import InvalidInput
from ..rules.password import check_password
from ..store import audit, commit
from ..store.users import find_user_by_national_code, set_password_hash
from ..web.forms import ButtonForm, ForgotStartForm, ResetPasswordForm, rule_message
from ..web.login_state import end_other_sessions, log_in, notify_sessions_ended
from . import throttle
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
from .passkey_recovery import finish_sms_recovery, hold_sms_recovery

FLOW = "password_reset"


@bp.route("/password/forgot", methods=["GET", "POST"])
@for_pending_authorization
def forgot_password(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    return national_code_step(
        purpose="reset",
        flow=FLOW,
        form=ForgotStartForm(),
        pending=pending,
        next_endpoint="auth.reset_password",
        template="forgot_password.html",
    )


@bp.route("/password/reset", methods=["GET", "POST"])
@for_pending_authorization
def reset_password(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(with_tx("auth.forgot_password", pending))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        user = find_user_by_national_code(state["national_code"])
        password_error = None
        if user is not None:
            try:
                check_password(
                    form.password.data, national_code=user.national_code, mobile=user.mobile, birthdate=user.birthdate
                )
            except InvalidInput as error:
                password_error = rule_message(error.reason)
        if password_error:
            form.password.errors = [password_error]
        elif user is not None and consume_code("reset", user.mobile, form.code.data):
            # An account with a passkey is not recovered by SMS alone: a wait first (idp.auth.passkey_recovery).
            ready_at = hold_sms_recovery(user)
            if ready_at is not None:
                forget(FLOW)
                return render_template(
                    "reset_password_held.html", ready_at=ready_at, client=client_of(pending), pending=pending
                )
            finish_sms_recovery(user)
            set_password_hash(user, hash_password(form.password.data))
            ended = end_other_sessions(user, keep=None, reason="password_reset")
            audit.record("password.reset", user_id=user.id)
            commit()
            notify_sessions_ended(ended)
            forget(FLOW)
            throttle.record_success(user.national_code)
            log_in(user, amr=["sms"])
            return done(pending)
        else:
            form.code.errors = [gettext("The code is not correct or has expired.")]
    form.tx.data = pending.id if pending else ""
    return render_template(
        "reset_password.html", form=form, resend_form=ButtonForm(), client=client_of(pending), pending=pending
    )


@bp.post("/password/reset/resend")
@for_pending_authorization
def reset_password_resend(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx("auth.forgot_password", pending))
    user = find_user_by_national_code(state["national_code"])
    try:
        send_code_for_account("reset", user, state["national_code"])
        flash(gettext("If the national code has an account, a new code was sent to its mobile."), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(with_tx("auth.reset_password", pending), 303)
