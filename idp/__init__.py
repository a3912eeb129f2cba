"""Hoviyat: an OpenID Connect provider for national-ID verified accounts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from .config import Config, database_url, load_config, parse_networks, with_generated_secrets
from .extensions import babel, csrf, db, limiter, migrate
from .keys import KeyManagementError, KeyRing
from .mail import mail_sender_from_config
from .provider import Provider
from .registry import registry_from_config
from .registry.demo import ensure_demo_registry
from .sms import sender_from_config
from .store.kv import StoreUnavailable, store_from_config

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)

#: Paths answered in JSON (protocol endpoints), whatever the error.
JSON_PATH_PREFIXES = ("/token", "/par", "/userinfo", "/jwks.json", "/.well-known/")


class SyncFlask(Flask):
    """Flask remembering which views and hooks are plain functions: it asks ``inspect`` about each of them (a
    view and a dozen before/after/teardown hooks) on every request, and the answer never changes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._made_sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        made = self._made_sync.get(func)
        if made is None:
            made = super().ensure_sync(func)
            if len(self._made_sync) < 10_000:  # registered callables are a few hundred; a bound, whatever happens
                self._made_sync[func] = made
        return made


def create_app(config: Config | Mapping[str, Mapping[str, Any]] | None = None) -> Flask:
    """The application factory: defaults, then the TOML file and environment, then ``config``.

    ``config`` is either a finished :class:`Config` or a dict of overrides by section, e.g.
    ``{"database": {"url": "sqlite://"}}``.
    """
    if not isinstance(config, Config):
        config = load_config(overrides=config)
    config = with_generated_secrets(config)

    app = SyncFlask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    store = store_from_config(config.redis.url, config.redis.key_prefix)
    app.config.update(
        SECRET_KEY=config.server.secret_key,
        SQLALCHEMY_DATABASE_URI=database_url(config),
        SESSION_COOKIE_SECURE=config.uses_https,
        SESSION_COOKIE_NAME=config.session.cookie_name,
        WTF_CSRF_TIME_LIMIT=config.tokens.login_transaction_ttl,
        BABEL_DEFAULT_LOCALE=config.ui.default_locale,
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).resolve().parent / "translations"),
        RATELIMIT_STORAGE_URI=store.limiter_uri,
        RATELIMIT_STORAGE_OPTIONS=store.limiter_options,
        RATELIMIT_HEADERS_ENABLED=False,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
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
    )

    db.init_app(app)
    from .store import direct
    from .store.connections import ping_connections_after_idle
    from .store.schema import render_migration_item

    direct.init_app(app)

    with app.app_context():
        ping_connections_after_idle(db.engine)

    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True, render_item=render_migration_item)
    from .web.sessions import raise_if_unavailable

    # First of the before_request hooks: a browser session that could not be read (Redis down) answers 503
    # before the CSRF check, which would otherwise call every form expired.
    app.before_request(raise_if_unavailable)
    csrf.init_app(app)
    # Flask-Limiter adds each app's storage options to those of the apps before it; start from none, so a
    # Sentinel database number of one app never reaches another's (a Cluster refuses any).
    limiter._storage_options = {}
    limiter.init_app(app)

    from . import i18n

    i18n.compile_translations()
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.install(app)

    from .web import headers
    from .web.sessions import KeyValueSessionInterface

    app.session_interface = KeyValueSessionInterface(
        store,
        cookie_name=config.session.cookie_name,
        logged_in_ttl=config.session.absolute_timeout,
        anonymous_ttl=config.tokens.login_transaction_ttl,
    )
    headers.install(app, https=config.uses_https)

    from .oidc.server import build_authorization_server

    app.extensions["idp.authorization_server"] = build_authorization_server(app)

    from .account import bp as account_bp
    from .auth import bp as auth_bp
    from .oidc.views import bp as oidc_bp
    from .register import bp as register_bp
    from .web.captcha import bp as captcha_bp

    app.register_blueprint(oidc_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(register_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(captcha_bp)
    from .ops import health, logs, metrics
    from .ops.proxy import TrustedProxies

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    metrics.install(app)
    logs.install(app)
    from .oidc.documents import PublicDocuments

    app.wsgi_app = TrustedProxies(
        PublicDocuments(app.wsgi_app, app), parse_networks("server.trusted_proxies", config.server.trusted_proxies)
    )
    _install_error_pages(app)

    from .cli import register_commands

    register_commands(app)
    return app


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite ignores ON DELETE CASCADE unless asked; PostgreSQL always honours it.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def unavailable_service(error: BaseException) -> str | None:
    """Which backing service an exception says is unreachable: "store", "database", "keys" or None."""
    import redis
    from limits.errors import StorageError
    from sqlalchemy import exc as sa

    if isinstance(error, StoreUnavailable | redis.RedisError | StorageError):
        return "store"
    if isinstance(error, sa.OperationalError | sa.InterfaceError | sa.TimeoutError):
        return "database"
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return "database"
    if isinstance(error, KeyManagementError):
        return "keys"
    return None


def _wants_json() -> bool:
    return request.path.startswith(JSON_PATH_PREFIXES)


def _install_error_pages(app: Flask) -> None:
    log_exception = app.log_exception

    def log_outage_briefly(exc_info: Any) -> None:
        # An outage met while saving the session reaches Flask's last-resort handler, which logs a traceback
        # per request; one line says all there is to say (the 503 handler below logs it).
        if unavailable_service(exc_info[1]) is None:
            log_exception(exc_info)

    app.log_exception = log_outage_briefly  # type: ignore[method-assign]

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[str, int]:
        message = gettext("This form has expired or was sent from another page. Go back, reload and try again.")
        return render_template("error.html", message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        original = getattr(error, "original_exception", None)
        if status == 500 and original is not None and unavailable_service(original):
            # Raised outside the view (opening or saving the browser session): still a 503, not a 500.
            return unavailable(original)
        if status == 429:
            from .ops.metrics import RATE_LIMITED, endpoint_label

            RATE_LIMITED.labels(limit=endpoint_label()).inc()
        extra_headers = {}
        if status == 429:
            # Flask-Limiter's own headers are off (they cost Redis round trips on every request); a refusal still
            # says how long to wait: the length of the limit's window.
            limit = getattr(error, "limit", None)
            window = limit.limit.get_expiry() if limit is not None else getattr(error, "retry_after", 60)
            extra_headers["Retry-After"] = str(window)
        if _wants_json():
            body = {"error": "temporarily_unavailable" if status == 429 else "invalid_request"}
            body["error_description"] = (error.description or "")[:200]
            response = jsonify(body)
            response.status_code = status
            response.headers.update(extra_headers)
            return response
        messages = {
            404: gettext("This page does not exist."),
            405: gettext("This address does not accept that kind of request."),
            413: gettext("The request is too large."),
            429: gettext("Too many attempts. Wait a minute and try again."),
            500: gettext("Something went wrong on our side. Please try again."),
        }
        message = messages.get(status, gettext("The request could not be understood."))
        return render_template("error.html", message=message), status, extra_headers

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        if unavailable_service(error):
            return unavailable(error)
        log.exception("unhandled error")
        from werkzeug.exceptions import InternalServerError

        return http_error(InternalServerError())

    def unavailable(error: Exception) -> Any:
        from .ops.metrics import UNAVAILABLE

        service = unavailable_service(error) or "keys"
        UNAVAILABLE.labels(service=service).inc()
        log.error("service unavailable (%s): %s", service, error.__class__.__name__)
        try:
            db.session.rollback()  # nothing half-written: the request's transaction is dropped
        except Exception:  # the connection is gone; the pool replaces it on the next checkout
            log.debug("rollback failed", exc_info=True)
        retry_after = str(app.extensions["idp"].config.observability.retry_after)
        if _wants_json():
            response = jsonify(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "The service is unavailable; try again.",
                }
            )
            response.status_code = 503
            response.headers["Retry-After"] = retry_after
            response.headers["Cache-Control"] = "no-store"
            return response
        message = gettext("The service is unavailable at the moment. Please try again in a few minutes.")
        page = render_template("error.html", message=message, retry=True)
        return page, 503, {"Retry-After": retry_after, "Cache-Control": "no-store"}
