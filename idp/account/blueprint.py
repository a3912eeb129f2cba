"""The ``account`` blueprint itself, which each of the package's page modules adds its views to, and the rule
those pages share: the user must be logged in."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, url_for

from ..web.login_state import current_session, is_fresh

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


def fresh_login() -> bool:
    """Whether this session may change the account's second factors (idp.web.login_state.is_fresh)."""
    return is_fresh(g.login)


def confirm_first(next_page: str, message: str) -> Response:
    """Send the user to confirm it is them (a second factor, idp.auth.second_factor), then back to ``next_page``."""
    flash(message, "error")
    return redirect(confirm_url(next_page), 303)


def confirm_url(next_page: str) -> str:
    return url_for("auth.second_factor", next=next_page)
