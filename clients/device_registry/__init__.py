"""A mobile-device registry like Iran's «همتا» (Hamta), a relying party of Hoviyat.

People log in with Hoviyat. The devices registered to their verified national ID (the ``national_id`` of the
ID token, vouched for by ``verified_claims``) are listed; any IMEI can be checked for authenticity; and
problems are filed as tickets (such as "my IMEI does not match the one registered in Hamta"), which the staff
move along with ``flask tickets set-status``. The registry asks for no postal address: it has no use for one.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from ..rp_kit.settings import RpSettings, load_settings
from ..rp_kit.site import new_site
from .models import LoginSession, User, db, seed_demo_devices
from .tickets import STATUSES, cli, find_subject
from .views import registry_blueprint

#: Identity, name, birth date and mobile; never the address (README, "What a relying party needs").
SCOPE = "openid profile phone national_id"


def create_app(settings: RpSettings | None = None, overrides: Mapping[str, str] | None = None) -> Flask:
    settings = settings or load_settings("device_registry", dict(overrides or {}))
    app, rp = new_site(__name__, "device_registry", settings, db, User, LoginSession, SCOPE, "registry.home")
    app.jinja_env.globals["ticket_statuses"] = STATUSES
    app.jinja_env.globals["find_subject"] = find_subject
    app.register_blueprint(registry_blueprint(rp))
    app.cli.add_command(cli)
    with app.app_context():
        db.create_all()
        seed_demo_devices()
    return app
