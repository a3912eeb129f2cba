"""Password recovery for an account with a passkey.

By the passkey alone: a passkey with user verification is two factors, so the user proves it and chooses a
new password, with no text message.

By SMS: a code to the mobile is one factor, which a SIM swap gives away, so it must not be enough for an
account that has a passkey (ASVS 5.0 section 6.4.3: recovery must not bypass the stronger factor). A correct
code starts a wait of ``passkeys.sms_recovery_delay`` seconds, with a notice to the mobile and in the security
events; only a recovery by SMS made after the wait (within ``passkeys.sms_recovery_window``) sets the password.
A login with the passkey in between cancels it, as the owner is evidently not locked out.
"""

from __future__ import annotations

import datetime as dt

from flask import Response, redirect, render_template
from flask_babel import gettext

from .. import clock, passkeys
from ..passwords import hash_password
from ..provider import current_provider
from ..rate_limits import limited
from ..store import audit, commit
from ..store.models import User
from ..store.passkeys import has_passkeys
from ..store.users import get_user, set_password_hash
from ..web.forms import NewPasswordForm, PasskeyForm, password_refusal
from ..web.login_state import end_other_sessions, log_in, notify_sessions_ended
from . import throttle
from .blueprint import bp
from .flow import (
    PendingAuthorization,
    client_of,
    done,
    for_pending_authorization,
    forget,
    passkey_refused_message,
    recall,
    remember,
    send_notice,
    with_tx,
)

FLOW = "passkey_recovery"
#: Seconds the user has between proving the passkey and choosing the new password.
PROVED_FOR = 600
HOLD_KEY = "sms-recovery-hold:"


@bp.route("/password/forgot/passkey", methods=["GET", "POST"])
@limited(lambda config: config.limits.login_per_ip, "login")
@for_pending_authorization
def recover_with_passkey(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    form = PasskeyForm()
    if form.validate_on_submit():
        try:
            passkey = passkeys.authenticate(passkeys.RECOVERY, form.credential.data)
        except passkeys.PasskeyRefused as refused:
            form.credential.errors = [passkey_refused_message(refused)]
        else:
            commit()  # the counter moved forward
            remember(FLOW, user_id=passkey.user_id, amr=passkeys.amr_of(passkey))
            return redirect(with_tx("auth.reset_password_with_passkey", pending), 303)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "recover_with_passkey.html",
        form=form,
        client=client_of(pending),
        pending=pending,
    )


@bp.route("/password/reset/passkey", methods=["GET", "POST"])
@for_pending_authorization
def reset_password_with_passkey(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW, max_age=PROVED_FOR)
    user = get_user(state["user_id"]) if state else None
    if state is None or user is None:
        return redirect(with_tx("auth.recover_with_passkey", pending))
    form = NewPasswordForm()
    if form.validate_on_submit():
        refusal = password_refusal(
            form.password.data, national_code=user.national_code, mobile=user.mobile, birthdate=user.birthdate
        )
        if refusal is not None:
            form.password.errors = [refusal]
        else:
            set_password_hash(user, hash_password(form.password.data))
            ended = end_other_sessions(user, keep=None, reason="password_reset")
            audit.record("password.reset", user_id=user.id, method="passkey")
            commit()
            notify_sessions_ended(ended)
            forget(FLOW)
            cancel_sms_recovery(user)
            throttle.record_success(user.national_code)
            send_notice(
                user.mobile,
                gettext(
                    "Hoviyat: the password of your account was changed after a recovery with a passkey. If you did "
                    "not do this, contact support at once."
                ),
                "password_reset",
            )
            log_in(user, amr=list(state["amr"]))
            return done(pending)
    form.tx.data = pending.id if pending else ""
    return render_template("reset_password_passkey.html", form=form, client=client_of(pending), pending=pending)


# -- recovery by SMS of an account with a passkey --------------------------------------------------------


def hold_sms_recovery(user: User) -> dt.datetime | None:
    """Called once an SMS recovery code proved to be right. None when the password may be set now: the account
    has no passkey, or its wait is over. Otherwise the moment the wait ends: the first such call starts it (and
    texts the notice); later ones, during the wait, change nothing."""
    if not has_passkeys(user.id):
        return None
    config = current_provider().config.passkeys
    store = current_provider().store
    now = clock.timestamp()
    started = {"started_at": now}
    # add(), not put(): of two requests starting the wait at once, one starts it; a wait never restarts.
    if store.add(HOLD_KEY + user.id, started, config.sms_recovery_delay + config.sms_recovery_window):
        ready_at = clock.now() + dt.timedelta(seconds=config.sms_recovery_delay)
        audit.record("password.reset_held", user_id=user.id, ready_at=ready_at.isoformat())
        commit()
        send_notice(
            user.mobile,
            gettext(
                "Hoviyat: a password recovery by text message was started for your account. Because the account "
                "has a passkey, it can be finished only after a wait. If this was not you, log in with your passkey: "
                "that cancels it."
            ),
            "password_reset",
        )
        return ready_at
    record = store.get(HOLD_KEY + user.id) or started
    started_at = int(record.get("started_at", now))
    if now - started_at < config.sms_recovery_delay:
        return dt.datetime.fromtimestamp(started_at + config.sms_recovery_delay, dt.UTC)
    return None


def finish_sms_recovery(user: User) -> None:
    """The wait served its purpose: the next recovery by SMS waits again."""
    current_provider().store.delete(HOLD_KEY + user.id)


def cancel_sms_recovery(user: User) -> None:
    if current_provider().store.consume(HOLD_KEY + user.id) is not None:
        audit.record("password.reset_hold_cancelled", user_id=user.id)
        commit()
