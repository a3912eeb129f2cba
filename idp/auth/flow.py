"""What the sign-in pages share: the pending authorization they serve, where to go when done, the wording
of text messages, the messages for codes that could not be sent, and the one rule every page that checks a
code follows (:func:`check_code_attempt`) and that decides when a page checking a secret shows a CAPTCHA
(:func:`captcha_due`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from .. import clock
from ..i18n import localize_digits
from ..oidc.endpoints.authorize import AuthorizationPageError, PendingAuthorization, load_pending, render_page_error
from ..otp import CodeNotSent, SentCode, check_code, claim_code, issue_code, send_sms_code
from ..passkeys import PasskeyRefused
from ..provider import current_provider
from ..rate_limits import client_address
from ..sms import SmsUnavailable
from ..store.clients import get_client
from ..store.models import Client, User
from ..store.users import find_user_by_national_code
from ..web.captcha import captcha_enabled
from ..web.forms import ButtonForm, WithCaptcha, with_captcha
from ..web.login_state import current_user
from . import throttle

log = logging.getLogger(__name__)

#: What a page view returns: a redirect, a rendered page, or a page with its status.
PageAnswer = Response | tuple[str, int] | str

#: Set in the browser's session when a check was refused for want of a CAPTCHA: its pages then show one.
CAPTCHA_FLAG = "login_captcha"

CODE_TEXTS = {
    "register": _l("Hoviyat registration code: %(code)s\nDo not give this code to anyone."),
    "login": _l("Hoviyat login code: %(code)s\nDo not give this code to anyone."),
    "reset": _l("Hoviyat password recovery code: %(code)s\nIf you did not ask for it, ignore this message."),
    "change_mobile": _l("Hoviyat code to confirm your new mobile number: %(code)s\nDo not give this code to anyone."),
    "step_up": _l("Hoviyat confirmation code: %(code)s\nDo not give this code to anyone."),
}


def pending_authorization() -> PendingAuthorization | None:
    """The authorization request this page serves (``tx`` in the query or form), or None.

    Raises :class:`AuthorizationPageError` when the request named is gone or belongs to another browser.
    """
    pending_id = request.values.get("tx")
    return load_pending(pending_id) if pending_id else None


def for_pending_authorization(view: Callable[..., PageAnswer]) -> Callable[..., PageAnswer]:
    """A sign-in page that serves the pending authorization named by ``tx`` (or none): the view gets it as
    ``pending``; a request named but gone, or started in another browser, gets the error page instead."""

    @wraps(view)
    def serving(**kwargs: Any) -> PageAnswer:
        try:
            pending = pending_authorization()
        except AuthorizationPageError as error:
            return render_page_error(error)
        return view(pending, **kwargs)

    return serving


def client_of(pending: PendingAuthorization | None) -> Client | None:
    return get_client(pending.multidict.get("client_id", "")) if pending else None


def done(pending: PendingAuthorization | None) -> Response:
    """Where a finished login (or registration, or recovery) goes: back to the relying party, or home.

    303, so the browser does not repeat the POST that carried a password (RFC 9700 section 4.12).
    """
    if pending is not None:
        return redirect(url_for("oidc.resume", tx=pending.id), 303)
    return redirect(url_for("account.home"), 303)


def with_tx(endpoint: str, pending: PendingAuthorization | None, **values: str) -> str:
    if pending is not None:
        values["tx"] = pending.id
    return url_for(endpoint, **values)


def sms_code_text(purpose: str, code: str) -> str:
    # The code stays in ASCII digits even in Persian: phones offer to fill in a code only when they read one.
    return str(CODE_TEXTS[purpose]) % {"code": code}


def asked_by_owner(target: str, captcha_solved: bool) -> bool:
    """Whether a request for a code to ``target`` spends the owner's budget (idp.otp): it came with a solved
    CAPTCHA, or from the account of that number logged in here. Anyone else's spends the strangers' budget, so
    a stranger's requests cannot leave the owner without a code."""
    if captcha_solved and captcha_enabled():
        return True
    user = current_user()
    return user is not None and user.mobile == target


