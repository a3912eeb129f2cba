"""`idp serve` refuses what cannot work, and `make demo`'s set-up gives a login that works."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

from idp.demo import DEMO_PASSWORD, DEMO_REDIRECT_URI, instructions, set_up
from idp.identity_registry.demo import DEMO_PEOPLE

from .helpers import Browser, create_test_user, query_of


def _standalone_app(tmp_path):
    """An app on a fresh, unmigrated SQLite file with the in-process store."""
    from idp import create_app

    return create_app(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'empty.sqlite3'}"},
            "server": {"var_dir": str(tmp_path / "var"), "secret_key": "k", "pairwise_salt": "s"},
            "keys": {"dir": str(tmp_path / "keys")},
        }
    )


def test_serve_refuses_several_workers_with_the_in_process_store(tmp_path):
    result = _standalone_app(tmp_path).test_cli_runner().invoke(args=["serve", "--workers", "2"])
    assert result.exit_code != 0
    assert "redis.url" in result.output


def test_serve_refuses_an_unmigrated_database(tmp_path):
    result = _standalone_app(tmp_path).test_cli_runner().invoke(args=["serve"])
    assert result.exit_code != 0
    assert "idp db upgrade" in result.output


def test_demo_set_up_is_repeatable_and_its_instructions_work(app, client, issuer):
    with app.app_context():
        first = set_up()
        second = set_up()
        text = instructions(str(second["client_id"]), str(second["client_secret"]))
    assert first["client_id"] == second["client_id"]
    assert first["client_secret"] != second["client_secret"]  # a new secret each run; the old one is gone

    url = re.search(r"(http://\S+/authorize\?\S+)", text).group(1)
    verifier = re.search(r"code_verifier=(\S+)", text).group(1)
    browser = Browser(client, issuer)
    page = browser.get(url)
    page = browser.submit(page, {"national_code": "0012345679", "password": DEMO_PASSWORD}, field_name="password")
    callback = browser.consent(page)
    assert callback.location.startswith(DEMO_REDIRECT_URI)
    code = query_of(callback.location)["code"]
    token = client.post(
        urlsplit(issuer + "/token").path,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEMO_REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(str(second["client_id"]), str(second["client_secret"])),
    )
    assert token.status_code == 200, token.get_json()
    assert token.get_json()["id_token"]


def _registrable_and_registered(text: str) -> tuple[str, str]:
    """The instructions' list of people who can register, and of those who registered on an earlier run."""
    start = text.index("Register a new account") if "Register a new account" in text else text.index("Every person")
    end = text.index("Text messages")
    part = text[start:end]
    registrable, _, registered = part.partition("Registered on an earlier run")
    return registrable, registered


def test_demo_run_again_lists_only_people_without_an_account_as_able_to_register(app):
    with app.app_context():
        set_up()
        registrable, registered = _registrable_and_registered(instructions("id", "secret"))
    newcomers = [code for code, *_ in DEMO_PEOPLE[2:]]
    assert all(code in registrable for code in newcomers) and registered == ""

    # زهرا کریمی registers (as in the story of the example sites); the demo is run again.
    code, born, given, family, mobiles = DEMO_PEOPLE[2]
    create_test_user(
        app, national_code=code, mobile=mobiles[0], birthdate=dt.date.fromisoformat(born), given_name=given,
        family_name=family,
    )  # fmt: skip
    with app.app_context():
        set_up()
        registrable, registered = _registrable_and_registered(instructions("id", "secret"))
    assert code not in registrable and f"national code {code}  ({given} {family})" in registered
    assert all(other in registrable for other in newcomers[1:])

    for other_code, other_born, other_given, other_family, other_mobiles in DEMO_PEOPLE[3:]:
        create_test_user(
            app, national_code=other_code, mobile=other_mobiles[0], birthdate=dt.date.fromisoformat(other_born),
            given_name=other_given, family_name=other_family,
        )  # fmt: skip
    with app.app_context():
        registrable, registered = _registrable_and_registered(instructions("id", "secret"))
    assert "none is left to register" in registrable
    assert not any(code in registrable for code in newcomers)
    assert all(code in registered for code in newcomers)
