"""``make demo``'s set-up: database, keys, a demo client and demo users, then how to try a login.

Safe to run again: it upgrades the schema, keeps existing keys and users, and gives the demo client a new
secret each time (secrets are stored only hashed, so an old one cannot be shown again).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from urllib.parse import urlencode

from sqlalchemy import select

from . import create_app
from .cli.serve import ensure_signing_keys
from .cli.users import admin_import_evidence
from .extensions import db
from .oidc import paths
from .passwords import hash_password
from .provider import current_provider
from .registry.demo import DEMO_PEOPLE
from .rules.birthdate import gregorian_to_jalali
from .store import commit
from .store.clients import Registration, create_client, rotate_secret
from .store.models import Client
from .store.schema import upgrade_schema
from .store.users import create_user, find_user_by_national_code

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
    newcomers = "\n".join(
        f"    mobile 0{mobiles[0][3:]}  national code {code}  born {_jalali(born)}"
        for code, born, _, _, mobiles in DEMO_PEOPLE[2:]
    )
    config = provider.config
    outbox = config.var_file(config.sms.outbox_path, "sms-outbox.jsonl")
    return f"""
Hoviyat is set up.

  Issuer:     {provider.issuer}
  Discovery:  {provider.url(paths.DISCOVERY)}
  Demo client_id:     {client_id}
  Demo client_secret: {client_secret}   (new on every `make demo`; stored only hashed)

Demo users (password "{DEMO_PASSWORD}"):
{users}

Try a login once the server below is running:
  1. Open this address in a browser, log in with a demo user and allow the request:
     {provider.url(paths.AUTHORIZE)}?{query}
  2. You are sent to {DEMO_REDIRECT_URI}?code=... (no site answers there yet; the example
     relying parties come later). Copy the `code` value from the address bar, then within 60 seconds:
     curl -s -u '{client_id}:{client_secret}' \\
       -d grant_type=authorization_code -d 'redirect_uri={DEMO_REDIRECT_URI}' \\
       -d code_verifier={verifier} -d code=PASTE_THE_CODE {provider.url(paths.TOKEN)}
  3. The answer holds an ID token with the verified national ID, and an access token for
     {provider.url(paths.USERINFO)}.

Register a new account at {provider.url("/register")} as one of the demo registry's people
(Jalali birth dates; any strong password):
{newcomers}
Text messages are not sent in the demo: codes are written to {outbox}
(`tail -f` it). The demo registry is {config.var_file(config.registry.path, "registry.json")}.
"""


def main() -> None:
    app = create_app()
    with app.app_context():
        result = set_up()
        for kid in result["new_keys"]:  # type: ignore[union-attr]
            print(f"generated signing key {kid}")
        print(instructions(str(result["client_id"]), str(result["client_secret"])))


if __name__ == "__main__":
    main()
