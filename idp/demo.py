"""``make demo``: set up the provider (database, keys, demo users), register the two example sites with
`idp clients create`, then serve all three: Hoviyat on its configured port (5000, as http://localhost:5000), the
carmaker's sales portal on the next one (5001) and the device registry on the one after (5002). Ctrl-C stops
them.

Safe to run again: it upgrades the schema, keeps existing keys and users, and gives each client a new secret
(secrets are stored only hashed at the provider, so an old one cannot be shown again).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import select

from clients.rp_kit.high_assurance import generate_keys, public_jwks
from clients.rp_kit.settings import write_settings

from . import create_app
from .cli.serve import ensure_signing_keys
from .cli.users import admin_import_evidence
from .config import ServerConfig, load_config
from .extensions import db
from .identity_registry.demo import DEMO_PEOPLE
from .oidc import paths
from .passwords import hash_password
from .provider import current_provider
from .rules.birthdate import gregorian_to_jalali
from .store import commit
from .store.clients import Registration, create_client, rotate_secret
from .store.models import Client
from .store.schema import upgrade_schema
from .store.users import create_user, find_user_by_national_code

#: A person of the demo registry: (national code, ISO birth date, given name, family name, mobiles).
DemoPerson = tuple[str, str, str, str, list[str]]
DEMO_CLIENT_NAME = "Hoviyat demo relying party"
DEMO_REDIRECT_URI = "http://127.0.0.1:8080/callback"
DEMO_PASSWORD = "hoviyat-demo-2026"
#: Accounts made by the demo: the first two people of the demo registry.
DEMO_USERS = [
    (code, mobiles[0], dt.date.fromisoformat(born), given, family)
    for code, born, given, family, mobiles in DEMO_PEOPLE[:2]
]


def set_up() -> dict[str, object]:
    upgrade_schema()
    new_keys = ensure_signing_keys()
    client = db.session.scalar(select(Client).where(Client.name == DEMO_CLIENT_NAME))
    if client is None:
        client, secret = create_client(
            Registration(
                name=DEMO_CLIENT_NAME,
                redirect_uris=[DEMO_REDIRECT_URI],
                post_logout_redirect_uris=["http://127.0.0.1:8080/"],
                scope="openid profile phone national_id",
            )
        )
    else:
        secret = rotate_secret(client)
    verifier = current_provider().config.identity.verifier_name
    for national_code, mobile, birthdate, given_name, family_name in DEMO_USERS:
        if find_user_by_national_code(national_code) is None:
            create_user(
                national_code=national_code,
                mobile=mobile,
                birthdate=birthdate,
                given_name=given_name,
                family_name=family_name,
                password_hash=hash_password(DEMO_PASSWORD),
                identity_evidence=admin_import_evidence(verifier),
            )
    commit()
    return {"client_id": client.client_id, "client_secret": secret, "new_keys": new_keys}


@dataclass(frozen=True)
class Site:
    """An example relying party of clients/, as the demo registers and serves it."""

    module: str
    name: str
    #: Its port is the provider's plus this.
    port_offset: int
    scope: str
    #: ``fapi2``: registered under the FAPI 2.0 profile, with a key pair of its own instead of a secret.
    profile: str = "standard"

    @property
    def port(self) -> int:
        return current_provider().config.server.port + self.port_offset

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SITES = (
    # The carmaker gets the address (for the purchase file), not device data; the registry the opposite. The
    # carmaker handles money (a Sheba number, payments): FAPI 2.0; the registry is a plain confidential client.
    Site("carmaker", "سامانه یکپارچه فروش خودرو", 1, "openid profile phone national_id address", profile="fapi2"),
    Site("device_registry", "سامانه همتا (ثبت دستگاه‌های تلفن همراه)", 2, "openid profile phone national_id"),
)


def _idp_command() -> list[str]:
    return [str(Path(sys.executable).with_name("idp"))]


def register_site(site: Site) -> dict[str, str]:
    """Register ``site`` with `idp clients create` (or give it a new secret when it exists already) and write
    the settings file it reads, mode 0600 since it holds the client secret. A FAPI 2.0 site gets a key pair of
    its own (kept with its settings) and is registered with the public half."""
    existing = db.session.scalar(select(Client).where(Client.name == site.name))
    keys_file = site_settings_path(site).with_name(f"{site.module}-keys.json")
    profile: list[str] = []
    if site.profile == "fapi2":
        jwks = public_jwks(json.loads(keys_file.read_text())) if keys_file.exists() else generate_keys(keys_file)
        jwks_file = keys_file.with_name(f"{site.module}-jwks.json")
        jwks_file.write_text(json.dumps(jwks))
        profile = ["--profile", "fapi2", "--auth-method", "private_key_jwt", "--jwks", str(jwks_file)]
    if existing is not None and profile:
        args = ["clients", "update", existing.client_id, *profile, "--json"]
    elif existing is not None:
        args = ["clients", "rotate-secret", existing.client_id, "--json"]
    else:
        args = [
            "clients", "create", "--name", site.name, "--scope", site.scope, "--json", *profile,
            "--redirect-uri", site.base_url + "/auth/callback",
            "--post-logout-redirect-uri", site.base_url + "/auth/logged-out",
            "--backchannel-logout-uri", site.base_url + "/auth/backchannel-logout",
        ]  # fmt: skip
    result = subprocess.run([*_idp_command(), *args], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(f"idp {' '.join(args[:2])} failed for {site.module}: {result.stderr.strip()}")
    registered = json.loads(result.stdout)
    settings = {
        "issuer": current_provider().issuer,
        "client_id": registered["client_id"],
        "client_secret": registered.get("client_secret") or "",
        "base_url": site.base_url,
    }
    if profile:
        settings["keys_file"] = str(keys_file.resolve())
    write_settings(site_settings_path(site), settings)
    return settings


def site_settings_path(site: Site) -> Path:
    return current_provider().config.var_path / "clients" / f"{site.module}.json"


def _jalali(iso_date: str) -> str:
    year, month, day = gregorian_to_jalali(dt.date.fromisoformat(iso_date))
    return f"{year}/{month}/{day}"


def instructions(client_id: str, client_secret: str) -> str:
    provider = current_provider()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": DEMO_REDIRECT_URI,
            "scope": "openid profile phone national_id",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    users = "\n".join(f"    national code {code}  ({given} {family})" for code, _, _, given, family in DEMO_USERS)
    registered, newcomers = registry_people_by_account()
    config = provider.config
    outbox = config.var_file(config.sms.outbox_path, "sms-outbox.jsonl")
    captcha_note = (
        "Each CAPTCHA's answer is also logged below as it is drawn (captcha.demo = true).\n"
        if config.captcha.enabled and config.captcha.demo
        else ""
    )
    return f"""
