"""The signed-in user's pages (idp/account): the profile with its registry-verified fields, the email and
postal address, the password, the sessions, the connected apps and the activity log.

Text is asserted in English (``Accept-Language: en``) except where the Persian rendering (Jalali dates,
Persian digits) is the point.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jdatetime
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.audit_events import AUDIT_EVENTS
from idp.extensions import db
from idp.rules.digits import to_persian_digits
from idp.store import audit, commit
from idp.store.clients import delete_client, get_client
from idp.store.models import AuditEvent, User, UserSession

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    add_registry_person,
    authorization_params,
    browser_for,
    code_flow_tokens,
    create_test_client,
    create_test_user,
    field_error,
    find_form,
    parse_page,
    pkce_pair,
    refresh_grant,
    registry_path,
)

EN = "en"
ROOT = Path(__file__).resolve().parent.parent
NEW_PASSWORD = "a brand new passphrase"
JALALI_MONTHS = (
    "فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
    "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند",
)  # fmt: skip
TEHRAN = ZoneInfo("Asia/Tehran")

# Another person of the demo registry, for "another user" cases.
OTHER_CODE = "0499370899"
OTHER_MOBILE = "+989351112233"
OTHER_BIRTHDATE = dt.date(1985, 9, 23)


# -- helpers ---------------------------------------------------------------------------------------------

_addresses = itertools.count(random.randrange(1 << 20))
CLIENT_ADDRESS = "127.0.0.1"


@pytest.fixture(autouse=True)
def client_address() -> str:
    """A client IP address of this test alone: on Redis, Flask-Limiter's hourly counters (codes per IP)
    outlive each test, so tests at one shared 127.0.0.1 would eat into each other's budget."""
    global CLIENT_ADDRESS
    n = next(_addresses) % (1 << 24)
    CLIENT_ADDRESS = f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
    return CLIENT_ADDRESS


class _TextParser(HTMLParser):
    """The visible text of a page, one entry per text node, and each row (``li``/``tr``) with its forms."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._open_rows: list[dict[str, Any]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag in {"script", "style", "title"}:
            self._skip += 1
        if tag in {"li", "tr"}:
            row: dict[str, Any] = {"text": [], "actions": []}
            self._open_rows.append(row)
            self.rows.append(row)
        if tag == "form":
            for row in self._open_rows:
                row["actions"].append(a.get("action", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "title"} and self._skip:
            self._skip -= 1
        if tag in {"li", "tr"} and self._open_rows:
            self._open_rows.pop()

    def handle_data(self, data: str) -> None:
        if self._skip or not data.strip():
            return
        chunk = " ".join(data.split())
        self.text.append(chunk)
        for row in self._open_rows:
            row["text"].append(chunk)


def parsed(response: Any) -> _TextParser:
    parser = _TextParser()
    parser.feed(response.get_data(as_text=True))
    return parser


def text_of(response: Any) -> str:
    return " ".join(parsed(response).text)


def new_browser(app: Flask, user_agent: str = "Browser A", language: str | None = None) -> Browser:
    """A browser at this test's own client address, named by its User-Agent."""
    return browser_for(app, language=language, ip=CLIENT_ADDRESS, user_agent=user_agent)


def log_in(app: Flask, user: UserInfo, user_agent: str = "Browser A", language: str | None = EN) -> Browser:
    browser = new_browser(app, user_agent, language)
    page = browser.login(browser.get("/login"), user)
    assert page.status_code == 200, page.get_data(as_text=True)[:1000]
    assert page.request.path == "/", page.request.path
    return browser


def csrf_token(browser: Browser, path: str = "/") -> str:
    page = browser.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return find_form(page.get_data(as_text=True), field_name="csrf_token").fields["csrf_token"]


def post_raw(browser: Browser, path: str, data: dict[str, str]) -> Any:
    """A POST without following redirects."""
    return browser.client.post(path, data=data)


def is_logged_out(browser: Browser) -> bool:
    response = browser.client.get("/")
    if response.status_code in (302, 303):
        assert urlsplit(response.location).path == "/login", response.location
        return True
    assert response.status_code == 200, response.status_code
    return False


def redirect_path(response: Any) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:1000])
    return urlsplit(response.location).path


def assert_refresh_refused(client: FlaskClient, rp: ClientInfo, refresh_token: str) -> None:
    response = refresh_grant(client, rp, refresh_token)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_grant"


