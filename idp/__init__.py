"""Hoviyat: an OpenID Connect provider for national-ID verified accounts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import i18n
from .config import Config, database_url, load_config, parse_networks, with_generated_secrets
from .extensions import babel, csrf, db, migrate
from .identity_registry import registry_from_config
from .identity_registry.demo import ensure_demo_registry
from .keys import KeyRing
from .mail import mail_sender_from_config
from .private_files import private_file, sqlite_database_file
from .provider import Provider
from .rate_limits import RateLimits
from .sms import sender_from_config
from .store.kv import store_from_config
from .web import error_pages
from .web.error_pages import unavailable_service

# The repository's top-level templates/ and static/ folders, installed as these packages (setup.py); the same
# lookup finds them in a wheel's site-packages and in a checkout installed with `pip install -e`.
TEMPLATES_DIR = files("idp.templates")
STATIC_DIR = files("idp.static")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


class HoviyatApp(Flask):
    """Flask, logging an outage in one line: a database or Redis that does not answer, met while the browser session
    is saved, reaches Flask's last-resort handler, which would log a traceback per request (the 503 handler logs
    the one line there is to say)."""

    def log_exception(self, exc_info: Any) -> None:
        if unavailable_service(exc_info[1]) is None:
            super().log_exception(exc_info)


def create_app(config: Config | Mapping[str, Mapping[str, Any]] | None = None) -> Flask:
    """The application factory: defaults, then the TOML file and environment, then ``config``.

    ``config`` is either a finished :class:`Config` or a dict of overrides by section, e.g.
    ``{"database": {"url": "sqlite://"}}``.
    """
    if not isinstance(config, Config):
        config = load_config(overrides=config)
    config = with_generated_secrets(config)

    app = HoviyatApp(__name__, template_folder=str(TEMPLATES_DIR), static_folder=str(STATIC_DIR))
    store = store_from_config(config.redis.url, config.redis.key_prefix)
    app.config.update(
        SECRET_KEY=config.server.secret_key,
        SQLALCHEMY_DATABASE_URI=database_url(config),
        SESSION_COOKIE_SECURE=config.uses_https,
        SESSION_COOKIE_NAME=config.session.cookie_name,
        WTF_CSRF_TIME_LIMIT=config.tokens.login_transaction_ttl,
        BABEL_DEFAULT_LOCALE=config.ui.default_locale,
        BABEL_TRANSLATION_DIRECTORIES=str(i18n.TRANSLATIONS_DIR),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    _protect_database_file(app.config["SQLALCHEMY_DATABASE_URI"])
    if config.registry.backend == "file" and not config.registry.path:
        # The embedded default: demo identities, so a fresh clone can register people (they are not real).
        ensure_demo_registry(config.var_file("", "registry.json"))
    app.extensions["idp"] = Provider(
        config=config,
        store=store,
        keys=KeyRing(config.keys.dir, config.keys.reload_interval, config.keys.publish_before_use),
        registry=registry_from_config(config),
        sms=sender_from_config(config),
        mail=mail_sender_from_config(config),
        rate_limits=RateLimits(store, config.redis.key_prefix),
    )

    db.init_app(app)
    from .store.connections import ping_connections_after_idle
    from .store.schema import render_migration_item

    with app.app_context():
        ping_connections_after_idle(db.engine)

    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True, render_item=render_migration_item)
    from .web.browser_session import raise_if_unavailable

    # First of the before_request hooks: a browser session that could not be read (Redis down) answers 503
    # before the CSRF check, which would otherwise call every form expired.
    app.before_request(raise_if_unavailable)
    csrf.init_app(app)

    i18n.compile_translations()
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.install(app)

    from .web import headers, site_icon
    from .web.browser_session import KeyValueSessionInterface

    app.session_interface = KeyValueSessionInterface(
        store,
        cookie_name=config.session.cookie_name,
        logged_in_ttl=config.session.absolute_timeout,
        anonymous_ttl=config.tokens.login_transaction_ttl,
    )
    headers.install(app, https=config.uses_https)
    site_icon.install(app)

    from .oidc.assembly import build_authorization_server

    app.extensions["idp.authorization_server"] = build_authorization_server(app)

    from .account import bp as account_bp
    from .auth import bp as auth_bp
    from .oidc.views import bp as oidc_bp
    from .signup import bp as signup_bp
    from .web.captcha import bp as captcha_bp

    app.register_blueprint(oidc_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(signup_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(captcha_bp)
    from .ops import health, logs, metrics
    from .ops.proxy import TrustedProxies

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    metrics.install(app)
    logs.install(app)
    from .oidc.endpoints.discovery import PublishedDocuments

    app.wsgi_app = TrustedProxies(
        PublishedDocuments(app.wsgi_app, app), parse_networks("server.trusted_proxies", config.server.trusted_proxies)
    )
    error_pages.install(app)

    from .cli.commands import register_commands

    register_commands(app)
    return app


def _protect_database_file(url: str) -> None:
    """A SQLite database holds password hashes and personal data: its file is created 0600 (SQLite gives its
    journal the same mode) and tightened if it exists looser."""
    path = sqlite_database_file(url)
    if path is None:
        return
    try:
        private_file(path)
    except OSError as error:
        log.warning("database file %s cannot be made private (mode 0600): %s", path, error.strerror)


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite ignores ON DELETE CASCADE unless asked; PostgreSQL always honours it.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