def send_code(purpose: str, mobile: str, *, captcha_solved: bool) -> SentCode:
    """Text a new code for ``purpose``; raises :class:`CodeNotSent`. ``captcha_solved``: this request came with
    a CAPTCHA solved (see :func:`asked_by_owner`)."""
    return send_sms_code(
        purpose,
        mobile,
        client_address(),
        lambda code: sms_code_text(purpose, code),
        verified=asked_by_owner(mobile, captcha_solved),
    )


def code_not_sent_message(error: CodeNotSent, by_email: bool = False) -> str:
    if error.reason == "too_soon":
        return gettext(
            "A code was sent a moment ago. You can ask for a new one in %(seconds)s seconds.",
            seconds=localize_digits(error.retry_after),
        )
    if error.reason == "hourly_limit" and error.anonymous and captcha_enabled():
        return gettext(
            "Too many codes were asked for without the security code. Start again and type the digits in the "
            "picture to get a code."
        )
    if error.reason == "hourly_limit":
        return gettext("Too many codes were asked for. Please try again later.")
    if by_email:
        return gettext("We could not send the email right now. Please try again in a few minutes.")
    return gettext("We could not send the text message right now. Please try again in a few minutes.")


def code_target(user: User | None, national_code: str) -> str:
    """Where the codes of a sign-in by national code go: the account's mobile, or, for a national code without
    an account, a stand-in that gets the same limits, records and checks but no text message."""
    return user.mobile if user is not None else f"no-account:{national_code}"


def send_code_for_account(purpose: str, user: User | None, national_code: str, *, captcha_solved: bool) -> None:
    """Text a code to the account's mobile; for a national code without an account, make the same code for the
    stand-in (:func:`code_target`) without texting it, so the pages answer and cost alike and tell nobody who
    has an account."""
    if user is not None:
        send_code(purpose, user.mobile, captcha_solved=captcha_solved)
    else:
        target = code_target(None, national_code)
        issue_code(purpose, target, client_address(), verified=asked_by_owner(target, captcha_solved))


def refusal_message(verdict: throttle.Verdict) -> str:
    """What a page says when the throttle refuses to check a secret now."""
    if verdict.wait_seconds:
        seconds = localize_digits(verdict.wait_seconds)
        return gettext("Too many attempts. Wait %(seconds)s seconds and try again.", seconds=seconds)
    return gettext("Too many attempts. Type the digits in the picture, then try again.")


def captcha_due(*, national_code: str | None = None, code_target: str | None = None) -> bool:
    """Whether a page about to check a secret must show a CAPTCHA: the one rule for every such page (login,
    codes, step-up, mobile change, the account's password checks). Yes when CAPTCHA is on and this browser was
    refused for want of one, or the password throttle asks one for ``national_code`` (or this address), or the
    wrong codes sent to ``code_target`` reached ``otp.captcha_after_failures``."""
    if not captcha_enabled():
        return False
    if session.get(CAPTCHA_FLAG):
        return True
    if national_code is not None and throttle.captcha_needed(national_code, client_address()):
        return True
    return code_target is not None and throttle.code_captcha_needed(code_target)


def shown_with_captcha_if_due(form: WithCaptcha, **keys: str | None) -> WithCaptcha:
    """The form to show again after a refused secret: with a CAPTCHA when :func:`captcha_due` now asks one."""
    if form.shows_captcha or not captcha_due(**keys):
        return form
    return with_captcha(form)


def check_code_attempt(
    purpose: str, target: str, code: str, captcha_solved: bool, *, use_up: bool = True
) -> str | None:
    """Check a code sent to ``target`` under the throttle of wrong codes (idp.auth.throttle); every check spends
    one of the code's tries. Returns None when the code is right (and used up, unless ``use_up`` is false: the
    caller then claims it with :func:`idp.otp.claim_code`), else the message to show."""
    verdict = throttle.begin_code_check(target, captcha_solved or not captcha_enabled())
    if not verdict.allowed:
        if verdict.captcha_required:
            session[CAPTCHA_FLAG] = True
        return refusal_message(verdict)
    right = check_code(purpose, target, code) and (not use_up or claim_code(purpose, target) is not None)
    if right:
        throttle.record_code_success(target)
        session.pop(CAPTCHA_FLAG, None)
        return None
    throttle.record_code_failure(target)
    return gettext("The code is not correct or has expired.")


