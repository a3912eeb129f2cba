"""What the sign-in pages share: the pending authorization they serve, where to go when done, the wording
of text messages, and the messages for codes that could not be sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from .. import clock
from ..i18n import localize_digits
from ..oidc.endpoints.authorize import AuthorizationPageError, PendingAuthorization, load_pending, render_page_error
from ..otp import CodeNotSent, SentCode, issue_code, send_sms_code
from ..passkeys import PasskeyRefused
from ..provider import current_provider
from ..rate_limits import client_address
from ..sms import SmsUnavailable
from ..store.clients import get_client
from ..store.models import Client, User
from ..store.users import find_user_by_national_code

log = logging.getLogger(__name__)

#: What a page view returns: a redirect, a rendered page, or a page with its status.
PageAnswer = Response | tuple[str, int] | str

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


def send_code(purpose: str, mobile: str) -> SentCode:
    """Text a new code for ``purpose``; raises :class:`CodeNotSent`."""
    return send_sms_code(purpose, mobile, client_address(), lambda code: sms_code_text(purpose, code))


def code_not_sent_message(error: CodeNotSent, by_email: bool = False) -> str:
    if error.reason == "too_soon":
        return gettext(
            "A code was sent a moment ago. You can ask for a new one in %(seconds)s seconds.",
            seconds=localize_digits(error.retry_after),
        )
    if error.reason == "hourly_limit":
        return gettext("Too many codes were asked for. Please try again later.")
    if by_email:
        return gettext("We could not send the email right now. Please try again in a few minutes.")
    return gettext("We could not send the text message right now. Please try again in a few minutes.")


def send_code_for_account(purpose: str, user: User | None, national_code: str) -> None:
    """Text a code to the account's mobile; for a national code without an account, go through the same
    limits without texting anything, so the page answers alike and tells nobody who has an account."""
    if user is not None:
        send_code(purpose, user.mobile)
    else:
        issue_code(purpose, f"no-account:{national_code}", client_address())


def national_code_step(
    *, purpose: str, flow: str, form: Any, pending: PendingAuthorization | None, next_endpoint: str, template: str
) -> Response | str:
    """The first step of SMS login and of password recovery: a national code in, a code texted to the account's
    mobile (or, without an account, the same answer and limits), then on to ``next_endpoint``."""
    if form.validate_on_submit():
        national_code = form.national_code.data
        user = find_user_by_national_code(national_code)
        try:
            send_code_for_account(purpose, user, national_code)
            remember(flow, national_code=national_code)
            return redirect(with_tx(next_endpoint, pending), 303)
        except CodeNotSent as error:
            form.national_code.errors = [code_not_sent_message(error)]
    form.tx.data = pending.id if pending else ""
    return render_template(template, form=form, client=client_of(pending), pending=pending)


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
    "CodeNotSent",
    "PageAnswer",
    "PendingAuthorization",
    "client_of",
    "code_not_sent_message",
    "done",
    "for_pending_authorization",
    "forget",
    "passkey_refused_message",
    "pending_authorization",
    "recall",
    "registry_unavailable_message",
    "remember",
    "send_code",
    "send_code_for_account",
    "send_notice",
    "with_tx",
]
