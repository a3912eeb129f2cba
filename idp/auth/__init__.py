"""The ``auth`` blueprint: logging in at the provider (national code and password)."""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import gettext

from ..extensions import limiter
from ..oidc.endpoints.authorize import (
    AuthorizationPageError,
    PendingAuthorization,
    load_pending,
    render_page_error,
)
from ..passwords import hash_password, needs_rehash, verify_password
from ..provider import current_provider
from ..rules import InvalidInput
from ..rules.national_code import normalize_national_code
from ..scopes import ACR_ONE_FACTOR
from ..store import audit, commit
from ..store.clients import get_client
from ..store.users import find_user_by_national_code, set_password_hash
from ..web.forms import LoginForm
from ..web.login_state import current_session, log_in

bp = Blueprint("auth", __name__)


def _login_rate() -> str:
    return current_provider().config.limits.login_per_ip


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate, methods=["POST"])
def login() -> Response | tuple[str, int] | str:
    pending_id = request.values.get("tx")
    pending: PendingAuthorization | None = None
    if pending_id:
        try:
            pending = load_pending(pending_id)
        except AuthorizationPageError as error:
            return render_page_error(error)
    elif current_session() is not None and request.method == "GET":
        return redirect(url_for("account.home"))

    form = LoginForm()
    if request.method == "GET":
        form.tx.data = pending_id
        hint = pending.multidict.get("login_hint") if pending else None
        if hint:
            # A hint we cannot read is ignored, as OpenID Connect Core 3.1.2.1 allows.
            with contextlib.suppress(InvalidInput):
                form.national_code.data = normalize_national_code(hint)

    if form.validate_on_submit():
        user = find_user_by_national_code(form.national_code.data)
        # verify_password spends the same time when there is no such user: no timing oracle on national codes.
        if verify_password(user.password_hash if user else None, form.password.data) and user is not None:
            if needs_rehash(user.password_hash):
                set_password_hash(user, hash_password(form.password.data))
            log_in(user, amr=["pwd"], acr=ACR_ONE_FACTOR)
            # 303: the browser must not repeat the POST (with the password) at the next address (RFC 9700 4.12).
            if pending is not None:
                return redirect(url_for("oidc.resume", tx=pending.id), 303)
            return redirect(url_for("account.home"), 303)
        audit.record("login.failed", user_id=user.id if user else None, method="pwd")
        commit()
        form.password.errors = [gettext("The national code or the password is not correct.")]

    client = get_client(pending.multidict.get("client_id", "")) if pending else None
    return render_template("login.html", form=form, client=client)
