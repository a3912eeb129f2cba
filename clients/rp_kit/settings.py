"""A relying party's settings: one JSON file (its path in ``<APP>_CONFIG``), each key overridable by an
environment variable ``<APP>_<KEY>`` in upper case. ``make demo`` writes the file when it registers the app."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class RpSettings:
    #: The Hoviyat issuer URL; the rest comes from its discovery document.
    issuer: str
    client_id: str
    #: The client secret, kept only by the relying party (the provider has a hash of it); empty for a site that
    #: authenticates with its keys.
    client_secret: str
    #: This site's own base URL, e.g. http://127.0.0.1:5001 (the redirect URIs hang under it).
    base_url: str
    database_url: str = ""
    secret_key: str = ""
    #: The site's private keys (clients/rp_kit/high_assurance.py): when set, it logs in under the FAPI 2.0
    #: profile (PAR, private_key_jwt, DPoP) instead of with its client secret.
    keys_file: str = ""

    @property
    def high_assurance(self) -> bool:
        return bool(self.keys_file)

    @property
    def redirect_uri(self) -> str:
        return self.base_url.rstrip("/") + "/auth/callback"

    @property
    def post_logout_redirect_uri(self) -> str:
        return self.base_url.rstrip("/") + "/auth/logged-out"

    @property
    def backchannel_logout_uri(self) -> str:
        return self.base_url.rstrip("/") + "/auth/backchannel-logout"


def load_settings(
    app_name: str, overrides: dict[str, str] | None = None, instance_dir: Path | None = None
) -> RpSettings:
    """Settings for ``app_name`` (``carmaker``, ``device_registry``) from file, environment and overrides."""
    prefix = app_name.upper()
    values: dict[str, str] = {}
    path = os.environ.get(f"{prefix}_CONFIG")
    if path:
        try:
            values.update(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise SettingsError(f"{prefix}_CONFIG: cannot read {path}: {error}") from None
    for field in fields(RpSettings):
        env = os.environ.get(f"{prefix}_{field.name.upper()}")
        if env:
            values[field.name] = env
    values.update(overrides or {})
    required_settings = ["issuer", "client_id", "base_url"]
    if not values.get("keys_file"):
        required_settings.append("client_secret")
    values.setdefault("client_secret", "")
    for required in required_settings:
        if not values.get(required):
            raise SettingsError(f"{prefix}_{required.upper()} (or '{required}' in {prefix}_CONFIG) is required")
    instance_dir = instance_dir or Path("var") / app_name
    if not values.get("database_url"):
        instance_dir.mkdir(parents=True, exist_ok=True)
        values["database_url"] = f"sqlite:///{(instance_dir / f'{app_name}.sqlite3').resolve()}"
    if not values.get("secret_key"):
        values["secret_key"] = _read_or_create_secret(instance_dir / "secret_key")
    known = {field.name for field in fields(RpSettings)}
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"unknown settings for {app_name}: {', '.join(sorted(unknown))}")
    return RpSettings(**values)


def _read_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def write_settings(path: Path, settings: dict[str, str]) -> None:
    """Write a settings file readable only by its owner (it holds the client secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(settings, handle, indent=2)