def userinfo(client: FlaskClient, access_token: str) -> Any:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def id_token_claims(client: FlaskClient, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256", "ES256"]).claims)


def load_user(app: Flask, user_id: str) -> User:
    with app.app_context():
        found = db.session.get(User, user_id)
        assert found is not None
        db.session.expunge(found)
        return found


def session_id_of(app: Flask, user_id: str, user_agent: str) -> str:
    with app.app_context():
        rows = db.session.scalars(
            select(UserSession).where(UserSession.user_id == user_id, UserSession.user_agent == user_agent)
        ).all()
        assert len(rows) == 1, rows
        return rows[0].id


def audit_events(app: Flask, user_id: str, event: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.user_id == user_id).order_by(AuditEvent.id)
        if event:
            query = query.where(AuditEvent.event == event)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        return rows


def mail_outbox(app: Flask) -> list[dict[str, Any]]:
    config = app.extensions["idp"].config
    path = config.var_file(config.mail.outbox_path, "mail-outbox.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def other_user(app: Flask) -> UserInfo:
    return create_test_user(
        app,
        national_code=OTHER_CODE,
        mobile=OTHER_MOBILE,
        birthdate=OTHER_BIRTHDATE,
        given_name="مریم",
        family_name="احمدی",
    )


def remove_registry_person(app: Flask, national_code: str) -> None:
    path = registry_path(app)
    people = [p for p in json.loads(path.read_text(encoding="utf-8")) if p["national_code"] != national_code]
    path.write_text(json.dumps(people, ensure_ascii=False), encoding="utf-8")


# -- logged out ------------------------------------------------------------------------------------------

ACCOUNT_PAGES = [
    "/",
    "/account/email",
    "/account/email/verify",
    "/account/address",
    "/account/password",
    "/account/two-factor",
    "/account/sessions",
    "/account/apps",
    "/account/activity",
    "/account/disclosures",
    "/account/disclosures.json",
    "/account/disclosures.csv",
    "/account/export",
]

ACCOUNT_POSTS = [
    "/account/refresh",
    "/account/email",
    "/account/email/verify",
    "/account/address",
    "/account/password",
    "/account/two-factor",
    "/account/two-factor/disable",
    "/account/two-factor/recovery-codes",
    "/account/sessions/some-session-id/end",
    "/account/sessions/end-all",
    "/account/apps/some-client/revoke",
]


@pytest.mark.parametrize("path", ACCOUNT_PAGES)
def test_account_pages_send_a_logged_out_visitor_to_login(app, path):
    response = new_browser(app).client.get(path)
    assert redirect_path(response) == "/login"


@pytest.mark.parametrize("path", ACCOUNT_POSTS)
def test_account_actions_send_a_logged_out_visitor_to_login(app, path):
    browser = new_browser(app)
    token = find_form(browser.get("/login").get_data(as_text=True), field_name="csrf_token").fields["csrf_token"]
    response = post_raw(browser, path, {"csrf_token": token, "email": "a@example.com", "code": "123456"})
    assert redirect_path(response) == "/login"


def test_pages_of_an_ended_session_send_to_login(app, user):
    browser = log_in(app, user)
    assert not is_logged_out(browser)
    logout = find_form(browser.get("/").get_data(as_text=True), action_contains="/logout")
    browser.post("/logout", {**logout.fields, "confirm": "yes"})
    for path in ACCOUNT_PAGES:
        assert redirect_path(browser.client.get(path)) == "/login", path


# -- profile ---------------------------------------------------------------------------------------------

VERIFIED_FIELD_NAMES = {
    "name",
    "given_name",
    "family_name",
    "national_code",
    "birthdate",
    "birth_year",
    "birth_month",
    "birth_day",
    "mobile",
}


def _born_1979(app: Flask) -> UserInfo:
    # In the demo registry: born 1979-12-05, which is 14 Azar 1358 in the Jalali calendar.
    return create_test_user(
        app,
        national_code="0034567895",
        mobile="+989191112233",
        birthdate=dt.date(1979, 12, 5),
        given_name="حسین",
        family_name="موسوی",
    )


def test_profile_shows_verified_fields_read_only(app):
    person = _born_1979(app)
    page = log_in(app, person).get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    text = text_of(page)
    assert "حسین" in text and "موسوی" in text
    for form in parse_page(html).forms:
        assert not VERIFIED_FIELD_NAMES & set(form.fields), (form.action, form.fields)
    for tag, attrs in parsed(page).tags:
        if tag in {"input", "select", "textarea"}:
            assert attrs.get("name") not in VERIFIED_FIELD_NAMES, attrs


def test_profile_in_persian_shows_the_birth_date_in_jalali_with_persian_digits(app):
    person = _born_1979(app)
    page = log_in(app, person, language=None).get("/")
    text = text_of(page)
    assert "۱۳۵۸" in text, text  # the Jalali year
    assert "آذر" in text or "۱۳۵۸/۰۹/۱۴" in text, text  # month 9 (Azar), day 14
    assert "۱۴" in text
    assert "1979" not in text and "1358" not in text
    assert to_persian_digits("0034567895") in text  # the national code in Persian digits too


def test_profile_in_english_shows_the_birth_date_in_iso(app):
    person = _born_1979(app)
    text = text_of(log_in(app, person, language=EN).get("/"))
    assert "1979-12-05" in text, text
    assert "0034567895" in text
    assert not re.search("[۰-۹]", text), text


def test_persian_profile_keeps_each_value_beside_its_label(app, user):
    """A left-to-right value is isolated inside its cell (``<bdi dir="ltr">``), not a left-to-right cell, which
    would push it to the far side of the line from its label in a right-to-left page."""
    browser = log_in(app, user, language=None)
    assert redirect_path(_save_address(browser, ADDRESS, "1345678910")) == "/"
    html = browser.get("/").get_data(as_text=True)
    cells = re.findall(r"<dd[^>]*>", html)
    assert cells and all("dir=" not in cell for cell in cells), cells
    assert f'<bdi dir="ltr">{to_persian_digits(user.national_code)}</bdi>' in html
    assert f'<bdi dir="ltr">{to_persian_digits("1345678910")}</bdi>' in html


def test_profile_names_the_registry_that_checked_the_identity(app, user):
    english = log_in(app, user).get("/")
    persian = log_in(app, user, "Browser B", language=None).get("/")
    assert "National Organization for Civil Registration" in text_of(english)
    assert "سازمان ثبت احوال کشور" in text_of(persian)
    for page in (english, persian):
        assert "ir_sabt_ahval" not in page.get_data(as_text=True)


def _refresh(browser: Browser) -> Any:
    response = post_raw(browser, "/account/refresh", {"csrf_token": csrf_token(browser)})
    assert redirect_path(response) == "/"
    return browser.get("/")


def test_refresh_from_registry_updates_changed_names_and_the_id_token_carries_them(app, user, rp_client):
    browser = log_in(app, user)
    add_registry_person(app, user.national_code, "1990-03-21", [user.mobile], "علیرضا", "رضایی‌نژاد")
    before = load_user(app, user.id)

    page = _refresh(browser)
    assert "updated" in text_of(page).lower()
    after = load_user(app, user.id)
    assert (after.given_name, after.family_name) == ("علیرضا", "رضایی‌نژاد")
    assert after.identity_verified_at is not None and after.identity_verified_at >= before.identity_verified_at
    assert "علیرضا" in text_of(page)
    assert audit_events(app, user.id, "profile.refreshed_from_registry")

    token = code_flow_tokens(browser, rp_client, user, scope="openid profile national_id")
    claims = id_token_claims(browser.client, token["id_token"])
    assert claims["given_name"] == "علیرضا"
    assert claims["family_name"] == "رضایی‌نژاد"
    assert claims["name"] == "علیرضا رضایی‌نژاد"
    info = userinfo(browser.client, token["access_token"]).get_json()
    assert info["verified_claims"]["claims"]["given_name"] == "علیرضا"


def test_refresh_with_unchanged_registry_says_nothing_changed(app, user):
    browser = log_in(app, user)
    before = load_user(app, user.id)
    page = _refresh(browser)
    assert "nothing changed" in text_of(page).lower()
    assert 'class="flash flash-error"' not in page.get_data(as_text=True)
    after = load_user(app, user.id)
    assert (after.given_name, after.family_name, after.updated_at) == (
        before.given_name,
        before.family_name,
        before.updated_at,
    )
    assert not audit_events(app, user.id, "profile.refreshed_from_registry")


def _break_registry_file(app: Flask) -> None:
    registry_path(app).write_text("{ this is not json", encoding="utf-8")


def _remove_registry_file(app: Flask) -> None:
    registry_path(app).unlink()


@pytest.mark.parametrize("breakage", [_break_registry_file, _remove_registry_file])
def test_refresh_with_registry_down_asks_to_try_later_and_changes_nothing(app, user, breakage):
    browser = log_in(app, user)
    before = load_user(app, user.id)
    breakage(app)
    page = _refresh(browser)
    assert page.status_code == 200
    assert "try again" in text_of(page).lower()
    after = load_user(app, user.id)
    assert (after.given_name, after.family_name, after.updated_at) == (
        before.given_name,
        before.family_name,
        before.updated_at,
    )


def test_refresh_with_http_registry_unreachable(app_with):
    application = app_with(registry={"backend": "http", "url": "http://127.0.0.1:9", "timeout": 1, "retries": 0})
    person = create_test_user(application)
    browser = log_in(application, person)
    page = _refresh(browser)
    assert page.status_code == 200
    assert "try again" in text_of(page).lower()
    assert load_user(application, person.id).given_name == "علی"


def test_refresh_when_the_registry_no_longer_has_the_person(app, user):
    browser = log_in(app, user)
    before = load_user(app, user.id)
    remove_registry_person(app, user.national_code)
    page = _refresh(browser)
    html = page.get_data(as_text=True)
    assert 'class="flash flash-error"' in html, html[:3000]
    assert "registry" in text_of(page).lower()
    after = load_user(app, user.id)
    assert (after.given_name, after.family_name) == (before.given_name, before.family_name)
    assert not is_logged_out(browser)


# -- email -----------------------------------------------------------------------------------------------


def _start_email(browser: Browser, address: str) -> Any:
    return post_raw(browser, "/account/email", {"csrf_token": csrf_token(browser, "/account/email"), "email": address})


def _verify_email(browser: Browser, code: str) -> Any:
    token = csrf_token(browser, "/account/email/verify")
    return post_raw(browser, "/account/email/verify", {"csrf_token": token, "code": code})


def test_email_is_confirmed_with_a_code_sent_to_it(app, user):
    browser = log_in(app, user)
    response = _start_email(browser, "  Ali.Rezaei@Example.IR ")
    assert redirect_path(response) == "/account/email/verify"

    [mail] = mail_outbox(app)
    assert mail["to"] == "Ali.Rezaei@example.ir"
    assert mail["purpose"] == "verify_email"
    assert re.fullmatch(r"\d{6}", mail["code"]), mail
    assert mail["subject"]
    assert mail["code"] in mail["text"]
    assert load_user(app, user.id).email is None

    response = _verify_email(browser, to_persian_digits(mail["code"]))  # typed in Persian digits
    assert redirect_path(response) == "/"
    stored = load_user(app, user.id)
    assert stored.email == "Ali.Rezaei@example.ir"
    assert stored.email_verified is True
    assert audit_events(app, user.id, "email.verified")
    assert "Ali.Rezaei@example.ir" in text_of(browser.get("/"))

    # The code is spent.
    assert redirect_path(_verify_email_raw(browser, mail["code"])) == "/account/email"


def _verify_email_raw(browser: Browser, code: str) -> Any:
    return post_raw(browser, "/account/email/verify", {"csrf_token": csrf_token(browser), "code": code})


@pytest.mark.parametrize("before", ["missing", "open to others"])
def test_email_codes_land_in_a_private_outbox(app, user, before):
    """The mail outbox holds codes: 0600 when the provider creates it, tightened when it finds it looser."""
    config = app.extensions["idp"].config
    path = config.var_file(config.mail.outbox_path, "mail-outbox.jsonl")
    previous = os.umask(0o022)
    try:
        if before == "open to others":
            path.write_text("", encoding="utf-8")
            path.chmod(0o644)
        browser = log_in(app, user)
        assert redirect_path(_start_email(browser, "ali@example.ir")) == "/account/email/verify"
    finally:
        os.umask(previous)
    [mail] = mail_outbox(app)
    assert mail["purpose"] == "verify_email"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_email_code_does_not_set_the_address(app, user):
    browser = log_in(app, user)
    _start_email(browser, "ali@example.com")
    [mail] = mail_outbox(app)
    wrong = "000000" if mail["code"] != "000000" else "111111"
    response = _verify_email(browser, wrong)
    assert response.status_code == 200
    assert field_error(response, "code", raw=True), response.get_data(as_text=True)[:3000]
    stored = load_user(app, user.id)
    assert stored.email is None and not stored.email_verified
    # The right code still works afterwards.
    assert redirect_path(_verify_email(browser, mail["code"])) == "/"
    assert load_user(app, user.id).email == "ali@example.com"


def test_expired_email_code_is_refused(app, user):
    from idp import clock

    browser = log_in(app, user)
    _start_email(browser, "ali@example.com")
    [mail] = mail_outbox(app)
    clock.advance(121)
    response = _verify_email(browser, mail["code"])
    assert response.status_code == 200
    assert field_error(response, "code", raw=True)
    assert load_user(app, user.id).email is None


@pytest.mark.parametrize("address", ["", "   ", "not-an-email", "ali@", "@example.com", "ali@example", "a b@ex.com"])
def test_invalid_email_address_is_a_field_error(app, user, address):
    browser = log_in(app, user)
    response = _start_email(browser, address)
    assert response.status_code == 200
    assert field_error(response, "email", raw=True), response.get_data(as_text=True)[:3000]
    assert mail_outbox(app) == []
    assert load_user(app, user.id).email is None


def test_email_scope_returns_the_verified_email_at_userinfo(app, user):
    rp = create_test_client(app, scope="openid email")
    browser = log_in(app, user)
    _start_email(browser, "ali@example.com")
    [mail] = mail_outbox(app)
    _verify_email(browser, mail["code"])

    token = code_flow_tokens(browser, rp, user, scope="openid email")
    response = userinfo(browser.client, token["access_token"])
    assert response.status_code == 200
    info = response.get_json()
    assert info["email"] == "ali@example.com"
    assert info["email_verified"] is True
    assert "national_id" not in info and "phone_number" not in info


# -- postal address ------------------------------------------------------------------------------------------

ADDRESS = "تهران، خیابان آزادی، کوچه ۱۲، پلاک ۷"


def _save_address(browser: Browser, postal_address: str, postal_code: str) -> Any:
    token = csrf_token(browser, "/account/address")
    return post_raw(
        browser, "/account/address", {"csrf_token": token, "postal_address": postal_address, "postal_code": postal_code}
    )


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("1345678910", "1345678910"),
        ("۱۳۴۵۶۷۸۹۱۰", "1345678910"),
        ("١٣٤٥٦٧٨٩١٠", "1345678910"),
        ("13456-78910", "1345678910"),
        (" 9876543210 ", "9876543210"),
    ],
)
def test_postal_address_is_saved(app, user, typed, stored):
    browser = log_in(app, user)
    response = _save_address(browser, ADDRESS, typed)
    assert redirect_path(response) == "/"
    saved = load_user(app, user.id)
    assert saved.postal_address == ADDRESS
    assert saved.postal_code == stored
    assert audit_events(app, user.id, "address.changed")
    page = browser.get("/account/address")
    assert find_form(page.get_data(as_text=True), field_name="postal_code").fields["postal_code"] == stored


