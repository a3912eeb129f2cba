"""Login with national code and password, slowed down by :mod:`idp.auth.throttle` after failures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flask import Response, redirect, render_template, request, session, url_for
from flask_babel import gettext

from ..i18n import localize_digits
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
from .flow import PendingAuthorization, client_of, done, for_pending_authorization

CAPTCHA_FLAG = "login_captcha"


def throttled_check(national_code: str, captcha_solved: bool | None, check: Callable[[], bool]) -> str | None:
    """Run one secret check (a password, an authenticator code) under the login throttle.

    ``captcha_solved`` is None on pages that show no CAPTCHA (the user is already identified there): only the
    delays apply, so the owner can never be shut out by a CAPTCHA they are not offered. The same when
    ``captcha.enabled`` is off. Returns None when ``check()`` passed, else the message to show; refused
    attempts never run ``check``.
    """
    ip = client_address()
    if captcha_solved is None or not captcha_enabled():
        captcha_solved = True
    verdict = throttle.begin_attempt(national_code, ip, captcha_solved)
    if not verdict.allowed:
        if verdict.captcha_required:
            session[CAPTCHA_FLAG] = True
        if verdict.wait_seconds:
            seconds = localize_digits(verdict.wait_seconds)
            return gettext("Too many attempts. Wait %(seconds)s seconds and try again.", seconds=seconds)
        return gettext("Too many attempts. Type the digits in the picture, then try again.")
    if check():
        throttle.record_success(national_code)
        session.pop(CAPTCHA_FLAG, None)
        return None
    throttle.record_failure(ip)
    if verdict.captcha_required or throttle.captcha_needed(national_code, ip):
        session[CAPTCHA_FLAG] = True
    return ""


def check_password_attempt(
    national_code: str, password: str, captcha_solved: bool | None
) -> tuple[User | None, str | None]:
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

    form = LoginForm(show_captcha=captcha_enabled() and bool(session.get(CAPTCHA_FLAG)))
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
        if session.get(CAPTCHA_FLAG) and captcha_enabled() and not form.shows_captcha:
            form = _with_captcha(form)
    return render_template("login.html", form=form, client=client_of(pending), pending=pending)


def _with_captcha(previous: LoginForm) -> LoginForm:
    """The same form, now with a CAPTCHA, keeping what the user typed and the error."""
    form = LoginForm(formdata=None, show_captcha=True)
    form.national_code.data = previous.national_code.data
    form.tx.data = previous.tx.data
    form.password.errors = previous.password.errors
    return form
