"""Slowing down password guessing at /login without ever locking the owner out (idp/auth/throttle.py).

Per account (the national code typed, account or not) and per client address: beyond
login.delay_after_failures attempts each further attempt must wait (2, 4, 8... seconds, at most
login.max_delay); beyond login.captcha_after_failures attempts on the account, or
login.ip_captcha_after_failures failures from one address, a solved CAPTCHA is needed as well. Refused
attempts never check the password. The attempt counter is atomic, so parallel guesses get no more tries.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

import idp.auth.password_login as password_login
from idp import clock
from idp.extensions import db
from idp.store.models import AuditEvent, User

from .helpers import (
    REDIRECT_URI,
    Browser,
    UserInfo,
    captcha_answer,
    create_test_client,
    create_test_user,
    english_browser,
    field_error,
    find_form,
    last_sms_code,
    page_text,
    valid_national_code,
)
from .test_mobile_change import NEW_MOBILE, NEW_MOBILE_TYPED, give_second_mobile, mobile_of
from .test_step_up import enrol_totp, totp_code
from .test_step_up import password_login as log_in_with_password
from .test_step_up import start as start_authorization

WRONG = "The national code or the password is not correct."
UNKNOWN_NATIONAL_CODE = valid_national_code("987654321")
WAIT = re.compile(r"\bWait (\d+) seconds\b")


# -- helpers ----------------------------------------------------------------------------------------


def shows_captcha(response: Any) -> bool:
    return 'name="captcha"' in page_text(response)


def attempt(browser: Browser, page: Any, national_code: str, password: str, captcha: str | None = None) -> Any:
    """Post the login form on ``page``; ``captcha`` is typed only when given (and the form has the field)."""
    form = find_form(page_text(page), field_name="national_code")
    values = {**form.fields, "national_code": national_code, "password": password}
    if captcha is not None:
        values["captcha"] = captcha
    else:
        values.pop("captcha", None)
    return browser.post("/login", values)


def logged_in(response: Any) -> bool:
    return response.status_code == 200 and response.request.path == "/"


def wait_seconds(response: Any) -> int | None:
    match = WAIT.search(field_error(response, "password") or "")
    return int(match.group(1)) if match else None


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """Every password actually checked (verify_password called), in order."""
    seen: list[str] = []
    lock = threading.Lock()
    original = password_login.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        with lock:
            seen.append(password)
        return original(password_hash, password)

    monkeypatch.setattr(password_login, "verify_password", counting)
    return seen


def failed_logins(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "login.failed"))


# -- waiting ---------------------------------------------------------------------------------------------


def test_wrong_passwords_make_the_next_attempt_wait(app_with, checks):
    app = app_with(login={"captcha_after_failures": 50})
    settings = app.extensions["idp"].config.login
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.get("/login")
    other = english_browser(app, ip="10.9.8.7")  # loaded now: the first wait is only 2 seconds
    other_page = other.get("/login")
    for number in range(1, settings.delay_after_failures + 1):
        page = attempt(browser, page, user.national_code, "wrong password")
        assert page.status_code == 200 and page.request.path == "/login"
        assert field_error(page, "password") == WRONG, number
    # One more wrong one (it may be checked: it closes the gate), then the right password must wait.
    page = attempt(browser, page, user.national_code, "wrong password")
    assert field_error(page, "password") == WRONG or wait_seconds(page)
    checked = len(checks)
    page = attempt(browser, page, user.national_code, user.password)
    assert not logged_in(page)
    seconds = wait_seconds(page)
    assert seconds is not None and 1 <= seconds <= settings.max_delay, field_error(page, "password")
    assert len(checks) == checked  # refused without checking the password
    # The wait is the account's, whichever browser or address tries.
    refused = attempt(other, other_page, user.national_code, user.password)
    assert not logged_in(refused) and wait_seconds(refused)
    assert len(checks) == checked


@pytest.mark.slow
def test_right_password_works_once_the_wait_is_over(app_with, checks):
    app = app_with(login={"delay_after_failures": 1, "max_delay": 2, "captcha_after_failures": 50})
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.get("/login")
    for _ in range(2):
        page = attempt(browser, page, user.national_code, "wrong password")
    refused = attempt(browser, page, user.national_code, user.password)
    assert not logged_in(refused)
    assert wait_seconds(refused) in (1, 2)
    assert user.password not in checks
    time.sleep(2.1)
    done = attempt(browser, refused, user.national_code, user.password)
    assert logged_in(done), field_error(done, "password")


@pytest.mark.slow
def test_a_successful_login_clears_the_count(app_with):
    app = app_with(login={"delay_after_failures": 2, "max_delay": 2, "captcha_after_failures": 50})
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.get("/login")
    for _ in range(2):
        page = attempt(browser, page, user.national_code, "wrong password")
    time.sleep(2.1)  # the second failure closed the gate for 2 s
    assert logged_in(attempt(browser, page, user.national_code, user.password))
    other = english_browser(app)
    page = other.get("/login")
    for _ in range(2):
        page = attempt(other, page, user.national_code, "wrong password")
        assert field_error(page, "password") == WRONG  # counting starts again from zero


# -- CAPTCHA ---------------------------------------------------------------------------------------------


@pytest.fixture
def captcha_app(app_with) -> Flask:
    return app_with(captcha={"enabled": True}, login={"delay_after_failures": 50, "captcha_after_failures": 2})


def test_after_captcha_after_failures_the_form_shows_a_captcha(captcha_app, checks):
    app = captcha_app
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.get("/login")
    assert not shows_captcha(page)  # none at first
    page = attempt(browser, page, user.national_code, "wrong password")
    assert not shows_captcha(page)
    page = attempt(browser, page, user.national_code, "wrong password")
    assert shows_captcha(page)
    assert len(checks) == 2

    # Without the CAPTCHA, or with a wrong one, the right password is not even checked.
    no_captcha = attempt(browser, page, user.national_code, user.password)
    assert not logged_in(no_captcha) and shows_captcha(no_captcha)
    answer = captcha_answer(app, browser)
    wrong = str((int(answer) + 1) % 10 ** len(answer)).zfill(len(answer))
    wrong_captcha = attempt(browser, no_captcha, user.national_code, user.password, captcha=wrong)
    assert not logged_in(wrong_captcha) and shows_captcha(wrong_captcha)
    assert len(checks) == 2

    done = attempt(browser, wrong_captcha, user.national_code, user.password, captcha=captcha_answer(app, browser))
    assert logged_in(done), (field_error(done, "password"), field_error(done, "captcha"))


def test_a_fresh_browser_cannot_skip_the_captcha(captcha_app, checks):
    """The CAPTCHA is the account's requirement, not the browser's: dropping the cookie does not help."""
    app = captcha_app
    user = create_test_user(app)
    attacker = english_browser(app)
    page = attacker.get("/login")
    for _ in range(2):
        page = attempt(attacker, page, user.national_code, "wrong password")
    checked = len(checks)
    fresh = english_browser(app, ip="10.20.30.40")
    page = fresh.get("/login")
    assert not shows_captcha(page)
    refused = attempt(fresh, page, user.national_code, user.password)
    assert not logged_in(refused)
    assert shows_captcha(refused)  # now it is asked for
    assert len(checks) == checked
    done = attempt(fresh, refused, user.national_code, user.password, captcha=captcha_answer(app, fresh))
    assert logged_in(done), field_error(done, "password")


@pytest.mark.slow
def test_nothing_locks_the_owner_out(app_with):
    app = app_with(
        captcha={"enabled": True},
        login={"delay_after_failures": 1, "max_delay": 2, "captcha_after_failures": 3},
    )
    user = create_test_user(app)
    attacker = english_browser(app, ip="10.66.66.66")
    page = attacker.get("/login")
    for _ in range(12):  # hammering, with and without CAPTCHA answers
        captcha = captcha_answer(app, attacker) if shows_captcha(page) else None
        page = attempt(attacker, page, user.national_code, "guess", captcha=captcha)
        assert not logged_in(page)

    time.sleep(2.1)  # the longest wait
    owner = english_browser(app, ip="10.1.2.3")
    page = owner.get("/login")
    for _ in range(3):
        captcha = captcha_answer(app, owner) if shows_captcha(page) else None
        page = attempt(owner, page, user.national_code, user.password, captcha=captcha)
        if logged_in(page):
            break
    assert logged_in(page), (field_error(page, "password"), field_error(page, "captcha"))


def test_per_address_captcha_across_national_codes(app_with, checks):
    app = app_with(
        captcha={"enabled": True},
        login={"ip_captcha_after_failures": 3, "delay_after_failures": 50, "captcha_after_failures": 50},
    )
    user = create_test_user(app)
    sprayer = english_browser(app, ip="10.0.0.66")
    page = sprayer.get("/login")
    for first_nine in ("102030405", "556677889", "480123957"):
        page = attempt(sprayer, page, valid_national_code(first_nine), "Password1")
        assert field_error(page, "password") == WRONG
    assert shows_captcha(page)  # three failures from this address
    checked = len(checks)

    # Another national code from the same address, even the right password, needs the CAPTCHA first.
    same_address = english_browser(app, ip="10.0.0.66")
    refused = attempt(same_address, same_address.get("/login"), user.national_code, user.password)
    assert not logged_in(refused) and shows_captcha(refused)
    assert len(checks) == checked
    done = attempt(same_address, refused, user.national_code, user.password, captcha_answer(app, same_address))
    assert logged_in(done)

    # Elsewhere nobody is bothered.
    elsewhere = english_browser(app, ip="10.0.0.77")
    page = elsewhere.get("/login")
    assert not shows_captcha(page)
    assert logged_in(attempt(elsewhere, page, user.national_code, user.password))


# -- an unknown national code is not told apart ----------------------------------------------------------


def _observed(response: Any) -> tuple[Any, ...]:
    error = re.sub(r"\d+", "N", field_error(response, "password") or "")
    return response.status_code, response.request.path, error, shows_captcha(response)


@pytest.mark.parametrize(
    "login",
    [
        {"delay_after_failures": 2, "max_delay": 300, "captcha_after_failures": 50},
        {"delay_after_failures": 50, "captcha_after_failures": 3},
    ],
    ids=["waits", "captcha-limit"],
)
def test_unknown_national_code_gets_the_same_answers_as_a_wrong_password(app_with, login):
    app = app_with(login=login)
    user = create_test_user(app)
    sequences = []
    for national_code, ip in ((user.national_code, "10.0.1.1"), (UNKNOWN_NATIONAL_CODE, "10.0.1.2")):
        browser = english_browser(app, ip=ip)
        page = browser.get("/login")
        seen = []
        for _ in range(6):
            page = attempt(browser, page, national_code, "wrong password")
            seen.append(_observed(page))
        sequences.append(seen)
    assert sequences[0] == sequences[1]
    assert sequences[0][0][2] == WRONG


# -- parallel guesses (must show) ---------------------------------------------------------------------------


def _parallel(workers: int, post: Callable[[int], Any]) -> list[Any]:
    """Run ``post(i)`` in ``workers`` threads released together; returns the results."""
    results: list[Any] = [None] * workers
    barrier = threading.Barrier(workers)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = post(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _prepared_clients(app: Flask, count: int) -> list[tuple[Any, str]]:
    """Test clients that each loaded the login page: their own session cookie and CSRF token."""
    prepared = []
    for _ in range(count):
        client = app.test_client()
        page = client.get("/login")
        prepared.append(
            (client, find_form(page.get_data(as_text=True), field_name="national_code").fields["csrf_token"])
        )
    return prepared


@pytest.mark.parametrize(
    "login",
    [
        {},
        {"delay_after_failures": 1, "captcha_after_failures": 5},
        {"delay_after_failures": 5, "captcha_after_failures": 2},
    ],
    ids=["defaults", "delay-1", "captcha-2"],
)
def test_parallel_wrong_passwords_never_get_more_tries_than_the_limit(app_with, checks, login):
    app = app_with(login=login, captcha={"enabled": True})  # as deployed: CAPTCHA on
    settings = app.extensions["idp"].config.login
    user: UserInfo = create_test_user(app)
    workers = 20
    prepared = _prepared_clients(app, workers)

    def post(index: int) -> int:
        client, csrf_token = prepared[index]
        data = {"csrf_token": csrf_token, "national_code": user.national_code, "password": f"guess-{index}"}
        return client.post("/login", data=data).status_code

    statuses = _parallel(workers, post)
    assert all(status == 200 for status in statuses), statuses  # every one answered, none logged in
    # The attempts up to the delay threshold plus the one that claims the first gate; and with CAPTCHA on,
    # never more than captcha_after_failures (no attempt here solves one).
    allowed = min(settings.delay_after_failures + 1, settings.captcha_after_failures)
    assert 1 <= len(checks) <= allowed, (len(checks), allowed)
    assert failed_logins(app) == len(checks)


def test_parallel_wrong_passwords_over_real_http(app, live_server, user, checks):
    settings = app.extensions["idp"].config.login
    workers = 20
    sessions = []
    for _ in range(workers):
        session = requests.Session()
        page = session.get(live_server + "/login", timeout=10)
        sessions.append((session, find_form(page.text, field_name="national_code").fields["csrf_token"]))

    def post(index: int) -> int:
        session, csrf_token = sessions[index]
        data = {"csrf_token": csrf_token, "national_code": user.national_code, "password": f"guess-{index}"}
        return session.post(live_server + "/login", data=data, allow_redirects=False, timeout=30).status_code

    statuses = _parallel(workers, post)
    assert all(status == 200 for status in statuses), statuses
    allowed = settings.delay_after_failures + 1  # the `app` fixture has CAPTCHA off
    assert 1 <= len(checks) <= allowed, (len(checks), allowed)
    assert failed_logins(app) == len(checks)


def test_many_failures_from_one_address_space_its_attempts(app_with):
    # Many people share an address behind a mobile operator's NAT, so this comes late (default 50) and only
    # spaces attempts; here the threshold is 3 to keep the test short.
    settings = {
        "ip_delay_after_failures": 3,
        "max_delay": 2,
        "delay_after_failures": 100,
        "captcha_after_failures": 100,
        "ip_captcha_after_failures": 100,
    }
    app = app_with(login=settings)
    browser = english_browser(app)
    page = browser.get("/login")
    for first_nine in ("111111112", "222222221", "333333331"):
        page = attempt(browser, page, valid_national_code(first_nine), "wrong password")
        assert field_error(page, "password") == WRONG
    page = attempt(browser, page, valid_national_code("444444441"), "wrong password")
    assert field_error(page, "password") == WRONG  # this one claimed the address's gate ...
    refused = attempt(browser, page, valid_national_code("555555551"), "wrong password")
    assert wait_seconds(refused) in (1, 2)  # ... so the next, for yet another account, waits
    time.sleep(2.1)
    page = attempt(browser, refused, valid_national_code("666666661"), "wrong password")
    assert field_error(page, "password") == WRONG


# -- every password check asks for the CAPTCHA that /login asks for (issue 19, item 5) --------------------------


def post_form(browser: Browser, page: Any, action: str, values: dict[str, str], captcha: str | None) -> Any:
    """Post the form of ``page`` whose action contains ``action``, with the CAPTCHA answer or without the field."""
    form = find_form(page_text(page), action_contains=action)
    data = {**form.fields, **values}
    data.pop("captcha", None)
    if captcha is not None:
        data["captcha"] = captcha
    return browser.post(urljoin(page.request.path, form.action), data)


def make_login_ask_for_a_captcha(app: Flask, user: UserInfo) -> None:
    """An attacker's wrong passwords at /login, until the login page asks for a CAPTCHA for the account."""
    attacker = english_browser(app, ip="10.66.66.66")
    page = attacker.get("/login")
    for _ in range(app.extensions["idp"].config.login.captcha_after_failures + 1):
        if shows_captcha(page):
            return
        page = attempt(attacker, page, user.national_code, "a wrong guess")
    assert shows_captcha(page)