@pytest.mark.parametrize(
    ("postal_code", "why"),
    [
        ("", "empty"),
        ("12345", "too short"),
        ("13456789101", "too long"),
        ("13456abcde", "letters"),
        ("0345678910", "0 in the first five"),
        ("1345078910", "0 in the fifth"),
        ("1234567891", "2 in the first five"),
        ("۱۳۴۲۵۶۷۸۹۱", "2 in the first five, Persian digits"),
    ],
)
def test_bad_postal_codes_are_field_errors(app, user, postal_code, why):
    browser = log_in(app, user)
    response = _save_address(browser, ADDRESS, postal_code)
    assert response.status_code == 200, why
    assert field_error(response, "postal_code", raw=True), (why, response.get_data(as_text=True)[:3000])
    saved = load_user(app, user.id)
    assert saved.postal_address is None and saved.postal_code is None


def test_empty_postal_address_is_a_field_error(app, user):
    browser = log_in(app, user)
    response = _save_address(browser, "   ", "1345678910")
    assert response.status_code == 200
    assert field_error(response, "postal_address", raw=True)
    assert load_user(app, user.id).postal_code is None


def test_address_scope_returns_the_address_at_userinfo(app, user):
    rp = create_test_client(app, scope="openid address")
    browser = log_in(app, user)
    assert redirect_path(_save_address(browser, ADDRESS, "۱۳۴۵۶۷۸۹۱۰")) == "/"
    token = code_flow_tokens(browser, rp, user, scope="openid address")
    response = userinfo(browser.client, token["access_token"])
    assert response.status_code == 200
    info = response.get_json()
    assert info["address"] == {"formatted": ADDRESS, "postal_code": "1345678910", "country": "IR"}
    assert "email" not in info and "national_id" not in info


