"""Forgotten password: a code to the account's registered mobile, then a new password (and, when the account
has a second factor enrolled, that factor too).

Nothing about the account shows before the right code: the code is checked first (each attempt spends one of
its tries, and counts against ``limits.password_reset_per_ip`` and ``limits.password_reset_per_account``), the
password rules (which know the birth date and mobile) only after it. A national code without an account goes
through the same pages, wording, limits and store operations (its codes go to a stand-in that is never
texted). A right code is remembered for this recovery until it would have expired, so a new password refused
by the rules can be replaced without a new code.

Where the account has a second factor (idp.auth.second_factor.enrolled_second_factors), the SIM alone does not
reset the password (ASVS 5.0 section 6.4.3): the new password waits, as its Argon2 hash in the server-side
session, for the authenticator app's code or a recovery code. The session that sets the password records it,
so that password is not a second factor there (idp.web.login_state.counts_as_factor).

An account whose only second factor is a passkey is recovered with the passkey (idp.auth.passkey_recovery), or by
SMS only after a wait: the first right code and new password start it (with a notice to the mobile), and a
recovery by SMS after it goes through.

A reset ends every other session and revokes every refresh token of the account, and is recorded in the audit
log.
"""

from __future__ import annotations

from flask import Response, make_response, redirect, render_template, request
from flask_babel import gettext

from .. import clock
from ..otp import claim_code
from ..passwords import hash_password
from ..provider import current_provider
from ..rate_limits import charge_all, limited
from ..security import sha256_hex
from ..store import audit, commit
from ..store.models import User
from ..store.users import find_user_by_national_code, set_password_hash
from ..web.forms import (
    ButtonForm,
    ForgotStartForm,
    ResetPasswordForm,
    ResetSecondFactorForm,
    password_refusal,
)
from ..web.login_state import end_other_sessions, log_in, notify_sessions_ended
from . import throttle
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
    remember,
    shown_with_captcha_if_due,
    with_tx,
)
from .passkey_recovery import finish_sms_recovery, hold_sms_recovery
from .password_login import throttled_check
from .second_factor import enrolled_second_factors, proves_enrolled_factor

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


def _code_verified(state: dict) -> bool:
    """Whether this recovery's code was right and would not have expired yet."""
    return state.get("verified_until", 0) > clock.timestamp()


def _charge_account(national_code: str) -> None:
    """Count one attempt against the national code's limit (an account or not, alike); 429 when used up."""
    rate = current_provider().config.limits.password_reset_per_account
    charge_all([(rate, "password-reset-account", sha256_hex(national_code))])


@bp.route("/password/reset", methods=["GET", "POST"])
@limited(lambda config: config.limits.password_reset_per_ip, "password-reset")
@for_pending_authorization
def reset_password(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(with_tx("auth.forgot_password", pending))
    national_code = state["national_code"]
    if request.method == "POST":
        _charge_account(national_code)
    user = find_user_by_national_code(national_code)
    target = code_target(user, national_code)
    verified = user is not None and _code_verified(state)
    form = ResetPasswordForm(show_captcha=captcha_due(code_target=target), without=("code",) if verified else ())
    if form.validate_on_submit():
        password = form.password.data
        if not verified:
            verified = _verify_code(form, user, target, state)
            if verified:  # the code is done with: the page no longer asks for it
                form = ResetPasswordForm(formdata=None, show_captcha=False, without=("code",))
        if verified and user is not None:
            answer = _set_password(user, password, pending)
            if isinstance(answer, Response):
                return answer
            form.password.errors = [answer]
        else:
            form = shown_with_captcha_if_due(form, code_target=target)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "reset_password.html",
        form=form,
        resend_form=ButtonForm(),
        client=client_of(pending),
        pending=pending,
        code_verified=verified,
    )


def _verify_code(form: ResetPasswordForm, user: User | None, target: str, state: dict) -> bool:
    """Check the code (one of its tries) and, when right, use it up and remember it for this recovery until it
    would have expired. The same work for a national code without an account (its stand-in's code)."""
    error = check_code_attempt("reset", target, form.code.data, form.shows_captcha, use_up=False)
    expires_at = claim_code("reset", target) if error is None and user is not None else None
    if expires_at is None:
        form.code.errors = [error or gettext("The code is not correct or has expired.")]
        return False
    remember(FLOW, **{**state, "verified_until": expires_at})
    return True


def _set_password(user: User, password: str, pending: PendingAuthorization | None) -> Response | str:
    """After the right code: the new password if the rules accept it (else their message), once the account's
    second factor, if it has one, is proved too."""
    refusal = password_refusal(password, national_code=user.national_code, mobile=user.mobile, birthdate=user.birthdate)
    if refusal is not None:
        return refusal
    password_hash = hash_password(password)
    factors = enrolled_second_factors(user)
    if "otp" not in factors:
        if "passkey" in factors:
            # No authenticator app to ask for: the passkey's recovery, or a wait (idp.auth.passkey_recovery).
            ready_at = hold_sms_recovery(user)
            if ready_at is not None:
                forget(FLOW)
                return make_response(
                    render_template(
                        "reset_password_held.html", ready_at=ready_at, client=client_of(pending), pending=pending
                    )
                )
            finish_sms_recovery(user)
        return _finish(user, password_hash, ["sms"], pending)
    # The second factor gets as long as a code lives, from now: the SMS code may have been typed at its end.
    until = clock.timestamp() + current_provider().config.otp.ttl
    remember(FLOW, **{**(recall(FLOW) or {}), "password_hash": password_hash, "second_factor_until": until})
    return redirect(with_tx("auth.reset_second_factor", pending), 303)


@bp.route("/password/reset/second-factor", methods=["GET", "POST"])
@limited(lambda config: config.limits.password_reset_per_ip, "password-reset")
@for_pending_authorization
def reset_second_factor(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    user = find_user_by_national_code(state["national_code"]) if state else None
    if state is None or user is None or state.get("second_factor_until", 0) <= clock.timestamp():
        return redirect(with_tx("auth.reset_password" if state else "auth.forgot_password", pending))
    form = ResetSecondFactorForm(show_captcha=captcha_due(national_code=user.national_code))
    if form.validate_on_submit():
        code = form.code.data
        # Guessing the app's codes or recovery codes is slowed by the same throttle as passwords.
        message = throttled_check(user.national_code, form.shows_captcha, lambda: proves_enrolled_factor(user, code))
        commit()  # the TOTP step or recovery code now spent
        if message is None:
            return _finish(user, state["password_hash"], ["sms", "otp"], pending)
        form.code.errors = [message or gettext("The code is not correct or has expired.")]
        form = shown_with_captcha_if_due(form, national_code=user.national_code)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "reset_second_factor.html",
        form=form,
        has_passkey="passkey" in enrolled_second_factors(user),
        client=client_of(pending),
        pending=pending,
    )


def _finish(user: User, password_hash: str, amr: list[str], pending: PendingAuthorization | None) -> Response:
    set_password_hash(user, password_hash)
    ended = end_other_sessions(user, keep=None, reason="password_reset")
    audit.record("password.reset", user_id=user.id, method="+".join(amr))
    commit()
    notify_sessions_ended(ended)
    forget(FLOW)
    throttle.record_success(user.national_code)
    log_in(user, amr=amr, password_set_by_reset=True)
    return done(pending)


@bp.post("/password/reset/resend")
@for_pending_authorization
def reset_password_resend(pending: PendingAuthorization | None) -> Response:
    return national_code_resend(
        purpose="reset",
        flow=FLOW,
        pending=pending,
        start_endpoint="auth.forgot_password",
        next_endpoint="auth.reset_password",
    )
