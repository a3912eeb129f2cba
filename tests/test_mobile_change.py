"""Changing the account's mobile number as EMTA does it (/mobile/change, /mobile/change/confirm).

Step one: national code, CAPTCHA and the new number, which the identity registry must confirm belongs to
that national code; a code goes to the NEW number (purpose change_mobile). Step two: that code and the
account's current password. Then the account has the new number, the OLD number gets a notice (no code),
every other session ends and every refresh token is revoked, and mobile.changed is audited.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.store.models import AuditEvent, User

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    add_registry_person,
    browser_for,
    captcha_answer,
    create_test_user,
    english_browser,
    exchange_code,
    field_error,
    find_form,
    get_code,
    is_logged_in,
    last_sms_code,
    page_text,
    registry_path,
    sms_outbox,
    valid_national_code,
)

OLD_MOBILE = "+989121234567"  # the default test user's
NEW_MOBILE = "+989351234599"
NEW_MOBILE_TYPED = "09351234599"
STRANGERS_MOBILE = "+989131234567"  # a demo person's, not the user's
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


# -- helpers ----------------------------------------------------------------------------------------


def give_second_mobile(app: Flask, user: UserInfo, mobile: str = NEW_MOBILE) -> None:
    add_registry_person(app, user.national_code, "1990-03-21", [user.mobile, mobile], "علی", "رضایی")


def start(browser: Browser, national_code: str, mobile: str, **extra: str) -> Any:
    page = browser.get("/mobile/change")
    assert page.status_code == 200
    values = {"national_code": national_code, "mobile": mobile, **extra}
    return browser.submit(page, values, action_contains="/mobile/change")


def confirm(browser: Browser, page: Any, code: str, password: str) -> Any:
    return browser.submit(page, {"code": code, "password": password}, action_contains="/mobile/change/confirm")


def mobile_of(app: Flask, user: UserInfo) -> str:
    with app.app_context():
        return db.session.scalar(select(User.mobile).where(User.id == user.id))


def audit_events(app: Flask, event: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def tokens_in(browser: Browser, rp: ClientInfo, user: UserInfo) -> dict[str, Any]:
    code, verifier, _ = get_code(browser, rp, user, scope="openid phone")
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def userinfo(browser: Browser, access_token: str) -> Any:
    return browser.client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def refresh(browser: Browser, rp: ClientInfo, refresh_token: str) -> Any:
    return browser.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(rp.client_id, rp.client_secret),
    )


def sms_to(app: Flask, mobile: str) -> list[dict[str, Any]]:
    return [m for m in sms_outbox(app) if m["to"] == mobile]


# -- the change -----------------------------------------------------------------------------------------


def test_mobile_change_moves_the_account_to_the_new_number(app, user, rp_client):
    give_second_mobile(app, user)
    elsewhere = english_browser(app)
    old_tokens = tokens_in(elsewhere, rp_client, user)
    assert userinfo(elsewhere, old_tokens["access_token"]).get_json()["phone_number"] == OLD_MOBILE

    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    assert page.status_code == 200 and page.request.path == "/mobile/change/confirm"
    texted = sms_to(app, NEW_MOBILE)
    assert [(m["purpose"], bool(m["code"])) for m in texted] == [("change_mobile", True)]
    assert sms_to(app, OLD_MOBILE) == []  # nothing to the old number yet

    done = confirm(browser, page, texted[0]["code"], user.password)
    assert done.status_code == 200 and done.request.path == "/", (
        field_error(done, "code"),
        field_error(done, "password"),
    )
    assert is_logged_in(browser)
    assert mobile_of(app, user) == NEW_MOBILE

    # The relying party now reads the new number.
    new_tokens = tokens_in(browser, rp_client, user)
    assert userinfo(browser, new_tokens["access_token"]).get_json()["phone_number"] == NEW_MOBILE

    # The old number got a notice, without a code.
    notices = sms_to(app, OLD_MOBILE)
    assert len(notices) == 1
    assert notices[0]["purpose"] == "change_mobile"
    assert not notices[0].get("code")
    assert texted[0]["code"] not in notices[0]["text"]

    # Every other session ended, its refresh token and access token with it.
    assert not is_logged_in(elsewhere)
    refused = refresh(elsewhere, rp_client, old_tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert userinfo(elsewhere, old_tokens["access_token"]).status_code == 401

    events = audit_events(app, "mobile.changed")
    assert [e.user_id for e in events] == [user.id]
    assert NEW_MOBILE not in str(events[0].detail) and texted[0]["code"] not in str(events[0].detail)


def test_persian_digits_in_every_field(app, user):
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code.translate(PERSIAN), NEW_MOBILE_TYPED.translate(PERSIAN))
    assert page.request.path == "/mobile/change/confirm", field_error(page, "mobile")
    code = last_sms_code(app, NEW_MOBILE, "change_mobile")
    done = confirm(browser, page, code.translate(PERSIAN), user.password)
    assert done.request.path == "/", field_error(done, "code")
    assert mobile_of(app, user) == NEW_MOBILE


def test_sms_login_codes_go_to_the_new_number_after_the_change(app, user):
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    confirm(browser, page, last_sms_code(app, NEW_MOBILE, "change_mobile"), user.password)
    other = english_browser(app)
    page = other.get("/login/sms")
    other.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    assert [m["purpose"] for m in sms_to(app, NEW_MOBILE)] == ["change_mobile", "login"]
    assert all(m["purpose"] != "login" for m in sms_to(app, OLD_MOBILE))


# -- refused ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mobile",
    [STRANGERS_MOBILE, "09131234567", "+989001112233"],
    ids=["anothers-number", "anothers-number-domestic", "unregistered-number"],
)
def test_new_mobile_not_in_the_users_name_gets_no_code_and_changes_nothing(app, user, mobile):
    browser = english_browser(app)
    page = start(browser, user.national_code, mobile)
    assert page.status_code == 200 and page.request.path == "/mobile/change/confirm"  # the same answer as an owner's
    assert sms_outbox(app) == []
    for code in ("000000", "123456"):
        page = confirm(browser, page, code, user.password)
        assert field_error(page, "code") and page.request.path == "/mobile/change/confirm"
    assert mobile_of(app, user) == OLD_MOBILE
    assert not is_logged_in(browser)


@pytest.mark.parametrize(
    "values", [{"mobile": "0912"}, {"national_code": "0012345678"}], ids=["bad-mobile", "bad-code"]
)
def test_malformed_fields_are_refused(app, user, values):
    browser = english_browser(app)
    page = start(browser, values.get("national_code", user.national_code), values.get("mobile", NEW_MOBILE_TYPED))
    assert page.request.path == "/mobile/change"
    assert field_error(page, next(iter(values)))
    assert sms_outbox(app) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("how", ["http-refused", "file-broken"])
def test_registry_down_says_try_again_later(app_with, how):
    if how == "http-refused":
        app = app_with(registry={"backend": "http", "url": f"http://127.0.0.1:{_closed_port()}", "retries": 0})
    else:
        app = app_with()
        registry_path(app).write_text("{not json", encoding="utf-8")
    user = create_test_user(app)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    assert page.status_code == 200 and page.request.path == "/mobile/change"
    message = " ".join(filter(None, [field_error(page, "mobile"), field_error(page, "national_code")]))
    assert re.search(r"try again", message, re.I), page_text(page)[:3000]
    assert sms_outbox(app) == []
    assert mobile_of(app, user) == OLD_MOBILE


def test_wrong_password_leaves_the_number_and_the_code_usable(app, user):
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    code = last_sms_code(app, NEW_MOBILE, "change_mobile")
    failed = confirm(browser, page, code, "not the password")
    assert failed.status_code == 200 and failed.request.path == "/mobile/change/confirm"
    assert field_error(failed, "password")
    assert mobile_of(app, user) == OLD_MOBILE
    assert audit_events(app, "mobile.changed") == []
    assert sms_to(app, OLD_MOBILE) == []
    assert not is_logged_in(browser)
    assert [e.user_id for e in audit_events(app, "login.failed")] == [user.id]
    done = confirm(browser, failed, code, user.password)
    assert done.request.path == "/" and mobile_of(app, user) == NEW_MOBILE


def test_wrong_passwords_at_mobile_change_count_in_the_login_throttle(app_with):
    app = app_with(login={"delay_after_failures": 1, "max_delay": 60, "captcha_after_failures": 50})
    user = create_test_user(app)
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    for _ in range(2):  # within delay_after_failures, then the one that closes the gate
        page = confirm(browser, page, last_sms_code(app, NEW_MOBILE, "change_mobile"), "not the password")
        assert field_error(page, "password")
    # The login page now makes the owner wait, even with the right password.
    other = english_browser(app)
    login = other.submit(
        other.get("/login"), {"national_code": user.national_code, "password": user.password}, field_name="password"
    )
    assert login.request.path == "/login"
    assert re.search(r"Wait \d+ seconds", field_error(login, "password") or ""), field_error(login, "password")
    assert mobile_of(app, user) == OLD_MOBILE


def test_wrong_code_leaves_the_number(app, user):
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    right = last_sms_code(app, NEW_MOBILE, "change_mobile")
    for wrong in (f"{(int(right) + 1) % 1_000_000:06d}", "abc"):
        page = confirm(browser, page, wrong, user.password)
        assert page.status_code == 200 and page.request.path == "/mobile/change/confirm"
        assert field_error(page, "code")
    assert mobile_of(app, user) == OLD_MOBILE
    assert audit_events(app, "mobile.changed") == []
    assert sms_to(app, OLD_MOBILE) == []
    assert not is_logged_in(browser)


def test_a_code_sent_to_the_old_number_does_not_confirm_the_new_one(app, user):
    give_second_mobile(app, user)
    browser = english_browser(app)
    page = start(browser, user.national_code, NEW_MOBILE_TYPED)
    new_code = last_sms_code(app, NEW_MOBILE, "change_mobile")
    # A login code to the old number (which whoever holds the old SIM could read).
    other = english_browser(app)
    other.submit(other.get("/login/sms"), {"national_code": user.national_code}, action_contains="/login/sms")
    old_code = last_sms_code(app, OLD_MOBILE, "login")
    if old_code == new_code:
        pytest.fail("the two codes are equal (one in a million); run again")
    failed = confirm(browser, page, old_code, user.password)
    assert field_error(failed, "code")
    assert mobile_of(app, user) == OLD_MOBILE


def test_confirm_page_without_step_one_goes_back(app):
    response = english_browser(app).client.get("/mobile/change/confirm")
    assert response.status_code in (302, 303)
    assert response.location.split("?")[0].endswith("/mobile/change")


# -- CAPTCHA ------------------------------------------------------------------------------------------------


@pytest.fixture
def captcha_app(app_with) -> tuple[Flask, UserInfo]:
    app = app_with(captcha={"enabled": True})
    user = create_test_user(app)
    give_second_mobile(app, user)
    return app, user


@pytest.mark.parametrize("captcha", [None, "", "wrong"], ids=["missing", "empty", "wrong"])
def test_captcha_is_required_when_on(captcha_app, captcha):
    app, user = captcha_app
    browser = english_browser(app)
    page = browser.get("/mobile/change")
    form = find_form(page_text(page), action_contains="/mobile/change")
    assert "captcha" in form.fields
    values = {**form.fields, "national_code": user.national_code, "mobile": NEW_MOBILE_TYPED}
    if captcha is None:
        del values["captcha"]
    elif captcha == "wrong":
        right = captcha_answer(app, browser)
        values["captcha"] = str((int(right) + 1) % 10 ** len(right)).zfill(len(right))
    else:
        values["captcha"] = captcha
    page = browser.post("/mobile/change", values)
    assert page.status_code == 200 and page.request.path == "/mobile/change"
    assert field_error(page, "captcha")
    assert 'name="captcha"' in page_text(page)  # a new challenge is shown
    assert sms_outbox(app) == []
    assert mobile_of(app, user) == OLD_MOBILE


def test_captcha_solved_lets_the_change_go_on(captcha_app):
    app, user = captcha_app
    browser = english_browser(app)
    page = browser.get("/mobile/change")
    values = {"national_code": user.national_code, "mobile": NEW_MOBILE_TYPED, "captcha": captcha_answer(app, browser)}
    page = browser.submit(page, values, action_contains="/mobile/change")
    assert page.request.path == "/mobile/change/confirm", field_error(page, "captcha")
    done = confirm(browser, page, last_sms_code(app, NEW_MOBILE, "change_mobile"), user.password)
    assert done.request.path == "/"
    assert mobile_of(app, user) == NEW_MOBILE


def test_without_captcha_setting_the_form_has_no_captcha(app, user):
    assert 'name="captcha"' not in page_text(english_browser(app).get("/mobile/change"))


def test_failed_logins_by_someone_else_do_not_keep_the_owner_from_changing_the_number(app_with):
    """An attacker's wrong passwords put the account behind a CAPTCHA; the owner, solving whatever CAPTCHA
    the pages show, can still change the number (nothing locks the owner out)."""
    app = app_with(captcha={"enabled": True}, login={"delay_after_failures": 50, "captcha_after_failures": 2})
    user = create_test_user(app)
    give_second_mobile(app, user)
    attacker = english_browser(app)
    page = attacker.get("/login")
    for _ in range(3):
        form = find_form(page_text(page), field_name="national_code")
        values = {**form.fields, "national_code": user.national_code, "password": "a guess"}
        if "captcha" in values:
            values["captcha"] = captcha_answer(app, attacker)
        page = attacker.post("/login", values)

    owner = english_browser(app)
    page = owner.get("/mobile/change")
    values = {"national_code": user.national_code, "mobile": NEW_MOBILE_TYPED, "captcha": captcha_answer(app, owner)}
    page = owner.submit(page, values, action_contains="/mobile/change")
    assert page.request.path == "/mobile/change/confirm"
    code = last_sms_code(app, NEW_MOBILE, "change_mobile")
    for _ in range(2):
        values = {"code": code, "password": user.password}
        if 'name="captcha"' in page_text(page):
            values["captcha"] = captcha_answer(app, owner)
        page = owner.submit(page, values, action_contains="/mobile/change/confirm")
        if page.request.path == "/":
            break
    assert page.request.path == "/", field_error(page, "password")
    assert mobile_of(app, user) == NEW_MOBILE


# -- no registry oracle (issue 19, item 4) -------------------------------------------------------------------


def answer_of(page: Any) -> tuple[int, str, str]:
    """What step one answered, without what differs by the number typed (its digits) or by request (CSRF)."""
    body = re.sub(r'name="csrf_token"[^>]*value="[^"]*"', 'name="csrf_token"', page_text(page))
    return page.status_code, page.request.path, re.sub(r"[0-9\u06f0-\u06f9]", "#", body)


def test_step_one_answers_alike_whether_or_not_the_number_is_the_national_codes(app, user):
    """The review's oracle: "not registered to this national code" against a redirect told anyone, for a CAPTCHA,
    whether a number belongs to a national code."""
    give_second_mobile(app, user)
    owned = start(english_browser(app), user.national_code, NEW_MOBILE_TYPED)
    not_owned = start(english_browser(app), user.national_code, "09131234567")
    assert answer_of(owned) == answer_of(not_owned)
    assert owned.request.path == "/mobile/change/confirm"
    assert [m["to"] for m in sms_outbox(app)] == [NEW_MOBILE]


def test_registry_people_without_an_account_get_no_text(app, user):
    person = valid_national_code("004455667")
    add_registry_person(app, person, "1985-06-01", ["+989351230000"])
    with_account = start(english_browser(app), user.national_code, "09131234567")
    without_account = start(english_browser(app), person, "09351230000")
    assert answer_of(with_account) == answer_of(without_account)
    assert sms_outbox(app) == []


@pytest.mark.parametrize("limit", ["ip", "national_code", "mobile"])
def test_step_one_is_limited_per_address_national_code_and_mobile(app_with, limit):
    """Each limit holds on its own: the requests change the other two of address, national code and number."""
    app = app_with(
        limits={f"mobile_change_per_{name}": "3 per hour" if name == limit else "100 per hour" for name in LIMITED}
    )
    answers = []
    for n in range(4):
        browser = browser_for(app, language="en", ip="198.51.100.7" if limit == "ip" else f"198.51.100.{n + 10}")
        national_code = valid_national_code("001000001" if limit == "national_code" else f"00{n + 1}000001")
        mobile = "09351230001" if limit == "mobile" else f"0935123000{n + 2}"
        page = browser.get("/mobile/change")
        form = find_form(page_text(page), action_contains="/mobile/change")
        values = {**form.fields, "national_code": national_code, "mobile": mobile}
        answers.append(browser.client.post("/mobile/change", data=values).status_code)
    assert 429 not in answers[:3] and answers[3] == 429, answers  # (one number: "sent a moment ago" before)


LIMITED = ("ip", "national_code", "mobile")


def test_step_one_counts_an_ipv6_network_as_one_address(app_with):
    app = app_with(limits={"mobile_change_per_ip": "2 per hour"})
    answers = []
    for n in range(3):
        browser = browser_for(app, language="en", ip=f"2001:db8:1:2::{n + 1}")
        page = browser.get("/mobile/change")
        form = find_form(page_text(page), action_contains="/mobile/change")
        values = {**form.fields, "national_code": valid_national_code(f"00{n + 1}000001"), "mobile": f"0935123000{n}"}
        answers.append(browser.client.post("/mobile/change", data=values).status_code)
    assert answers == [303, 303, 429]
