"""Every page of the account, in Persian and in English, on a 390 x 844 phone in a real browser.

A person logs in, lets two apps use the account (one of them since removed), writes to support and logs in
from a second device; then visits each page of the account, filling in the email, the address and the
authenticator app on the way so that both the empty and the filled pages are seen, and the disclosure ledger
whole and filtered to one app. Each page is photographed
into test-artifacts/screenshots/<lang>/<page>.png and checked (tests/browser/page_checks.py): the direction of
the language, no raw message key shown to the reader, nothing wider than the screen.

``ACCOUNT_PAGES`` is the list of pages seen; :func:`test_every_account_page_is_seen` fails when a page is added
under /account without being added there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyotp
import pytest
import requests
from flask import Flask

from idp.extensions import db
from idp.store import commit
from idp.store.clients import delete_client, get_client
from tests.helpers import (
    REDIRECT_URI,
    ClientInfo,
    UserInfo,
    authorization_params,
    browser_for,
    create_test_client,
    create_test_user,
    last_sms_code,
    pkce_pair,
    query_of,
)

from .page_checks import page_problems, raw_keys

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTH, HEIGHT = 390, 844
AT_RP = re.compile(r"^https://rp\.example/")
#: The second device the person logged in from, as its browser names itself.
PHONE_FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"

REMOVED_APP = {"fa": "برنامه‌ای که حذف شده است", "en": "removed app"}
FIREFOX_ON_ANDROID = {"fa": "Firefox روی Android", "en": "Firefox on Android"}

#: (screenshot name, path) of every page seen, in the order the person sees them. A page reached by a form
#: (the e-mail code, the recovery codes) is seen after that form is sent.
ACCOUNT_PAGES = [
    ("profile-empty", "/"),
    ("email", "/account/email"),
    ("email-verify", "/account/email/verify"),
    ("address", "/account/address"),
    ("profile", "/"),
    ("password", "/account/password"),
    ("two-factor-off", "/account/two-factor"),
    ("two-factor-confirmed", "/account/two-factor"),
    ("recovery-codes", "/account/two-factor"),
    ("two-factor-on", "/account/two-factor"),
    ("passkeys", "/account/passkeys"),
    ("sessions", "/account/sessions"),
    ("apps", "/account/apps"),
    ("activity", "/account/activity"),
    ("disclosures", "/account/disclosures"),
    ("disclosures-one-app", "/account/disclosures"),
    ("support", "/support"),
    ("mobile-change", "/mobile/change"),
]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("support.message", ["support.message"]),
        ("An app received tokens (token.issued)", ["token.issued"]),
        ("verified by ir_sabt_ahval", ["ir_sabt_ahval"]),
        ("ali.rezaei@example.ir", []),
        ("https://id.example/account/activity?x=a.b", []),
        ("write to hoviyat.ir or support.hoviyat.ir", []),
        ("e.g. version 1.5, i.e. not 3.14", []),
        ("رویداد support.message ثبت شد", ["support.message"]),
        ("Chrome on Linux. Firefox on Android.", []),
    ],
)
def test_raw_key_pattern(text: str, keys: list[str]) -> None:
    assert raw_keys(text) == keys


#: Account addresses that download a file rather than show a page.
DOWNLOADS = {"/account/export"}


def test_every_account_page_is_seen(app: Flask) -> None:
    """Each page of the account (a GET under /account, the home and support; downloads are not pages) is in
    ACCOUNT_PAGES."""
    seen = {path for _, path in ACCOUNT_PAGES}
    pages = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods
        and (rule.rule.startswith("/account/") or rule.endpoint in {"account.home", "account.support"})
        and not rule.rule.endswith((".json", ".csv"))
        and rule.rule not in DOWNLOADS
    }
    assert pages - seen == set(), "add these pages to ACCOUNT_PAGES"


class Visit:
    """One person's browser at one language: moves between pages, photographs and checks each."""

    def __init__(self, page: Any, issuer: str, locale: str) -> None:
        self.page = page
        self.issuer = issuer
        self.locale = locale
        self.folder = SCREENSHOTS / locale
        self.folder.mkdir(parents=True, exist_ok=True)
        self.problems: dict[str, list[str]] = {}
        self.seen: list[str] = []

    def open(self, path: str) -> None:
        response = self.page.goto(self.issuer + path)
        assert response is not None and response.ok, f"{path} -> {response.status if response else None}"

    def press(self, selector: str) -> None:
        target = self.page.locator(selector)
        assert target.count() == 1, f"{selector}: {target.count()} on {self.page.url}"
        with self.page.expect_navigation():
            target.click()
        self.page.wait_for_load_state("load")

    def fill(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.page.locator(f'[name="{name}"]:not([type="hidden"])').fill(value)

    def see(self, name: str) -> None:
        """Photograph the page (written beside and renamed, as two runs may write the same file) and check it."""
        expected = dict(ACCOUNT_PAGES)[name]
        assert urlsplit(self.page.url).path == expected, f"{name}: expected {expected}, at {self.page.url}"
        self.page.wait_for_load_state("load")
        path = self.folder / f"{name}.png"
        partial = path.with_suffix(f".{os.getpid()}.png")
        self.page.screenshot(path=str(partial), full_page=True)
        os.replace(partial, path)
        print(f"screenshot: {path}")
        self.seen.append(name)
        problems = page_problems(self.page, self.locale, WIDTH)
        if problems:
            self.problems[name] = problems


def let_app_in(visit: Visit, app: Flask, rp: ClientInfo) -> None:
    """The app asks for the account; the person allows it; the app redeems its code for tokens."""
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, scope="openid profile national_id")
    visit.page.goto(f"{visit.issuer}/authorize?{urlencode(params)}")
    with visit.page.expect_request(lambda request: AT_RP.match(request.url) is not None) as sent:
        visit.page.locator('button[name="decision"][value="allow"]').click()
    query = query_of(sent.value.url)
    answer = requests.post(
        f"{visit.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def remove_client(app: Flask, client_id: str) -> None:
    with app.app_context():
        delete_client(get_client(client_id, fresh=True))
        commit()
        db.session.remove()


def log_in_elsewhere(app: Flask, user: UserInfo) -> None:
    """A second session, from a phone's Firefox."""
    other = browser_for(app, user_agent=PHONE_FIREFOX, ip="10.20.30.40")
    page = other.login(other.get("/login"), user)
    assert page.status_code == 200 and page.request.path == "/"


@pytest.mark.browser
@pytest.mark.parametrize("locale", ["fa", "en"])
def test_account_pages_on_a_phone(app: Flask, live_server: str, chromium: Any, locale: str) -> None:
    user = create_test_user(app)
    carmaker = create_test_client(app, name="سامانه فروش خودرو", scope="openid profile phone national_id")
    removed = create_test_client(app, name="Old Portal")
    context = chromium.new_context(
        viewport={"width": WIDTH, "height": HEIGHT},
        device_scale_factor=1,
        is_mobile=True,
        has_touch=True,
        locale="fa-IR" if locale == "fa" else "en-US",
    )
    context.set_default_timeout(15_000)
    try:
        visit = Visit(context.new_page(), live_server, locale)
        visit.open(f"/language/{locale}")
        visit.open("/login")
        visit.fill({"national_code": user.national_code, "password": user.password})
        visit.press('form[action*="/login"] button[type="submit"].primary')

        let_app_in(visit, app, carmaker)
        let_app_in(visit, app, removed)
        remove_client(app, removed.client_id)
        log_in_elsewhere(app, user)
        visit.open("/support")
        visit.fill({"subject": "Question", "body": "How do I change my name?"})
        visit.press('form[action*="/support"] button[type="submit"]')

        visit.open("/")
        visit.see("profile-empty")
        visit.open("/account/email")
        visit.see("email")
        visit.fill({"email": "ali.rezaei@example.ir"})
        visit.press('form[action*="/account/email"] button[type="submit"]')
        visit.see("email-verify")
        visit.fill({"code": mail_code(app)})
        visit.press('form[action*="/account/email/verify"] button[type="submit"]')
        visit.open("/account/address")
        visit.see("address")
        visit.fill({"postal_address": "تهران، خیابان آزادی، کوچه یاس، پلاک ۷", "postal_code": "1345678901"})
        visit.press('form[action*="/account/address"] button[type="submit"]')
        visit.see("profile")
        visit.open("/account/password")
        visit.see("password")
        visit.open("/account/two-factor")
        visit.see("two-factor-off")
        visit.press("#confirm-first")  # a password login is one factor: confirm with an SMS code first
        visit.press("#send-code")
        visit.fill({"code": last_sms_code(app, user.mobile, "step_up")})
        visit.press('form[action*="/login/second-factor"] button[type="submit"].primary')
        visit.see("two-factor-confirmed")
        secret = visit.page.locator("#totp-secret").inner_text().strip()
        visit.fill({"code": pyotp.TOTP(secret).now()})
        visit.press('form[action*="/account/two-factor"] button[type="submit"].primary')
        visit.see("recovery-codes")
        visit.open("/account/two-factor")
        visit.see("two-factor-on")
        visit.open("/account/passkeys")
        visit.see("passkeys")
        visit.open("/account/sessions")
        visit.see("sessions")
        assert FIREFOX_ON_ANDROID[locale] in visit.page.locator("ul.rows").inner_text()
        visit.open("/account/apps")
        visit.see("apps")
        visit.open("/account/activity")
        visit.see("activity")
        events = visit.page.locator("ul.events").inner_text()
        assert "سامانه فروش خودرو" in events and REMOVED_APP[locale] in events, events
        visit.open("/account/disclosures")
        visit.see("disclosures")
        ledger = visit.page.locator("table.ledger").inner_text()
        assert "سامانه فروش خودرو" in ledger and REMOVED_APP[locale] in ledger, ledger
        visit.page.locator("#client").select_option(label="سامانه فروش خودرو")
        visit.page.locator("#period").select_option("30d")
        visit.press("#apply-filters")
        visit.see("disclosures-one-app")
        assert visit.page.locator("tr.disclosure").count() == 1
        visit.open("/support")
        visit.see("support")
        visit.open("/mobile/change")
        visit.see("mobile-change")
    finally:
        context.close()

    assert visit.seen == [name for name, _ in ACCOUNT_PAGES]
    assert visit.problems == {}, "\n".join(
        f"{name}: {problem}" for name, problems in visit.problems.items() for problem in problems
    )


def mail_code(app: Flask) -> str:
    config = app.extensions["idp"].config
    path = config.var_file(config.mail.outbox_path, "mail-outbox.jsonl")
    return json.loads(path.read_text(encoding="utf-8").splitlines()[-1])["code"]