Hoviyat is set up.

  Issuer:     {provider.issuer}
  Discovery:  {provider.url(paths.DISCOVERY)}
  Demo client_id:     {client_id}
  Demo client_secret: {client_secret}   (new on every `make demo`; stored only hashed)

Demo users (password "{DEMO_PASSWORD}"):
{users}

Try the protocol by hand (a client with no site behind it), once the servers below run:
  1. Open this address in a browser, log in with a demo user and allow the request:
     {provider.url(paths.AUTHORIZE)}?{query}
  2. You are sent to {DEMO_REDIRECT_URI}?code=... (no site answers there yet; the example
     relying parties come later). Copy the `code` value from the address bar, then within 60 seconds:
     curl -s -u '{client_id}:{client_secret}' \\
       -d grant_type=authorization_code -d 'redirect_uri={DEMO_REDIRECT_URI}' \\
       -d code_verifier={verifier} -d code=PASTE_THE_CODE {provider.url(paths.TOKEN)}
  3. The answer holds an ID token with the verified national ID, and an access token for
     {provider.url(paths.USERINFO)}.

{registration_text(registered, newcomers)}
Try passkeys in a browser with a screen lock (or a security key): log in as a demo user, open
{provider.url("/account/passkeys")} and add one (it asks for a code first: see the outbox below), log
out, then log in with "Log in with a passkey" alone. Use {provider.issuer}, not 127.0.0.1: browsers
refuse passkeys for an IP address.
Text messages are not sent in the demo: codes are written to {outbox}
(`tail -f` it). The demo registry is {config.var_file(config.registry.path, "registry.json")}.
{captcha_note}"""


def registry_people_by_account() -> tuple[list[DemoPerson], list[DemoPerson]]:
    """The demo registry's people beyond the demo users, split into those who registered an account (on an
    earlier run) and those who still can."""
    others = DEMO_PEOPLE[len(DEMO_USERS) :]
    registered = [person for person in others if find_user_by_national_code(person[0]) is not None]
    return registered, [person for person in others if person not in registered]


def registration_text(registered: list[DemoPerson], newcomers: list[DemoPerson]) -> str:
    lines = []
    if newcomers:
        lines.append(
            f"Register a new account at {current_provider().url('/register')} as one of the demo registry's people "
            "without one\n(Jalali birth dates; any strong password):"
        )
        lines += [
            f"    mobile 0{mobiles[0][3:]}  national code {code}  born {_jalali(born)}"
            for code, born, _, _, mobiles in newcomers
        ]
    else:
        lines.append("Every person of the demo registry has an account now: none is left to register.")
    if registered:
        lines.append("Registered on an earlier run (log in with the password chosen then):")
        lines += [f"    national code {code}  ({given} {family})" for code, _, given, family, _ in registered]
    return "\n".join(lines)


def choose_issuer() -> None:
    """Unless an issuer was configured, the demo's is ``http://localhost:PORT``: passkeys need a host name, as
    browsers refuse an IP address as relying-party ID (README, "Passkeys"). The environment carries it to the
    `idp serve` and `idp clients` the demo starts, and into the example sites' settings."""
    config = load_config()
    if config.server.issuer == ServerConfig().issuer:
        os.environ["IDP_SERVER_ISSUER"] = f"http://localhost:{config.server.port}"


