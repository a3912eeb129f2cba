"""The ``account`` blueprint: the signed-in user's pages (profile, security, sessions, connected apps,
activity), the support page and the language switcher. One module per page group."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, redirect, request, session, url_for

from ..config import SUPPORTED_LOCALES
from ..web.login_state import current_session

bp = Blueprint("account", __name__)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages about the account: the user must be logged in; ``g.login`` is their session."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        login = current_session()
        if login is None:
            return redirect(url_for("auth.login"))
        g.login = login
        return view(*args, **kwargs)

    return wrapper


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


from . import activity, apps, profile, security, sessions, support  # noqa: E402, F401