# -- password change ------------------------------------------------------------------------------------------


def _change_password(browser: Browser, current: str, new: str, confirm: str | None = None) -> Any:
    token = csrf_token(browser, "/account/password")
    return post_raw(
        browser,
        "/account/password",
        {
            "csrf_token": token,
            "current_password": current,
            "password": new,
            "password_confirm": new if confirm is None else confirm,
        },
    )


def _password_works(app: Flask, user: UserInfo, password: str) -> bool:
    browser = new_browser(app, "Checker")
    page = browser.login(browser.get("/login"), UserInfo(user.id, user.national_code, password))
    return page.request.path == "/"


def test_password_change_ends_other_sessions_and_their_refresh_tokens(app, user, rp_client):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    my_tokens = code_flow_tokens(mine, rp_client, user)
    other_tokens = code_flow_tokens(other, rp_client, user)

    response = _change_password(mine, user.password, NEW_PASSWORD)
    assert redirect_path(response) == "/"

    assert is_logged_out(other)
    assert_refresh_refused(other.client, rp_client, other_tokens["refresh_token"])
    assert userinfo(other.client, other_tokens["access_token"]).status_code == 401

    assert not is_logged_out(mine)
    assert refresh_grant(mine.client, rp_client, my_tokens["refresh_token"]).status_code == 200

    [event] = audit_events(app, user.id, "password.changed")
    assert "password" not in json.dumps(event.detail).replace("password_changed", "")
    assert _password_works(app, user, NEW_PASSWORD)
    assert not _password_works(app, user, user.password)


