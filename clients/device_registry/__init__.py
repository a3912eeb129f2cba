"""A mobile-device registry like Iran's «همتا» (Hamta), a relying party of Hoviyat.

People log in with Hoviyat. The devices registered to their verified national ID (the ``national_id`` of the
ID token, vouched for by ``verified_claims``) are listed; any IMEI can be checked for authenticity; and
problems are filed as tickets (such as "my IMEI does not match the one registered in Hamta"), which the staff
move along with ``flask tickets set-status``. The registry asks for no postal address: it has no use for one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from ..rp_kit.dates import jalali, persian_digits
from ..rp_kit.login import RelyingParty
from ..rp_kit.settings import RpSettings, load_settings
from .models import LoginSession, User, db, seed_demo_devices
from .tickets import STATUSES, cli, find_subject
from .views import registry_blueprint

#: Identity, name, birth date and mobile; never the address (CONTRACTS.md scopes).
SCOPE = "openid profile phone national_id"


def create_app(settings: RpSettings | None = None, overrides: Mapping[str, str] | None = None) -> Flask:
    settings = settings or load_settings("device_registry", dict(overrides or {}))
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SESSION_COOKIE_NAME="device_registry_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
    )
    db.init_app(app)
    rp = RelyingParty(settings, db, User, LoginSession, SCOPE, home_endpoint="registry.home")
    rp.init_app(app)
    app.extensions["device_registry.rp"] = rp
    app.jinja_env.filters["jalali"] = jalali
    app.jinja_env.filters["jalali_iso"] = lambda iso: jalali(dt.date.fromisoformat(iso)) if iso else ""
    app.jinja_env.filters["fa"] = persian_digits
    app.jinja_env.globals["ticket_statuses"] = STATUSES
    app.jinja_env.globals["find_subject"] = find_subject
    app.register_blueprint(registry_blueprint(rp))
    app.cli.add_command(cli)
    with app.app_context():
        db.create_all()
        seed_demo_devices()
    return app
