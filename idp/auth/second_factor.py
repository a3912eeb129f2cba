"""The second factor (step-up): when a relying party asks for ``urn:hoviyat:loa:2`` and the session has one
factor, the logged-in user proves one more. Something known (the password) and something held
(an SMS code to the account's mobile, an authenticator-app code or a recovery code) together make loa:2; a
passkey with user verification is two factors by itself and makes loa:3.

Offered: only a passkey when the relying party asks for loa:3; otherwise the password when the session lacks
it (after an SMS login), unless the password was chosen in this session through a reset by SMS (then only a
passkey can add a factor, or the user logs in again); otherwise the authenticator app when enrolled (or a
recovery code), and an SMS code. A passkey, when the account has one, comes first: it costs no text message.

The same page confirms it is the user again before the account's passkeys are changed (``next=passkeys``).
"""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import passkeys, totp
from ..i18n import display_mobile
from ..oidc.endpoints.authorize import requested_acr
from ..otp import CodeNotSent
from ..scopes import ACR_PHISHING_RESISTANT
from ..store import commit
from ..store.models import User, UserSession
from ..store.passkeys import has_passkeys
from ..web.forms import ButtonForm, CodeForm, PasskeyForm, PasswordForm
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
    passkey_refused_message,
    send_code,
    shown_with_captcha_if_due,
    with_tx,
)
from .password_login import check_password_attempt, throttled_check

#: Where the page may send the user once confirmed, when no relying party waits (``next``).
NEXT_PAGES = {"passkeys": "account.passkeys", "two-factor": "account.two_factor"}


def enrolled_second_factors(user: User) -> list[str]:
    """The second factors ``user`` has enrolled besides the SIM: "otp" for an authenticator app (its recovery
    codes stand in for it) and "passkey". A password reset by SMS must prove one of them too (ASVS 5.0 section
    6.4.3)."""
    return (["otp"] if user.has_totp else []) + (["passkey"] if has_passkeys(user.id) else [])


def proves_enrolled_factor(user: User, code: str) -> bool:
    """Whether ``code`` proves the authenticator app: six digits from it, or one of its recovery codes (eight
    letters and digits), which is then used up (not committed)."""
    typed = code.strip().replace(" ", "")
    if typed.isascii() and typed.isdigit():
        return totp.verify(user, typed)
    return totp.use_recovery_code(user, typed)


def offered_methods(login: UserSession, required_acr: str) -> list[str]:
    """The methods this session may prove next; empty when none would add a factor."""
    user = login.user
    passkey = ["passkey"] if "passkey" in enrolled_second_factors(user) and passkeys.passkeys_possible() else []
    if required_acr == ACR_PHISHING_RESISTANT:
        return passkey
    if "pwd" not in login.amr:
        return (["pwd"] if counts_as_factor(login, "pwd") else []) + passkey
    return [*passkey, *(["otp", "recovery"] if user.has_totp else []), "sms"]


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
    offered = offered_methods(login, requested_acr(pending))
    next_page = request.values.get("next") if pending is None else None
    next_page = next_page if next_page in NEXT_PAGES else None
    if not offered:
        return render_template(
            "second_factor.html",
            method=None,
            offered=[],
            next_page=next_page,
            client=client_of(pending),
            pending=pending,
            form=None,
        )
    method = request.values.get("method") or offered[0]
    if method not in offered:
        method = offered[0]
    keys = _throttle_keys(user, method)
    if method == "passkey":
        form: PasskeyForm | PasswordForm | CodeForm = PasskeyForm()
    else:
        form = (PasswordForm if method == "pwd" else CodeForm)(show_captcha=captcha_due(**keys))
    if form.validate_on_submit():
        proved, error = _prove(user, method, form)
        if proved:
            add_factor(login, *proved)  # commits the TOTP step or recovery code used, too
            if next_page is not None:
                return redirect(url_for(NEXT_PAGES[next_page]), 303)
            return done(pending)
        field = form.password if method == "pwd" else form.credential if method == "passkey" else form.code
        field.errors = [error]
        if method != "passkey":
            form = shown_with_captcha_if_due(form, **keys)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "second_factor.html",
        form=form,
        method=method,
        offered=offered,
        next_page=next_page,
        send_form=ButtonForm(),
        client=client_of(pending),
        pending=pending,
        mobile=user.mobile,
    )


def _prove(user: User, method: str, form: PasswordForm | CodeForm | PasskeyForm) -> tuple[list[str], str]:
    """Check the factor the user gave; returns the ``amr`` methods proved, or none and the message."""
    if method == "passkey":
        try:
            passkey = passkeys.authenticate(passkeys.STEP_UP, form.credential.data, user)
        except passkeys.PasskeyRefused as refused:
            return [], passkey_refused_message(refused)
        return passkeys.amr_of(passkey), ""
    solved = form.shows_captcha
    if method == "pwd":
        person, error = check_password_attempt(user.national_code, form.password.data, solved)
        return (["pwd"], "") if person is not None and person.id == user.id else ([], error or "")
    code = form.code.data
    if method == "sms":
        error = check_code_attempt("step_up", user.mobile, code, solved)
        return (["sms"], "") if error is None else ([], error)
    # Six digits or a recovery code: guessing is slowed by the same throttle as passwords.
    check = (lambda: totp.verify(user, code)) if method == "otp" else (lambda: totp.use_recovery_code(user, code))
    message = throttled_check(user.national_code, solved, check)
    commit()  # the TOTP step or recovery code now spent
    return (["otp"], "") if message is None else ([], message or gettext("The code is not correct or has expired."))


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
    next_page = request.form.get("next") if request.form.get("next") in NEXT_PAGES else None
    return redirect(
        url_for("auth.second_factor", method="sms", tx=pending.id if pending else None, next=next_page), 303
    )