def test_password_change_needs_the_current_password(app, user):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    response = _change_password(mine, "not my password", NEW_PASSWORD)
    assert response.status_code == 200
    assert field_error(response, "current_password", raw=True), response.get_data(as_text=True)[:3000]
    assert not is_logged_out(other)
    assert not audit_events(app, user.id, "password.changed")
    assert _password_works(app, user, user.password)
    assert not _password_works(app, user, NEW_PASSWORD)


@pytest.mark.parametrize(
    ("new", "confirm", "error_field"),
    [
        ("short", None, "password"),
        ("0012345679", None, "password"),  # the national code
        ("09121234567", None, "password"),  # the mobile
        ("13690101", None, "password"),  # the birth date, Jalali
        ("1990-03-21", None, "password"),  # the birth date, Gregorian
        ("password1", None, "password"),  # common
        ("PASSWORD1", None, "password"),  # common, other case
        (NEW_PASSWORD, NEW_PASSWORD + "!", "password_confirm"),
        ("", None, "password"),
    ],
)
def test_new_password_rules(app, user, new, confirm, error_field):
    mine = log_in(app, user)
    response = _change_password(mine, user.password, new, confirm)
    assert response.status_code == 200
    assert field_error(response, error_field, raw=True), response.get_data(as_text=True)[:3000]
    assert not audit_events(app, user.id, "password.changed")
    assert _password_works(app, user, user.password)


# -- sessions --------------------------------------------------------------------------------------------


def _session_rows(page: Any) -> list[dict[str, Any]]:
    return [
        row
        for row in parsed(page).rows
        if len([a for a in row["actions"] if re.search(r"/account/sessions/[^/]+/end$", a)]) == 1
    ]


def _end_session(browser: Browser, session_id: str) -> Any:
    token = csrf_token(browser, "/account/sessions")
    return post_raw(browser, f"/account/sessions/{session_id}/end", {"csrf_token": token})


