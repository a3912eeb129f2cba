"""The provider's configuration: one typed, frozen object, loaded once and checked at start-up.

Sources, later ones winning: the built-in defaults below, the TOML file named by ``IDP_CONFIG`` (default
``config.toml`` in the working directory, skipped when absent), environment variables
``IDP_<SECTION>_<KEY>`` and, for tests, a dict of overrides. Every key is documented in
``config.example.toml``. A bad value stops the start with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "IDP_"
SUPPORTED_LOCALES = ("fa", "en")
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
LEDGER_RETENTION_MINIMUM = 24 * 3600


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"configuration key '{key}': {message}")
        self.key = key


@dataclass(frozen=True)
class ServerConfig:
    issuer: str = "http://127.0.0.1:5000"
    secret_key: str = ""
    pairwise_salt: str = ""
    var_dir: str = "var"
    host: str = "127.0.0.1"
    port: int = 5000
    # Reverse proxies whose X-Forwarded-For/-Proto/-Host are believed: comma-separated addresses or networks.
    trusted_proxies: str = ""
    # Seconds a process keeps a client it read; `idp clients` changes reach other processes within this.
    client_cache_seconds: int = 5


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""
    key_prefix: str = "idp:"


@dataclass(frozen=True)
class KeysConfig:
    dir: str = "keys"
    id_token_alg: str = "RS256"
    access_token_alg: str = "ES256"
    reload_interval: int = 30
    publish_before_use: int = 900
    jwks_max_age: int = 300


@dataclass(frozen=True)
class TokensConfig:
    code_ttl: int = 60
    access_token_ttl: int = 600
    id_token_ttl: int = 3600
    refresh_token_idle_ttl: int = 14 * 24 * 3600
    refresh_token_absolute_ttl: int = 30 * 24 * 3600
    login_transaction_ttl: int = 1800


@dataclass(frozen=True)
class OAuthConfig:
    # Every client must push its authorization requests first (RFC 9126), not only those registered so.
    require_par: bool = False
    # How old a DPoP proof may be (its iat), in seconds; its jti is remembered that long (RFC 9449 section 11.1).
    dpop_proof_max_age: int = 60
    # Require a server-provided nonce in every DPoP proof (RFC 9449 section 8).
    dpop_require_nonce: bool = False


@dataclass(frozen=True)
class SessionConfig:
    idle_timeout: int = 2 * 3600
    absolute_timeout: int = 12 * 3600
    cookie_name: str = "hoviyat_session"
    # Changing the account's second factors needs a two-factor login at most this many seconds old.
    fresh_login: int = 600


@dataclass(frozen=True)
class IdentityConfig:
    trust_framework: str = "ir_sabt_ahval"
    verifier_name: str = "Hoviyat"


@dataclass(frozen=True)
class UIConfig:
    default_locale: str = "fa"


@dataclass(frozen=True)
class LimitsConfig:
    login_per_ip: str = "30 per minute"
    token_per_ip: str = "600 per minute"
    password_reset_per_ip: str = "60 per hour"
    password_reset_per_account: str = "15 per hour"
    mobile_change_per_ip: str = "20 per hour"
    mobile_change_per_national_code: str = "5 per hour"
    mobile_change_per_mobile: str = "5 per hour"


@dataclass(frozen=True)
class RegistryConfig:
    backend: str = "file"
    path: str = ""
    url: str = ""
    api_key: str = ""
    timeout: int = 5
    retries: int = 2


@dataclass(frozen=True)
class SmsConfig:
    backend: str = "outbox"
    outbox_path: str = ""
    http_url: str = ""
    http_token: str = ""
    kavenegar_api_key: str = ""
    kavenegar_template: str = ""
    kavenegar_url: str = "https://api.kavenegar.com"
    timeout: int = 5


@dataclass(frozen=True)
class MailConfig:
    backend: str = "outbox"
    outbox_path: str = ""
    from_address: str = "Hoviyat <no-reply@hoviyat.localhost>"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    timeout: int = 10


@dataclass(frozen=True)
class CaptchaConfig:
    enabled: bool = True
    length: int = 5
    demo: bool = False


@dataclass(frozen=True)
class OtpConfig:
    length: int = 6
    ttl: int = 120
    max_tries: int = 5
    resend_interval: int = 60
    per_mobile: str = "5 per hour"
    per_mobile_anonymous: str = "5 per hour"
    per_ip: str = "20 per hour"
    captcha_after_failures: int = 20
    max_delay: int = 900
    failure_window: int = 7 * 24 * 3600


@dataclass(frozen=True)
class LoginConfig:
    delay_after_failures: int = 3
    max_delay: int = 300
    captcha_after_failures: int = 5
    ip_captcha_after_failures: int = 20
    ip_delay_after_failures: int = 50
    failure_window: int = 3600


@dataclass(frozen=True)
class PasskeysConfig:
    challenge_ttl: int = 300
    sms_recovery_delay: int = 24 * 3600
    sms_recovery_window: int = 24 * 3600


@dataclass(frozen=True)
class PrivacyConfig:
    # Seconds a row of the disclosure ledger is kept after its last release; `idp audit prune` deletes older ones.
    ledger_retention: int = 2 * 365 * 24 * 3600


@dataclass(frozen=True)
class SupportConfig:
    phone: str = ""
    email: str = ""
    hours: str = ""
    address: str = ""


@dataclass(frozen=True)
class ObservabilityConfig:
    metrics_allowed: str = "127.0.0.1, ::1"
    log_format: str = "json"
    log_level: str = "INFO"
    retry_after: int = 30


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    oauth: OAuthConfig = field(default_factory=OAuthConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    captcha: CaptchaConfig = field(default_factory=CaptchaConfig)
    otp: OtpConfig = field(default_factory=OtpConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    passkeys: PasskeysConfig = field(default_factory=PasskeysConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    support: SupportConfig = field(default_factory=SupportConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @property
    def var_path(self) -> Path:
        return Path(self.server.var_dir)

    @property
    def uses_https(self) -> bool:
        return self.server.issuer.startswith("https://")

    def var_file(self, configured: str, default_name: str) -> Path:
        """A configured path, or ``default_name`` under ``server.var_dir`` when the key is empty."""
        return Path(configured) if configured else self.var_path / default_name


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the configuration from defaults, the TOML file, the environment and ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}

    file_path = Path(path if path is not None else environ.get("IDP_CONFIG", "config.toml"))
    if file_path.exists():
        try:
            with file_path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(str(file_path), f"not valid TOML: {error}") from None
        _merge(values, data, source=str(file_path))
    elif path is not None or "IDP_CONFIG" in environ:
        raise ConfigError("IDP_CONFIG", f"file {file_path} does not exist")

    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "IDP_CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SECTIONS or not key:
            continue  # not ours (IDP_ is a short prefix); only typos inside a known section are errors
        values[section][key] = _from_env(section, key, raw)

    if overrides:
        _merge(values, overrides, source="overrides")

    sections = {}
    for name, section_type in SECTIONS.items():
        sections[name] = _build_section(name, section_type, values[name])
    config = Config(**sections)
    validate(config)
    return config


def _merge(values: dict[str, dict[str, Any]], data: Mapping[str, Any], source: str) -> None:
    for section, entries in data.items():
        if section not in SECTIONS:
            raise ConfigError(section, f"unknown section in {source}; known: {', '.join(SECTIONS)}")
        if not isinstance(entries, Mapping):
            raise ConfigError(section, f"must be a table of keys in {source}")
        values[section].update(entries)


def _field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def _from_env(section: str, key: str, raw: str) -> Any:
    types_ = _field_types(section)
    if key not in types_:
        variable = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
        raise ConfigError(f"{section}.{key}", f"unknown key (from environment variable {variable})")
    return raw  # converted with the file's values in _build_section


def _build_section(name: str, section_type: type, entries: Mapping[str, Any]) -> Any:
    types_ = _field_types(name)
    kwargs = {}
    for key, value in entries.items():
        if key not in types_:
            raise ConfigError(f"{name}.{key}", f"unknown key; known keys of [{name}]: {', '.join(types_)}")
        kwargs[key] = _coerce(f"{name}.{key}", types_[key], value)
    return section_type(**kwargs)


def _coerce(key: str, expected: Any, value: Any) -> Any:
    if isinstance(expected, types.UnionType):
        expected = next(t for t in typing.get_args(expected) if t is not type(None))
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if expected is int:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a whole number, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"must be a string, got {value!r}")
    raise ConfigError(key, f"unsupported type {expected!r}")  # pragma: no cover - a programming error


def validate(config: Config) -> None:
    """Reject values the provider cannot run with; each error names its key."""
    _check_issuer(config.server.issuer)
    if not 0 <= config.server.client_cache_seconds <= 300:
        raise ConfigError("server.client_cache_seconds", "must be between 0 and 300")
    if not 1 <= config.server.port <= 65535:
        raise ConfigError("server.port", f"must be between 1 and 65535, got {config.server.port}")
    if config.database.url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(config.database.url)
        except ArgumentError:
            raise ConfigError("database.url", "not a valid SQLAlchemy URL") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ConfigError("database.url", "only sqlite:// and postgresql+psycopg:// are supported")
    if config.redis.url:
        from .store.redis_url import RedisURLError, parse_redis_url

        try:
            parse_redis_url(config.redis.url)
        except RedisURLError as error:
            raise ConfigError("redis.url", str(error)) from None
    if not 30 <= config.passkeys.challenge_ttl <= 900:
        raise ConfigError("passkeys.challenge_ttl", "must be between 30 and 900 seconds")
    for key in ("sms_recovery_delay", "sms_recovery_window"):
        if getattr(config.passkeys, key) < 1:
            raise ConfigError(f"passkeys.{key}", "must be at least 1 second")
    if config.privacy.ledger_retention < LEDGER_RETENTION_MINIMUM:
        # The ledger is pruned at most once a day: a shorter time could not be kept to.
        raise ConfigError("privacy.ledger_retention", f"must be at least one day ({LEDGER_RETENTION_MINIMUM} seconds)")
    for key in ("id_token_alg", "access_token_alg"):
        alg = getattr(config.keys, key)
        if alg not in SIGNING_ALGORITHMS:
            raise ConfigError(f"keys.{key}", f"must be one of {', '.join(SIGNING_ALGORITHMS)}, got {alg!r}")
    if not config.keys.dir:
        raise ConfigError("keys.dir", "must name a folder")
    _positive(config, "keys", "reload_interval")
    for key in ("publish_before_use", "jwks_max_age"):
        if getattr(config.keys, key) < 0:
            raise ConfigError(f"keys.{key}", "must not be negative")
    needed = config.keys.reload_interval + config.keys.jwks_max_age
    if 0 < config.keys.publish_before_use < needed:
        # A relying party may fetch the JWKS from an instance that has not yet re-read the keys and then cache it.
        raise ConfigError(
            "keys.publish_before_use",
            f"must be 0 or at least keys.reload_interval + keys.jwks_max_age ({needed} s), so every relying "
            "party's cached JWKS holds a new key before anything is signed with it",
        )
    for key in ("trusted_proxies",):
        parse_networks(f"server.{key}", config.server.trusted_proxies)
    parse_networks("observability.metrics_allowed", config.observability.metrics_allowed)
    _one_of("observability.log_format", config.observability.log_format, ("json", "text"))
    _one_of("observability.log_level", config.observability.log_level.upper(), ("DEBUG", "INFO", "WARNING", "ERROR"))
    _positive(config, "observability", "retry_after")
    for name in (f.name for f in dataclasses.fields(TokensConfig)):
        _positive(config, "tokens", name)
    if config.tokens.code_ttl > 600:
        raise ConfigError("tokens.code_ttl", "must be at most 600 seconds (RFC 6749 section 4.1.2)")
    if config.tokens.refresh_token_idle_ttl > config.tokens.refresh_token_absolute_ttl:
        raise ConfigError("tokens.refresh_token_idle_ttl", "must not exceed tokens.refresh_token_absolute_ttl")
    if not 10 <= config.oauth.dpop_proof_max_age <= 300:
        raise ConfigError("oauth.dpop_proof_max_age", "must be between 10 and 300 seconds (RFC 9449 section 11.1)")
    _positive(config, "session", "idle_timeout")
    _positive(config, "session", "absolute_timeout")
    _positive(config, "session", "fresh_login")
    if not config.session.cookie_name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("session.cookie_name", "must use only letters, digits, '-' and '_'")
    if config.ui.default_locale not in SUPPORTED_LOCALES:
        raise ConfigError("ui.default_locale", f"must be one of {', '.join(SUPPORTED_LOCALES)}")
    if not config.identity.trust_framework:
        raise ConfigError("identity.trust_framework", "must not be empty")
    from limits import parse_many

    rates = [("limits", f.name) for f in dataclasses.fields(LimitsConfig)]
    rates += [("otp", "per_mobile"), ("otp", "per_mobile_anonymous"), ("otp", "per_ip")]
    for section, key in rates:
        try:
            parse_many(getattr(getattr(config, section), key))
        except ValueError:
            raise ConfigError(f"{section}.{key}", "must be a rate such as '30 per minute'") from None
    _validate_accounts(config)


def _validate_accounts(config: Config) -> None:
    """The registry, SMS, mail, CAPTCHA, one-time-code and login-throttle sections."""
    registry = config.registry
    _one_of("registry.backend", registry.backend, ("file", "http"))
    if registry.backend == "http":
        _http_url("registry.url", registry.url)
    _positive(config, "registry", "timeout")
    if not 0 <= registry.retries <= 5:
        raise ConfigError("registry.retries", f"must be between 0 and 5, got {registry.retries}")

    sms = config.sms
    _one_of("sms.backend", sms.backend, ("outbox", "http", "kavenegar"))
    if sms.backend == "http":
        _http_url("sms.http_url", sms.http_url)
    if sms.backend == "kavenegar":
        for key in ("kavenegar_api_key", "kavenegar_template"):
            if not getattr(sms, key):
                raise ConfigError(f"sms.{key}", "is required with sms.backend = 'kavenegar'")
        _http_url("sms.kavenegar_url", sms.kavenegar_url)
    _positive(config, "sms", "timeout")

    mail = config.mail
    _one_of("mail.backend", mail.backend, ("outbox", "smtp"))
    if mail.backend == "smtp" and not mail.smtp_host:
        raise ConfigError("mail.smtp_host", "is required with mail.backend = 'smtp'")
    if "@" not in mail.from_address:
        raise ConfigError("mail.from_address", "must be an email address")
    _positive(config, "mail", "timeout")

    if not 4 <= config.captcha.length <= 8:
        raise ConfigError("captcha.length", "must be between 4 and 8")
    if config.captcha.demo and config.uses_https:
        # The answers in the log would let anyone who reads it past every CAPTCHA: a demo on a loopback issuer only.
        raise ConfigError("captcha.demo", "writes every CAPTCHA answer to the log; it is refused with an https issuer")
    otp = config.otp
    if not 6 <= otp.length <= 10:
        raise ConfigError("otp.length", "must be between 6 and 10 digits")
    for key in ("ttl", "max_tries", "resend_interval", "max_delay", "failure_window"):
        _positive(config, "otp", key)
    if not 1 <= otp.captcha_after_failures <= 100:
        # NIST SP 800-63B section 5.2.2: at most 100 consecutive failures before another step is needed.
        raise ConfigError("otp.captcha_after_failures", "must be between 1 and 100")
    keys = ("delay_after_failures", "max_delay", "captcha_after_failures", "ip_captcha_after_failures")
    for key in (*keys, "ip_delay_after_failures"):
        _positive(config, "login", key)
    _positive(config, "login", "failure_window")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)}, got {value!r}")


def _http_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, got {value!r}")


def _positive(config: Config, section: str, key: str) -> None:
    value = getattr(getattr(config, section), key)
    if value <= 0:
        raise ConfigError(f"{section}.{key}", f"must be a positive number, got {value}")


def _check_issuer(issuer: str) -> None:
    # OpenID Connect Discovery section 3: https, no query or fragment; http only for a loopback host.
    parts = urlsplit(issuer)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("server.issuer", f"must be an absolute https URL, got {issuer!r}")
    if parts.query or parts.fragment:
        raise ConfigError("server.issuer", "must not have a query or fragment")
    if issuer.endswith("/"):
        raise ConfigError("server.issuer", "must not end with '/' (it is compared byte for byte)")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError("server.issuer", "must use https unless the host is localhost or a loopback address")


def parse_networks(key: str, value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of addresses or networks ("10.0.0.0/8, 192.0.2.7") as networks."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(key, f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_generated_secrets(config: Config) -> Config:
    """Fill ``server.secret_key`` and ``server.pairwise_salt`` from ``var/`` when not configured.

    Each is generated once and kept in a 0600 file, so restarts keep sessions and subject identifiers.
    Several instances must share them: set both explicitly in production.
    """
    server = config.server
    changes = {}
    for key in ("secret_key", "pairwise_salt"):
        if not getattr(server, key):
            changes[key] = _read_or_create_secret(config.var_path / key)
    if not changes:
        return config
    return dataclasses.replace(config, server=dataclasses.replace(server, **changes))


def generated_secrets(config: Config) -> bool:
    """True when the secret key or pairwise salt in use came from files in ``var/``, not the configuration."""
    server = config.server
    return any(
        (config.var_path / key).exists() and (config.var_path / key).read_text().strip() == getattr(server, key)
        for key in ("secret_key", "pairwise_salt")
    )


def _read_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def database_url(config: Config) -> str:
    """The configured database URL, or the embedded default: a SQLite file under ``var/``."""
    if config.database.url:
        return config.database.url
    config.var_path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(config.var_path / 'hoviyat.sqlite3').resolve()}"
