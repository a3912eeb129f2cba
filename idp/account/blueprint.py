"""The ``account`` blueprint itself, which each of the package's page modules adds its views to, and the rule
those pages share: the user must be logged in."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, g, redirect, url_for

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