def test_sessions_lists_both_browsers_and_marks_the_current(app, user):
    mine = log_in(app, user, "Browser A")
    log_in(app, user, "Browser B")
    my_id = session_id_of(app, user.id, "Browser A")
    other_id = session_id_of(app, user.id, "Browser B")

    page = mine.get("/account/sessions")
    assert page.status_code == 200
    rows = _session_rows(page)
    assert len(rows) == 2, rows
    by_id = {row["actions"][0].rsplit("/", 2)[-2]: " ".join(row["text"]) for row in rows}
    assert set(by_id) == {my_id, other_id}
    assert "Browser A" in by_id[my_id] and "Browser B" in by_id[other_id]
    assert "This device" in by_id[my_id]
    assert "This device" not in by_id[other_id]


CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_ON_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("language", "names"),
    [
        (EN, {"Chrome on Linux", "Firefox on Android", "Safari on iOS"}),
        (None, {"Chrome روی Linux", "Firefox روی Android", "Safari روی iOS"}),
    ],
)
def test_sessions_name_each_device_by_its_browser_and_system(app, user, language, names):
    mine = log_in(app, user, CHROME_ON_LINUX, language=language)
    log_in(app, user, FIREFOX_ON_ANDROID)
    log_in(app, user, SAFARI_ON_IPHONE)
    page = mine.get("/account/sessions")
    rows = [" ".join(row["text"]) for row in _session_rows(page)]
    assert len(rows) == 3
    for name in names:
        assert sum(name in row for row in rows) == 1, (name, rows)
    html = page.get_data(as_text=True)
    # Each Latin name isolated, so that it keeps its place in a Persian sentence; no raw User-Agent.
    assert "<bdi>Chrome</bdi>" in html and "<bdi>Linux</bdi>" in html
    assert "Mozilla/5.0" not in html and "KHTML" not in html


def test_an_unknown_user_agent_is_an_unknown_device_shown_as_sent(app, user):
    mine = log_in(app, user, "<b>Kiosk</b> terminal 7")
    rows = [" ".join(row["text"]) for row in _session_rows(mine.get("/account/sessions"))]
    assert rows == [rows[0]] and "Unknown device" in rows[0] and "<b>Kiosk</b> terminal 7" in rows[0]


def test_ending_another_session_logs_that_browser_out(app, user, rp_client):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    my_tokens = code_flow_tokens(mine, rp_client, user)
    other_tokens = code_flow_tokens(other, rp_client, user)
    other_id = session_id_of(app, user.id, "Browser B")

    response = _end_session(mine, other_id)
    assert redirect_path(response) == "/account/sessions"

    assert is_logged_out(other)
    assert_refresh_refused(other.client, rp_client, other_tokens["refresh_token"])
    assert not is_logged_out(mine)
    assert refresh_grant(mine.client, rp_client, my_tokens["refresh_token"]).status_code == 200
    assert len(_session_rows(mine.get("/account/sessions"))) == 1
    assert audit_events(app, user.id, "session.ended")


def test_ending_the_current_session_from_the_list_logs_out(app, user):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    response = _end_session(mine, session_id_of(app, user.id, "Browser A"))
    assert redirect_path(response) == "/login"
    assert is_logged_out(mine)
    assert not is_logged_out(other)


def test_log_out_everywhere_ends_every_session_including_this_one(app, user, rp_client):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    my_tokens = code_flow_tokens(mine, rp_client, user)
    other_tokens = code_flow_tokens(other, rp_client, user)

    token = csrf_token(mine, "/account/sessions")
    response = post_raw(mine, "/account/sessions/end-all", {"csrf_token": token})
    assert redirect_path(response) == "/login"

    assert is_logged_out(mine)
    assert is_logged_out(other)
    assert_refresh_refused(mine.client, rp_client, my_tokens["refresh_token"])
    assert_refresh_refused(other.client, rp_client, other_tokens["refresh_token"])
    with app.app_context():
        live = db.session.scalars(
            select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        ).all()
        assert live == []


def test_another_users_session_cannot_be_ended(app, user):
    stranger = other_user(app)
    mine = log_in(app, user, "Browser A")
    theirs = log_in(app, stranger, "Browser C")
    their_id = session_id_of(app, stranger.id, "Browser C")

    response = _end_session(mine, their_id)
    assert response.status_code == 404
    assert not is_logged_out(theirs)
    assert not is_logged_out(mine)
    # Their session is not listed on my page either.
    assert their_id not in mine.get("/account/sessions").get_data(as_text=True)


def test_unknown_session_id_is_404(app, user):
    mine = log_in(app, user)
    assert _end_session(mine, "no-such-session").status_code == 404


# -- connected apps --------------------------------------------------------------------------------------


def _app_rows(page: Any, client_id: str) -> list[dict[str, Any]]:
    return [row for row in parsed(page).rows if any(f"/account/apps/{client_id}/revoke" in a for a in row["actions"])]


def test_connected_apps_lists_a_consented_client_with_what_it_receives(app, user, rp_client):
    browser = log_in(app, user)
    code_flow_tokens(browser, rp_client, user, scope="openid profile national_id")
    page = browser.get("/account/apps")
    assert page.status_code == 200
    [row] = _app_rows(page, rp_client.client_id)
    text = " ".join(row["text"])
    assert "Test Portal" in text
    assert "Your national code" in text
    assert "Your full name" in text
    # Phone was not asked for, so it is not listed.
    assert "Your mobile number" not in text


