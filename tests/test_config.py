"""Configuration: defaults, the TOML file, IDP_<SECTION>_<KEY> overrides, and start-up errors that name the key."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from idp import create_app
from idp.config import ConfigError, load_config, with_generated_secrets
from idp.extensions import db

ROOT = Path(__file__).resolve().parent.parent
IDP = ROOT / ".venv" / "bin" / "idp"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    # No config.toml of the developer's may leak in: load_config reads ./config.toml by default.
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults():
    config = load_config(environ={})
    assert config.server.issuer == "http://127.0.0.1:5000"
    assert config.server.port == 5000
    assert config.database.url == ""
    assert config.redis.url == ""
    assert config.keys.dir == "keys"
    assert config.keys.id_token_alg == "RS256"
    assert config.tokens.code_ttl == 60
    assert config.tokens.refresh_token_idle_ttl <= config.tokens.refresh_token_absolute_ttl
    assert config.ui.default_locale == "fa"
    assert config.uses_https is False


def test_toml_file(tmp_path):
    path = write(
        tmp_path,
        """
[server]
issuer = "https://id.example"
port = 8443

[database]
url = "postgresql+psycopg://idp@db/idp"

[redis]
url = "redis://cache:6379/1"

[keys]
dir = "/etc/hoviyat/keys"
id_token_alg = "ES256"

[tokens]
code_ttl = 30

