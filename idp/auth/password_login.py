"""Login with national code and password, slowed down by :mod:`idp.auth.throttle` after failures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flask import Response, redirect, render_template, request, session, url_for
from flask_babel import gettext

from ..passwords import hash_password, needs_rehash, verify_password
from ..rate_limits import client_address, limited
from ..rules import InvalidInput
from ..rules.national_code import normalize_national_code
from ..store import audit, commit
from ..store.models import User
from ..store.users import find_user_by_national_code, set_password_hash
from ..web.captcha import captcha_enabled
from ..web.forms import LoginForm
from ..web.login_state import current_session, log_in
from . import throttle
from .blueprint import bp
from .flow import (
    CAPTCHA_FLAG,
    PendingAuthorization,
    captcha_due,
    client_of,
    done,
    for_pending_authorization,
    refusal_message,
    shown_with_captcha_if_due,
)


def throttled_check(national_code: str, captcha_solved: bool, check: Callable[[], bool]) -> str | None:
    """Run one secret check (a password, an authenticator or recovery code) under the login throttle.

    ``captcha_solved``: the request came with a solved CAPTCHA. Every page that checks a secret of an account
    shows one when :func:`idp.auth.flow.captcha_due` says so, so the owner is always offered the CAPTCHA the
    throttle asks for; with ``captcha.enabled`` off only the delays apply. Returns None when ``check()`` passed,
    "" when it failed, else the message of the refusal; refused attempts never run ``check``.
    """
    ip = client_address()
    verdict = throttle.begin_attempt(national_code, ip, captcha_solved or not captcha_enabled())
    if not verdict.allowed:
        if verdict.captcha_required:
            session[CAPTCHA_FLAG] = True
        return refusal_message(verdict)
    if check():
        throttle.record_success(national_code)
        session.pop(CAPTCHA_FLAG, None)
        return None
    throttle.record_failure(ip)
    if verdict.captcha_required or throttle.captcha_needed(national_code, ip):
        session[CAPTCHA_FLAG] = True
    return ""


def check_password_attempt(national_code: str, password: str, captcha_solved: bool) -> tuple[User | None, str | None]:
    """One throttled password check. Returns (user, None) or (None, message).

    The same path, wording and cost for an unknown national code as for a wrong password.
    """
    user = find_user_by_national_code(national_code)
    message = throttled_check(
        national_code, captcha_solved, lambda: verify_password(user.password_hash if user else None, password)
    )
    if message is None and user is not None:
        if needs_rehash(user.password_hash):
            set_password_hash(user, hash_password(password))
        return user, None
    if message == "":
        audit.record("login.failed", user_id=user.id if user else None, method="pwd")
        commit()
        message = gettext("The national code or the password is not correct.")
    return None, message


@bp.route("/login", methods=["GET", "POST"])
@limited(lambda config: config.limits.login_per_ip, "login")
@for_pending_authorization
def login(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    if pending is None and current_session() is not None and request.method == "GET":
        return redirect(url_for("account.home"))

    # The account is not known before the form is posted: a CAPTCHA shows once this browser was refused one.
    form = LoginForm(show_captcha=captcha_due())
    if request.method == "GET":
        form.tx.data = pending.id if pending else ""
        hint = pending.multidict.get("login_hint") if pending else None
        if hint:
            # A hint we cannot read is ignored, as OpenID Connect Core 3.1.2.1 allows.
            with contextlib.suppress(InvalidInput):
                form.national_code.data = normalize_national_code(hint)

    if form.validate_on_submit():
        user, error = check_password_attempt(form.national_code.data, form.password.data, form.shows_captcha)
        if user is not None:
            log_in(user, amr=["pwd"])
            return done(pending)
        form.password.errors = [error]
        form = shown_with_captcha_if_due(form)
    return render_template("login.html", form=form, client=client_of(pending), pending=pending)