def test_connected_apps_of_another_user_are_not_listed(app, user, rp_client):
    stranger = other_user(app)
    theirs = log_in(app, stranger, "Browser C")
    code_flow_tokens(theirs, rp_client, stranger)
    mine = log_in(app, user)
    page = mine.get("/account/apps")
    assert _app_rows(page, rp_client.client_id) == []
    assert "Test Portal" not in text_of(page)
    token = csrf_token(mine, "/")
    assert post_raw(mine, f"/account/apps/{rp_client.client_id}/revoke", {"csrf_token": token}).status_code == 404


def test_revoking_an_app_kills_its_tokens_and_asks_consent_again(app, user, rp_client):
    browser = log_in(app, user)
    issued = code_flow_tokens(browser, rp_client, user)
    assert userinfo(browser.client, issued["access_token"]).status_code == 200

    token = csrf_token(browser, "/account/apps")
    response = post_raw(browser, f"/account/apps/{rp_client.client_id}/revoke", {"csrf_token": token})
    assert redirect_path(response) == "/account/apps"

    assert_refresh_refused(browser.client, rp_client, issued["refresh_token"])
    assert userinfo(browser.client, issued["access_token"]).status_code == 401
    assert _app_rows(browser.get("/account/apps"), rp_client.client_id) == []
    assert audit_events(app, user.id, "consent.revoked")

    # Still logged in, but the next authorization asks for consent again.
    assert not is_logged_out(browser)
    _, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge))
    assert page.status_code == 200, page.status_code
    assert find_form(page.get_data(as_text=True), action_contains="/consent")
    assert 'name="decision"' in page.get_data(as_text=True)


def test_revoking_one_app_leaves_the_others(app, user, rp_client):
    second = create_test_client(app, name="Second Portal")
    browser = log_in(app, user)
    first_tokens = code_flow_tokens(browser, rp_client, user)
    second_tokens = code_flow_tokens(browser, second, user)
    token = csrf_token(browser, "/account/apps")
    post_raw(browser, f"/account/apps/{rp_client.client_id}/revoke", {"csrf_token": token})
    assert_refresh_refused(browser.client, rp_client, first_tokens["refresh_token"])
    assert refresh_grant(browser.client, second, second_tokens["refresh_token"]).status_code == 200
    assert len(_app_rows(browser.get("/account/apps"), second.client_id)) == 1


# -- activity --------------------------------------------------------------------------------------------


def _jalali_date_forms_fa(moment: dt.datetime) -> set[str]:
    """The ways a Persian page may write the Jalali date of ``moment`` (Iran time), in Persian digits."""
    local = moment.astimezone(TEHRAN)
    j = jdatetime.date.fromgregorian(date=local.date())
    month = JALALI_MONTHS[j.month - 1]
    return {
        to_persian_digits(f"{j.day} ") + month + to_persian_digits(f" {j.year}"),
        to_persian_digits(f"{j.year}/{j.month:02d}/{j.day:02d}"),
        to_persian_digits(f"{j.year}/{j.month}/{j.day}"),
    }


def test_activity_in_english_lists_events_with_iso_times(app, user):
    browser = log_in(app, user)
    assert redirect_path(_change_password(browser, user.password, NEW_PASSWORD)) == "/"
    page = browser.get("/account/activity")
    assert page.status_code == 200
    texts = parsed(page).text
    assert "Logged in" in texts
    assert "Password changed" in texts
    text = " ".join(texts)
    for event in audit_events(app, user.id):
        local = event.at.astimezone(TEHRAN)
        assert local.strftime("%Y-%m-%d %H:%M") in text, (event.event, text)
    assert not re.search("[۰-۹]", text)


def test_activity_in_persian_shows_jalali_times_with_persian_digits(app, user):
    browser = log_in(app, user, language=None)
    assert redirect_path(_change_password(browser, user.password, NEW_PASSWORD)) == "/"
    page = browser.get("/account/activity")
    assert page.status_code == 200
    text = text_of(page)
    events = audit_events(app, user.id)
    assert {e.event for e in events} >= {"login.succeeded", "password.changed"}
    for event in events:
        local = event.at.astimezone(TEHRAN)
        assert any(form in text for form in _jalali_date_forms_fa(event.at)), (event.event, text)
        assert to_persian_digits(local.strftime("%H:%M")) in text, (event.event, text)
        assert local.strftime("%Y-%m-%d") not in text
    assert not re.search("[0-9]{4}", text), text  # no ASCII years or times


def test_activity_never_shows_another_users_events(app, user, rp_client):
    stranger = other_user(app)
    theirs = log_in(app, stranger, "Browser C")
    # The stranger: a failed login, a password change, an app allowed.
    failed = new_browser(app, "Browser D")
    failed.login(failed.get("/login"), UserInfo(stranger.id, stranger.national_code, "wrong password!"))
    assert redirect_path(_change_password(theirs, stranger.password, NEW_PASSWORD)) == "/"
    code_flow_tokens(theirs, rp_client, UserInfo(stranger.id, stranger.national_code, NEW_PASSWORD))
    assert audit_events(app, stranger.id, "login.failed")

    mine = log_in(app, user)
    texts = parsed(mine.get("/account/activity")).text
    assert texts.count("Logged in") == 1, texts
    assert "Password changed" not in texts
    assert not any(t.startswith("A login failed") for t in texts)
    assert "Test Portal" not in " ".join(texts)


