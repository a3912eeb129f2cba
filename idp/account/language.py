"""The language switcher: the user's choice of Persian or English, kept in the browser session."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, redirect, request, session

from ..config import SUPPORTED_LOCALES
from .blueprint import bp


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
