"""The ``account`` blueprint: the signed-in user's home page and the language switcher."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session, url_for

from ..config import SUPPORTED_LOCALES
from ..web.forms import LogoutForm
from ..web.login_state import current_session

bp = Blueprint("account", __name__)


@bp.get("/")
def home() -> Response | str:
    login = current_session()
    if login is None:
        return redirect(url_for("auth.login"))
    return render_template("account/home.html", user=login.user, login=login, logout_form=LogoutForm())


@bp.get("/language/<code>")
def switch_language(code: str) -> Response:
    if code in SUPPORTED_LOCALES:
        session["locale"] = code
    target = request.args.get("next", "/")
    parts = urlsplit(target)
    # Only a path on this site: the switcher must not become an open redirect.
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    return redirect(target)