def main() -> None:
    choose_issuer()
    app = create_app()
    with app.app_context():
        result = set_up()
        for kid in result["new_keys"]:  # type: ignore[union-attr]
            print(f"generated signing key {kid}")
        for site in SITES:
            register_site(site)
        print(instructions(str(result["client_id"]), str(result["client_secret"])))
        print(sites_text())
        sites = {site.module: (site.port, site_settings_path(site)) for site in SITES}
    if "--no-serve" not in sys.argv:
        serve_all(sites)


def sites_text() -> str:
    provider = current_provider()
    lines = [
        "The three sites (single sign-on: log in at one, the other asks no password; log out at one, both end):",
        f"  Hoviyat (the provider):        {provider.issuer}",
    ]
    lines += [
        f"  {site.module:29} {site.base_url}"
        + ("   (FAPI 2.0: PAR, DPoP, private_key_jwt)" if site.profile == "fapi2" else "")
        for site in SITES
    ]
    lines.append(f"Demo identities with accounts (password {DEMO_PASSWORD!r}):")
    lines += [f"  national code {code}  ({given} {family})" for code, _, _, given, family in DEMO_USERS]
    return "\n".join(lines) + "\n"


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_all(sites: dict[str, tuple[int, Path]]) -> None:
    """Run the provider and both sites until Ctrl-C or until one of them stops."""
    python = sys.executable
    commands: list[tuple[list[str], dict[str, str]]] = [([*_idp_command(), "serve"], {})]
    for module, (port, settings_path) in sites.items():
        env = {f"{module.upper()}_CONFIG": str(settings_path)}
        commands.append(([python, "-m", f"clients.{module}", "--port", str(port)], env))
    processes = [subprocess.Popen(command, env={**os.environ, **env}) for command, env in commands]  # noqa: S603
    signal.signal(signal.SIGTERM, _stop)  # a service manager's "stop" ends the three as Ctrl-C does
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
