"""Fixtures: the suite runs once on SQLite + the in-process store and once on PostgreSQL + Redis.

The ``backend`` fixture is parametrised; the PostgreSQL + Redis half skips, with the reason shown, when
either service does not answer. Each test run gets its own PostgreSQL database and Redis key prefix, and
each test starts from empty tables and an empty store.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import create_engine, text

from idp import clock, create_app
from idp.extensions import db
from idp.store.kv import RedisStore
from idp.store.models import SigningKey
from idp.store.schema import upgrade_schema

from .helpers import ClientInfo, UserInfo, create_test_client, create_test_user, serve

# The suite sets every value it needs; configuration from the developer's shell must not leak in.
for _name in [name for name in os.environ if name.startswith("IDP_")]:
    del os.environ[_name]

POSTGRES_ADMIN_URL = os.environ.get("HOVIYAT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HOVIYAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str
    key_prefix: str


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error.__class__.__name__}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis not reachable at {REDIS_URL}: {error.__class__.__name__}"
    return None


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    run_id = secrets.token_hex(4)
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "hoviyat.sqlite3"
        yield Backend("sqlite", f"sqlite:///{path}", "", f"idp-test-{run_id}:")
        return
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    database = f"idp_test_{run_id}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    backend = Backend("postgres", url, REDIS_URL, f"idp-test-{run_id}:")
    try:
        yield backend
    finally:
        db_engines_dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        RedisStore(REDIS_URL, backend.key_prefix).delete_prefix()


def db_engines_dispose() -> None:
    for app in list(_apps):
        with app.app_context():
            db.engine.dispose()
    _apps.clear()


_apps: list[Flask] = []
_migrated: set[str] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_app(backend: Backend, tmp_path: Path, **overrides: dict) -> Flask:
    """An app on ``backend`` with its own keys folder and issuer port; tables start empty."""
    port = free_port()
    settings: dict[str, dict] = {
        "server": {
            "issuer": f"http://127.0.0.1:{port}",
            "secret_key": "test-secret-key",
            "pairwise_salt": "test-pairwise-salt",
            "var_dir": str(tmp_path / "var"),
            "port": port,
        },
        "database": {"url": backend.database_url},
        "redis": {"url": backend.redis_url, "key_prefix": backend.key_prefix},
        # A rotated key signs at once here; tests of the waiting period set publish_before_use themselves.
        "keys": {"dir": str(tmp_path / "keys"), "publish_before_use": 0},
        "limits": {"login_per_ip": "1000 per minute", "token_per_ip": "10000 per minute"},
        # CAPTCHA off by default (captcha.enabled is for tests); tests of it turn it on.
        "captcha": {"enabled": False},
    }
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    app = create_app(settings)
    app.config["TESTING"] = True
    _apps.append(app)
    with app.app_context():
        if backend.database_url not in _migrated:
            upgrade_schema()
            _migrated.add(backend.database_url)
        _empty_tables()
        _install_keys(Path(settings["keys"]["dir"]))
    return app


_key_material: dict[str, tuple[str, bytes]] = {}


def _install_keys(keys_dir: Path) -> None:
    """Active RS256, PS256 and ES256 keys, generated once per run and copied for each test (RSA generation is
    slow)."""
    if not _key_material:
        generated = (
            ("RS256", RSAKey.generate_key(2048, private=True)),
            ("PS256", RSAKey.generate_key(2048, private=True)),
            ("ES256", ECKey.generate_key("P-256")),
        )
        for alg, key in generated:
            _key_material[alg] = (key.thumbprint(), key.as_pem(private=True))
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for alg, (kid, pem) in _key_material.items():
        path = keys_dir / f"{kid}.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
        now = clock.now()
        db.session.add(SigningKey(kid=kid, alg=alg, status="active", created_at=now, activated_at=now))
    db.session.commit()


def _empty_tables() -> None:
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def _close(application: Flask) -> None:
    store = application.extensions["idp"].store
    if isinstance(store, RedisStore):
        store.delete_prefix()
        # Flask-Limiter's counters (hourly code caps, rate limits) live under its own "LIMITS:" namespace.
        client = redis.Redis.from_url(store.url)
        for key in client.scan_iter(match=f"LIMITS:*{store.prefix}*", count=500):
            client.delete(key)
    with application.app_context():
        db.session.remove()
        db.engine.dispose()  # each test's app has its own pool; do not keep its connections open


@pytest.fixture
def app(backend: Backend, tmp_path: Path) -> Iterator[Flask]:
    clock.reset()
    application = make_app(backend, tmp_path)
    yield application
    clock.reset()
    _close(application)


@pytest.fixture
def app_with(backend: Backend, tmp_path: Path) -> Iterator:
    """Make an app with configuration overrides, e.g. ``app_with(server={"issuer": "https://id.example"})``."""
    made: list[Flask] = []

    def factory(**overrides: dict) -> Flask:
        application = make_app(backend, tmp_path / f"app{len(made)}", **overrides)
        made.append(application)
        return application

    clock.reset()
    yield factory
    clock.reset()
    for application in made:
        _close(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def issuer(app: Flask) -> str:
    return app.extensions["idp"].issuer


@pytest.fixture
def user(app: Flask) -> UserInfo:
    return create_test_user(app)


@pytest.fixture
def rp_client(app: Flask) -> ClientInfo:
    """A confidential relying party (client_secret_basic) with profile, phone and national_id scopes."""
    return create_test_client(app)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP at its issuer URL, for relying-party libraries."""
    with serve(app) as url:
        yield url