[ui]
default_locale = "en"
""",
    )
    config = load_config(path=path, environ={})
    assert config.server.issuer == "https://id.example"
    assert config.uses_https is True
    assert config.server.port == 8443
    assert config.database.url == "postgresql+psycopg://idp@db/idp"
    assert config.redis.url == "redis://cache:6379/1"
    assert config.keys.dir == "/etc/hoviyat/keys"
    assert config.keys.id_token_alg == "ES256"
    assert config.tokens.code_ttl == 30
    assert config.ui.default_locale == "en"
    assert config.tokens.access_token_ttl == 600  # untouched keys keep their defaults


def test_config_file_from_idp_config_and_default_name(tmp_path):
    other = write(tmp_path, '[server]\nissuer = "https://other.example"\n', name="other.toml")
    assert load_config(environ={"IDP_CONFIG": str(other)}).server.issuer == "https://other.example"
    write(tmp_path, '[server]\nissuer = "https://cwd.example"\n')
    assert load_config(environ={}).server.issuer == "https://cwd.example"


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, '[server]\nissuer = "https://file.example"\nport = 8000\n[tokens]\ncode_ttl = 30\n')
    config = load_config(
        path=path,
        environ={
            "IDP_SERVER_ISSUER": "https://env.example",
            "IDP_TOKENS_CODE_TTL": "45",
            "IDP_DATABASE_URL": "sqlite:////tmp/x.sqlite3",
            "IDP_REDIS_URL": "redis://127.0.0.1:6379/2",
            "IDP_KEYS_DIR": "/srv/keys",
            "IDP_UI_DEFAULT_LOCALE": "en",
        },
    )
    assert config.server.issuer == "https://env.example"
    assert config.server.port == 8000
    assert config.tokens.code_ttl == 45
    assert isinstance(config.tokens.code_ttl, int)
    assert config.database.url == "sqlite:////tmp/x.sqlite3"
    assert config.redis.url == "redis://127.0.0.1:6379/2"
    assert config.keys.dir == "/srv/keys"
    assert config.ui.default_locale == "en"


def test_loopback_http_issuers_are_allowed():
    for issuer in ("http://localhost:5000", "http://127.0.0.1:8080", "http://[::1]:5000", "https://id.example/idp"):
        assert load_config(environ={"IDP_SERVER_ISSUER": issuer}).server.issuer == issuer


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        pytest.param({"IDP_SERVER_ISSUER": "http://id.example"}, "server.issuer", id="http-issuer"),
        pytest.param({"IDP_SERVER_ISSUER": "https://id.example/"}, "server.issuer", id="issuer-trailing-slash"),
        pytest.param({"IDP_SERVER_ISSUER": "https://id.example?tenant=1"}, "server.issuer", id="issuer-query"),
        pytest.param({"IDP_SERVER_ISSUER": "https://id.example#top"}, "server.issuer", id="issuer-fragment"),
        pytest.param({"IDP_SERVER_ISSUER": "id.example"}, "server.issuer", id="issuer-relative"),
        pytest.param({"IDP_SERVER_PORT": "0"}, "server.port", id="port-0"),
        pytest.param({"IDP_SERVER_PORT": "65536"}, "server.port", id="port-too-big"),
        pytest.param({"IDP_SERVER_PORT": "eighty"}, "server.port", id="port-not-int"),
        pytest.param({"IDP_TOKENS_CODE_TTL": "0"}, "tokens.code_ttl", id="code-ttl-0"),
        pytest.param({"IDP_TOKENS_CODE_TTL": "601"}, "tokens.code_ttl", id="code-ttl-601"),
        pytest.param({"IDP_TOKENS_CODE_TTL": "1.5"}, "tokens.code_ttl", id="code-ttl-float"),
        pytest.param({"IDP_TOKENS_ACCESS_TOKEN_TTL": "-5"}, "tokens.access_token_ttl", id="negative-ttl"),
        pytest.param({"IDP_KEYS_ID_TOKEN_ALG": "HS256"}, "keys.id_token_alg", id="alg-hs256"),
        pytest.param({"IDP_KEYS_ACCESS_TOKEN_ALG": "none"}, "keys.access_token_alg", id="alg-none"),
        pytest.param({"IDP_SERVER_ISSUR": "https://id.example"}, "server.issur", id="env-unknown-key"),
        pytest.param({"IDP_REDIS_URL": "http://127.0.0.1:6379"}, "redis.url", id="redis-scheme"),
        pytest.param({"IDP_DATABASE_URL": "not a url"}, "database.url", id="database-not-url"),
        pytest.param({"IDP_DATABASE_URL": "mysql://u@h/db"}, "database.url", id="database-unsupported"),
        pytest.param(
            {"IDP_TOKENS_REFRESH_TOKEN_IDLE_TTL": "100", "IDP_TOKENS_REFRESH_TOKEN_ABSOLUTE_TTL": "50"},
            "tokens.refresh_token_idle_ttl",
            id="idle-over-absolute",
        ),
        pytest.param({"IDP_LIMITS_LOGIN_PER_IP": "lots"}, "limits.login_per_ip", id="bad-rate"),
        pytest.param({"IDP_LIMITS_TOKEN_PER_IP": "5 per fortnight"}, "limits.token_per_ip", id="bad-rate-unit"),
        pytest.param({"IDP_UI_DEFAULT_LOCALE": "de"}, "ui.default_locale", id="bad-locale"),
        pytest.param({"IDP_CONFIG": "/nonexistent/hoviyat.toml"}, "IDP_CONFIG", id="missing-file"),
    ],
)
def test_bad_environment_values_name_the_key(environ, key):
    with pytest.raises(ConfigError) as raised:
        load_config(environ=environ)
    assert key in str(raised.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('[servr]\nissuer = "https://id.example"\n', "servr", id="unknown-section"),
        pytest.param('[server]\nissur = "https://id.example"\n', "server.issur", id="unknown-key"),
        pytest.param('[server]\nport = "eighty"\n', "server.port", id="port-string"),
        pytest.param("[server]\nport = 80.5\n", "server.port", id="port-float"),
        pytest.param("[server]\nport = true\n", "server.port", id="port-bool"),
        pytest.param("[server]\nissuer = 5\n", "server.issuer", id="issuer-not-string"),
        pytest.param("[tokens]\ncode_ttl = 601\n", "tokens.code_ttl", id="code-ttl"),
        pytest.param('[keys]\nid_token_alg = "HS256"\n', "keys.id_token_alg", id="alg"),
        pytest.param('[server]\nissuer = "https://id.example/"\n', "server.issuer", id="issuer-slash"),
        pytest.param('server = "x"\n', "server", id="section-not-table"),
        pytest.param("[server\nissuer=", "config.toml", id="not-toml"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path=path, environ={})
    assert key in str(raised.value)


def test_captcha_demo_is_off_by_default_and_allowed_on_a_loopback_issuer():
    assert load_config(environ={}).captcha.demo is False
    assert load_config(environ={"IDP_CAPTCHA_DEMO": "true"}).captcha.demo is True


def test_captcha_demo_is_refused_with_an_https_issuer(tmp_path):
    """It writes every answer to the log: never in production."""
    https = '[server]\nissuer = "https://id.example"\n'
    assert load_config(path=write(tmp_path, https + "[captcha]\ndemo = false\n"), environ={}).uses_https
    with pytest.raises(ConfigError) as raised:
        load_config(path=write(tmp_path, https + "[captcha]\ndemo = true\n"), environ={})
    assert raised.value.key == "captcha.demo"
    assert "https" in str(raised.value)


def test_unrelated_idp_variables_are_ignored():
    assert load_config(environ={"IDP_SOMETHING": "x", "IDPX": "y"}).server.issuer == "http://127.0.0.1:5000"


def test_generated_secrets_are_kept_in_var_with_mode_0600(tmp_path):
    var = tmp_path / "var"
    config = load_config(environ={"IDP_SERVER_VAR_DIR": str(var)})
    assert config.server.secret_key == "" and config.server.pairwise_salt == ""

    first = with_generated_secrets(config)
    assert len(first.server.secret_key) >= 32
    assert len(first.server.pairwise_salt) >= 32
    assert first.server.secret_key != first.server.pairwise_salt
    for name in ("secret_key", "pairwise_salt"):
        path = var / name
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == getattr(first.server, name)

    second = with_generated_secrets(config)
    assert second.server.secret_key == first.server.secret_key
    assert second.server.pairwise_salt == first.server.pairwise_salt


@pytest.mark.parametrize("before", ["missing", "open to others"])
def test_the_sqlite_database_file_is_readable_by_its_owner_only(tmp_path, before):
    """The embedded database holds password hashes and personal data: 0600 when the provider creates it (SQLite
    gives its journal the same mode), tightened when it finds it looser."""
    var = tmp_path / "var"
    database = var / "hoviyat.sqlite3"
    previous = os.umask(0o022)
    try:
        if before == "open to others":
            var.mkdir()
            database.write_bytes(b"")
            database.chmod(0o644)
        app = create_app({"server": {"var_dir": str(var)}, "keys": {"dir": str(tmp_path / "keys")}})
        with app.app_context():
            db.session.execute(text("CREATE TABLE written (value TEXT)"))
            db.session.execute(text("INSERT INTO written VALUES ('x')"))
            db.session.commit()
            db.engine.dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert database.stat().st_size > 0


def test_configured_secrets_are_not_replaced(tmp_path):
    var = tmp_path / "var"
    config = load_config(
        environ={
            "IDP_SERVER_VAR_DIR": str(var),
            "IDP_SERVER_SECRET_KEY": "configured-secret",
            "IDP_SERVER_PAIRWISE_SALT": "configured-salt",
        }
    )
    result = with_generated_secrets(config)
    assert result.server.secret_key == "configured-secret"
    assert result.server.pairwise_salt == "configured-salt"
    assert not (var / "secret_key").exists()
    assert not (var / "pairwise_salt").exists()


def test_cli_prints_config_error_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["IDP_SERVER_ISSUER"] = "http://example.com"
    result = subprocess.run(  # noqa: S603 - our own command line
        [str(IDP), "keys", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "server.issuer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # nothing was created before the check