def reached_the_relying_party(response: Any) -> bool:
    return (response.status_code == 302 and response.location.startswith(REDIRECT_URI)) or (
        response.status_code == 200 and 'name="decision"' in page_text(response)
    )


def _mobile_change(app: Flask, user: UserInfo, rp: Any) -> tuple[Browser, Any, str, dict[str, str], Callable]:
    give_second_mobile(app, user)
    owner = english_browser(app)
    page = owner.get("/mobile/change")
    values = {"national_code": user.national_code, "mobile": NEW_MOBILE_TYPED, "captcha": captcha_answer(app, owner)}
    page = owner.submit(page, values, action_contains="/mobile/change")
    assert page.request.path == "/mobile/change/confirm"
    code = last_sms_code(app, NEW_MOBILE, "change_mobile")
    return (
        owner,
        page,
        "/mobile/change/confirm",
        {"code": code, "password": user.password},
        (lambda response: mobile_of(app, user) == NEW_MOBILE),
    )


def _step_up_password(app: Flask, user: UserInfo, rp: Any) -> tuple[Browser, Any, str, dict[str, str], Callable]:
    owner = english_browser(app)
    page = owner.get("/login/sms")
    values = {"national_code": user.national_code, "captcha": captcha_answer(app, owner)}
    page = owner.submit(page, values, action_contains="/login/sms")
    page = owner.submit(page, {"code": last_sms_code(app, user.mobile, "login")}, field_name="code")
    assert page.request.path == "/", field_error(page, "code")
    page, _params, _verifier = start_authorization(owner, rp, acr_values="urn:hoviyat:loa:2")
    return owner, page, "/login/second-factor", {"password": user.password}, reached_the_relying_party