def national_code_step(
    *, purpose: str, flow: str, form: Any, pending: PendingAuthorization | None, next_endpoint: str, template: str
) -> Response | str:
    """The first step of SMS login and of password recovery: a national code in, a code texted to the account's
    mobile (or, without an account, the same answer and limits), then on to ``next_endpoint``."""
    if form.validate_on_submit():
        national_code = form.national_code.data
        user = find_user_by_national_code(national_code)
        try:
            send_code_for_account(purpose, user, national_code, captcha_solved=form.shows_captcha)
            remember(flow, national_code=national_code)
            return redirect(with_tx(next_endpoint, pending), 303)
        except CodeNotSent as error:
            form.national_code.errors = [code_not_sent_message(error)]
    form.tx.data = pending.id if pending else ""
    return render_template(template, form=form, client=client_of(pending), pending=pending)


def national_code_resend(
    *, purpose: str, flow: str, pending: PendingAuthorization | None, start_endpoint: str, next_endpoint: str
) -> Response:
    """ "Send the code again" of SMS login and password recovery: a new code to the account's mobile of the national
    code step one took (or the same answer and limits without an account), then back to ``next_endpoint``."""
    state = recall(flow)
    if state is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx(start_endpoint, pending))
    user = find_user_by_national_code(state["national_code"])
    try:
        send_code_for_account(purpose, user, state["national_code"], captcha_solved=False)
        flash(gettext("If the national code has an account, a new code was sent to its mobile."), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(with_tx(next_endpoint, pending), 303)


def passkey_refused_message(refused: PasskeyRefused) -> str:
    if refused.reason == "expired":
        return gettext("That passkey request has expired or was used already. Try again.")
    if refused.reason == "unknown":
        return gettext("This passkey is not registered for a Hoviyat account (or not for this one).")
    if refused.reason == "taken":
        return gettext("This passkey is registered already and cannot be added again.")
    if refused.reason == "clone":
        return gettext(
            "This passkey was refused: its counter went backwards, a sign that it may have been copied. "
            "Use another way in, then check your passkeys."
        )
    return gettext("The passkey could not be checked. Try again.")


def send_notice(mobile: str, text: str, purpose: str) -> None:
    """Tell the account's mobile of a change, so an owner who did not make it learns of it; a notice that
    cannot be sent changes nothing (the change is in the security events all the same)."""
    try:
        current_provider().sms.send(mobile, text, purpose=purpose)
    except SmsUnavailable:
        log.warning("could not send a %s notice", purpose)


def registry_unavailable_message() -> str:
    return gettext("The identity registry is not answering right now. Please try again in a few minutes.")


def remember(flow: str, **values: object) -> None:
    """Keep what a two-step page learnt in step one (in the server-side session)."""
    session[flow] = {**values, "at": clock.timestamp()}


def recall(flow: str, max_age: int = 1800) -> dict | None:
    value = session.get(flow)
    if not value or clock.timestamp() - value.get("at", 0) > max_age:
        return None
    return value


def forget(flow: str) -> None:
    session.pop(flow, None)


__all__ = [
    "CAPTCHA_FLAG",
    "CodeNotSent",
    "PageAnswer",
    "PendingAuthorization",
    "asked_by_owner",
    "captcha_due",
    "check_code_attempt",
    "client_of",
    "code_not_sent_message",
    "code_target",
    "done",
    "for_pending_authorization",
    "forget",
    "passkey_refused_message",
    "pending_authorization",
    "recall",
    "refusal_message",
    "registry_unavailable_message",
    "remember",
    "send_code",
    "send_code_for_account",
    "send_notice",
    "shown_with_captcha_if_due",
    "with_tx",
]
