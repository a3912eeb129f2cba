"""The Flask app every example site starts from: its own session cookie, its database, "Log in with Hoviyat"
and the Persian date and digit filters of its pages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from flask_sqlalchemy import SQLAlchemy

from .dates import jalali, persian_digits
from .login import RelyingParty
from .settings import RpSettings


def new_site(
    import_name: str,
    site: str,
    settings: RpSettings,
    db: SQLAlchemy,
    user_model: Any,
    session_model: Any,
    scope: str,
    home_endpoint: str,
) -> tuple[Flask, RelyingParty]:
    app = Flask(import_name, template_folder=str(Path(__file__).parent.parent / site / "templates"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        # Cookies are per host, not per port: on localhost the two sites would overwrite each other's.
        SESSION_COOKIE_NAME=f"{site}_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
    )
    db.init_app(app)
    rp = RelyingParty(settings, db, user_model, session_model, scope, home_endpoint=home_endpoint)
    rp.init_app(app)
    app.extensions[f"{site}.rp"] = rp
    app.jinja_env.filters["jalali"] = jalali
    app.jinja_env.filters["jalali_iso"] = lambda iso: jalali(dt.date.fromisoformat(iso)) if iso else ""
    app.jinja_env.filters["fa"] = persian_digits
    # The site's icon is static/favicon.svg, linked by its pages; browsers also ask for /favicon.ico unprompted.
    app.add_url_rule("/favicon.ico", "favicon", lambda: redirect(url_for("static", filename="favicon.svg"), 301))
    return app, rp