#: ``audit.record("name", ...)`` and ``audit.event_row("name", ...)`` in the code.
RECORDED_EVENT = re.compile(r"\b(?:record|event_row)\(\s*\"([a-z_]+\.[a-z_.]+|[a-z_]+)\"")


def test_every_event_the_code_records_has_a_description():
    recorded = {
        name
        for path in (ROOT / "idp").rglob("*.py")
        for name in RECORDED_EVENT.findall(path.read_text(encoding="utf-8"))
    }
    assert {"support.message", "token.issued", "login.succeeded", "logout"} <= recorded, recorded
    assert recorded - set(AUDIT_EVENTS) == set(), "describe these in idp/audit_events.py"


def test_an_event_without_a_description_is_refused(app, user):
    with app.test_request_context(), pytest.raises(ValueError, match=r"no\.such_event"):
        audit.record("no.such_event", user_id=user.id)


def _send_support_message(browser: Browser) -> None:
    form = find_form(browser.get("/support").get_data(as_text=True), action_contains="/support")
    data = {**form.fields, "subject": "A question", "body": "How do I change my name?"}
    assert redirect_path(post_raw(browser, "/support", data)) == "/support"


@pytest.mark.parametrize(
    ("language", "expected"), [(EN, "You sent a message to support"), (None, "پیامی برای پشتیبانی فرستادید")]
)
def test_activity_describes_a_support_message_in_plain_words(app, user, language, expected):
    browser = log_in(app, user, language=language)
    _send_support_message(browser)
    page = browser.get("/account/activity")
    assert expected in parsed(page).text
    assert "support.message" not in page.get_data(as_text=True)


def test_activity_names_the_app_each_event_is_about(app, user, rp_client):
    browser = log_in(app, user)
    code_flow_tokens(browser, rp_client, user)
    text = text_of(browser.get("/account/activity"))
    assert "You allowed Test Portal to use your account" in text
    assert "Test Portal was given access to your account" in text
    persian = text_of(log_in(app, user, "Browser B", language=None).get("/account/activity"))
    assert "به Test Portal اجازهٔ استفاده از حساب خود را دادید" in persian
    assert "به Test Portal دسترسی به حساب شما داده شد" in persian

    token = csrf_token(browser, "/account/apps")
    post_raw(browser, f"/account/apps/{rp_client.client_id}/revoke", {"csrf_token": token})
    assert "You revoked the access of Test Portal" in text_of(browser.get("/account/activity"))


def test_activity_says_a_removed_app_once_the_app_is_gone(app, user, rp_client):
    browser = log_in(app, user)
    code_flow_tokens(browser, rp_client, user)
    with app.app_context():
        delete_client(get_client(rp_client.client_id, fresh=True))
        commit()
    page = browser.get("/account/activity")
    text = text_of(page)
    assert "You allowed a removed app to use your account" in text
    assert "A removed app was given access to your account" in text
    assert rp_client.client_id not in page.get_data(as_text=True)


def test_activity_escapes_the_app_name(app, user):
    rp = create_test_client(app, name="<script>alert(1)</script> & Co")
    browser = log_in(app, user)
    code_flow_tokens(browser, rp, user)
    html = browser.get("/account/activity").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert '<bdi class="app-name">&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</bdi>' in html


# -- CSRF ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/account/refresh", {}),
        ("/account/email", {"email": "ali@example.com"}),
        ("/account/email/verify", {"code": "123456"}),
        ("/account/address", {"postal_address": ADDRESS, "postal_code": "1345678910"}),
        ("/account/password", {"current_password": "x", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}),
        ("/account/two-factor", {"code": "123456"}),
        ("/account/two-factor/disable", {"password": "correct horse battery"}),
        ("/account/two-factor/recovery-codes", {}),
        ("/account/sessions/{session}/end", {}),
        ("/account/sessions/end-all", {}),
        ("/account/apps/{client}/revoke", {}),
        ("/support", {"name": "Ali", "contact": "09121234567", "subject": "Hi", "body": "Hello"}),
    ],
)
@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_posts_without_a_valid_csrf_token_are_refused(app, user, rp_client, path, data, token):
    mine = log_in(app, user, "Browser A")
    other = log_in(app, user, "Browser B")
    issued = code_flow_tokens(mine, rp_client, user)
    path = path.format(session=session_id_of(app, user.id, "Browser B"), client=rp_client.client_id)
    if token == "wrong":
        # A real token, but of another browser's session.
        data = {**data, "csrf_token": csrf_token(other)}
    response = post_raw(mine, path, data)
    assert response.status_code == 400, (path, response.status_code)
    # Nothing happened.
    assert not is_logged_out(mine) and not is_logged_out(other)
    assert refresh_grant(mine.client, rp_client, issued["refresh_token"]).status_code == 200
    stored = load_user(app, user.id)
    assert stored.email is None and stored.postal_code is None
    assert mail_outbox(app) == []
