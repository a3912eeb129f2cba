"""`idp serve` refuses what cannot work, and `make demo`'s set-up gives a login that works."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from idp.demo import DEMO_PASSWORD, DEMO_REDIRECT_URI, instructions, set_up

from .helpers import Browser, query_of


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