def _step_up_app(app: Flask, user: UserInfo, rp: Any) -> tuple[Browser, Any, str, dict[str, str], Callable]:
    owner = english_browser(app)
    log_in_with_password(owner, user)
    secret, _codes = enrol_totp(owner, user)
    clock.advance(30)
    page, _params, _verifier = start_authorization(owner, rp, acr_values="urn:hoviyat:loa:2")
    return owner, page, "/login/second-factor", {"code": totp_code(secret)}, reached_the_relying_party


def _account_password(app: Flask, user: UserInfo, rp: Any) -> tuple[Browser, Any, str, dict[str, str], Callable]:
    owner = english_browser(app)
    log_in_with_password(owner, user)
    new = "another good passphrase 9"
    values = {"current_password": user.password, "password": new, "password_confirm": new}
    return (
        owner,
        owner.get("/account/password"),
        "/account/password",
        values,
        (lambda response: response.request.path == "/"),
    )


def _totp_disable(app: Flask, user: UserInfo, rp: Any) -> tuple[Browser, Any, str, dict[str, str], Callable]:
    owner = english_browser(app)
    log_in_with_password(owner, user)
    enrol_totp(owner)

    def turned_off(response: Any) -> bool:
        with app.app_context():
            return db.session.get(User, user.id).totp_enabled_at is None

    return (
        owner,
        owner.get("/account/two-factor"),
        "/account/two-factor/disable",
        {"password": user.password},
        turned_off,
    )


SECRET_CHECKS = {
    "mobile-change": _mobile_change,
    "step-up-password": _step_up_password,
    "step-up-app": _step_up_app,
    "account-password": _account_password,
    "authenticator-off": _totp_disable,
}


@pytest.mark.parametrize("where", list(SECRET_CHECKS))
def test_every_password_check_asks_for_the_captcha_login_asks_for(captcha_app, where):
    """The review's attack: once /login asks a CAPTCHA for the account, step 2 of the mobile change still
    confirmed a correct password without one. Every page that checks a password (or an app code) of the account
    now asks for it and checks it."""
    app = captcha_app
    user = create_test_user(app)
    rp = create_test_client(app)
    owner, page, action, values, done = SECRET_CHECKS[where](app, user, rp)
    make_login_ask_for_a_captcha(app, user)

    refused = post_form(owner, page, action, values, captcha=None)
    assert not done(refused)
    assert "captcha" in find_form(page_text(refused), action_contains=action).fields  # the page now asks for it
    accepted = post_form(owner, refused, action, values, captcha=captcha_answer(app, owner))
    assert done(accepted), (accepted.status_code, accepted.request.path, page_text(accepted)[:1500])
