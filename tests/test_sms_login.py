"""Login with a one-time code by SMS (/login/sms, /login/sms/verify, /login/sms/resend).

The code goes to the account's registered mobile with purpose "login"; it lasts 2 minutes, allows 5 tries,
is single-use and bound to its purpose. Step one answers alike whether or not the national code has an
account, and step two fails alike. The ID token says amr ["sms"] and acr loa:1 (one factor).
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    authorization_params,
    captcha_answer,
    create_test_user,
    english_browser,
    exchange_code,
    field_error,
    find_form,
    is_logged_in,
    last_sms_code,
    page_text,
    parse_page,
    pkce_pair,
    query_of,
    sms_outbox,
    valid_national_code,
)

LOA1 = "urn:hoviyat:loa:1"
UNKNOWN_NATIONAL_CODE = valid_national_code("987654321")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
WRONG_CODE = "The code is not correct or has expired."


# -- helpers ----------------------------------------------------------------------------------------


def flashes(response: Any) -> list[str]:
    return [
        html.unescape(m).strip() for m in re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', page_text(response), re.S)
    ]


def without_seconds(text: str) -> str:
    """A count of seconds to wait may tick between two requests; the wording is what must not differ."""
    return re.sub(r"\d+ seconds", "N seconds", text)


def visible_page(response: Any) -> str:
    """The page without what differs from request to request (CSRF token, pending request id)."""
    body = page_text(response)
    body = re.sub(r'name="csrf_token"[^>]*value="[^"]*"', 'name="csrf_token"', body)
    body = re.sub(r'value="[^"]*"( *)(?=[^>]*name="tx")', "", body)
    body = re.sub(r'name="tx"[^>]*>', 'name="tx">', body)
    return re.sub(r"tx=[A-Za-z0-9_\-]+", "tx=", body)


def outbox_for(app: Flask, mobile: str, purpose: str) -> list[dict[str, Any]]:
    return [m for m in sms_outbox(app) if m["to"] == mobile and m["purpose"] == purpose]


def start_sms_login(browser: Browser, national_code: str, tx: str | None = None) -> Any:
    """Open /login/sms and send the national code; returns the page after the redirect (the code form)."""
    page = browser.get("/login/sms" + (f"?tx={tx}" if tx else ""))
    assert page.status_code == 200
    return browser.submit(page, {"national_code": national_code}, action_contains="/login/sms")


def enter_code(browser: Browser, page: Any, code: str) -> Any:
    return browser.submit(page, {"code": code}, action_contains="/login/sms/verify")


def decode(client: Any, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def assert_code_page(page: Any) -> None:
    assert page.status_code == 200, page.status_code
    assert "/login/sms/verify" in page.request.path
    form = find_form(page_text(page), action_contains="/login/sms/verify")
    assert "code" in form.fields and "password" not in form.fields


# -- the whole flow from a relying party ---------------------------------------------------------------


def test_sms_login_from_the_login_page_returns_to_the_relying_party(app, issuer, user, rp_client):
    browser = english_browser(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, scope="openid profile phone")
    login_page = browser.authorize(params)
    assert login_page.status_code == 200
    tx = query_of(login_page.request.url).get("tx")
    link = parse_page(page_text(login_page)).links["link-otp-login"]
    assert tx and query_of(link).get("tx") == tx  # the link keeps the pending authorization request

    page = browser.get(link)
    assert page.status_code == 200
    assert find_form(page_text(page), action_contains="/login/sms").fields.get("tx") == tx
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    assert_code_page(page)
    texted = outbox_for(app, user.mobile, "login")
    assert len(texted) == 1 and texted[0]["code"] in texted[0]["text"]
    assert len(sms_outbox(app)) == 1  # nothing to any other number

    page = enter_code(browser, page, texted[0]["code"])
    if page.status_code == 200 and b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302, page_text(page)[:1000]
    assert page.location.startswith(rp_client.redirect_uri)
    query = query_of(page.location)
    assert query["state"] == params["state"] and query["iss"] == issuer

    response = exchange_code(browser.client, rp_client, query["code"], verifier)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()
    claims = decode(browser.client, token["id_token"])
    assert claims["amr"] == ["sms"]
    assert claims["acr"] == LOA1
    assert claims["nonce"] == params["nonce"]
    assert claims["auth_time"] <= clock.timestamp()
    info = browser.client.get("/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.get_json()["phone_number"] == user.mobile


def test_sms_login_without_a_relying_party_lands_on_the_account(app, user):
    browser = english_browser(app)
    page = start_sms_login(browser, user.national_code)
    done = enter_code(browser, page, last_sms_code(app, user.mobile, "login"))
    assert done.status_code == 200 and done.request.path == "/"
    assert is_logged_in(browser)


def test_sms_login_rotates_the_session_cookie(app, user):
    browser = english_browser(app)
    page = start_sms_login(browser, user.national_code)
    before = browser.client.get_cookie("hoviyat_session").value
    enter_code(browser, page, last_sms_code(app, user.mobile, "login"))
    after = browser.client.get_cookie("hoviyat_session")
    assert after is not None and after.value != before


def test_persian_digits_in_national_code_and_code(app, user):
    browser = english_browser(app)
    page = start_sms_login(browser, user.national_code.translate(PERSIAN))
    assert_code_page(page)
    code = last_sms_code(app, user.mobile, "login")
    done = enter_code(browser, page, code.translate(PERSIAN))
    assert done.request.path == "/", field_error(done, "code")
    assert is_logged_in(browser)


# -- telling nobody who has an account --------------------------------------------------------------


def test_unknown_national_code_gets_the_same_page_and_no_sms(app, user):
    known = start_sms_login(english_browser(app), user.national_code)
    sent_before = len(sms_outbox(app))
    unknown_browser = english_browser(app)
    unknown = start_sms_login(unknown_browser, UNKNOWN_NATIONAL_CODE)
    assert unknown.status_code == known.status_code == 200
    assert unknown.request.path == known.request.path == "/login/sms/verify"
    assert visible_page(unknown) == visible_page(known)
    assert len(sms_outbox(app)) == sent_before  # nothing was texted for the unknown code

    # Any code fails, with the same message a wrong code gets for a real account.
    for guess in ("000000", "123456", last_sms_code(app, user.mobile, "login")):
        failed = enter_code(unknown_browser, unknown, guess)
        assert failed.status_code == 200
        assert field_error(failed, "code") == WRONG_CODE
    assert not is_logged_in(unknown_browser)


def test_unknown_and_known_national_codes_answer_alike_when_asked_twice(app, user):
    """Asking again at once must not reveal that a code was texted (only real accounts get one)."""
    answers = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        start_sms_login(browser, national_code)
        again = start_sms_login(browser, national_code)
        typed_back = visible_page(again).replace(national_code, "<national code>")  # the form echoes it
        answers.append((again.status_code, again.request.path, without_seconds(typed_back)))
    assert answers[0] == answers[1]


def test_unknown_national_code_resend_answers_like_a_known_one(app, user):
    answers = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        page = start_sms_login(browser, national_code)
        resent = browser.submit(page, {}, action_contains="/login/sms/resend")
        answers.append((resent.status_code, resent.request.path, [without_seconds(f) for f in flashes(resent)]))
    assert answers[0] == answers[1], answers


# -- codes that must not work -------------------------------------------------------------------------


@pytest.fixture
def at_code_page(app, user) -> tuple[Browser, Any]:
    browser = english_browser(app)
    return browser, start_sms_login(browser, user.national_code)


def assert_refused(browser: Browser, response: Any) -> None:
    assert response.status_code == 200
    assert "/login/sms/verify" in response.request.path
    assert field_error(response, "code") == WRONG_CODE
    assert not is_logged_in(browser)


@pytest.mark.parametrize(
    "make_wrong",
    [
        pytest.param(lambda right: f"{(int(right) + 1) % 1_000_000:06d}", id="off-by-one"),
        pytest.param(lambda right: right[:5], id="too-short"),
        pytest.param(lambda right: right + "0", id="too-long"),
        pytest.param(lambda right: "abcdef", id="letters"),
        pytest.param(lambda right: " ", id="blank"),
    ],
)
def test_wrong_code_fails(app, user, at_code_page, make_wrong):
    browser, page = at_code_page
    right = last_sms_code(app, user.mobile, "login")
    response = enter_code(browser, page, make_wrong(right))
    assert response.status_code == 200 and "/login/sms/verify" in response.request.path
    assert field_error(response, "code")
    assert not is_logged_in(browser)


def test_expired_code_fails(app, user, at_code_page):
    browser, page = at_code_page
    code = last_sms_code(app, user.mobile, "login")
    clock.advance(121)
    assert_refused(browser, enter_code(browser, page, code))


def test_code_of_another_purpose_fails(app, issuer, user, at_code_page):
    browser, _page = at_code_page
    login_code = last_sms_code(app, user.mobile, "login")
    # A password-recovery code texted to the same mobile, in the same browser.
    forgot = browser.get("/password/forgot")
    browser.submit(forgot, {"national_code": user.national_code}, action_contains="/password/forgot")
    reset_code = last_sms_code(app, user.mobile, "reset")
    assert reset_code != login_code
    assert_refused(browser, enter_code(browser, browser.get("/login/sms/verify"), reset_code))
    # The login code itself still works afterwards: the wrong one spent only one try.
    done = enter_code(browser, browser.get("/login/sms/verify"), login_code)
    assert done.request.path == "/" and is_logged_in(browser)


@pytest.mark.parametrize(("wrong_tries", "works"), [(4, True), (5, False)], ids=["fifth-try", "sixth-try"])
def test_five_tries_per_code(app, user, at_code_page, wrong_tries, works):
    browser, page = at_code_page
    right = last_sms_code(app, user.mobile, "login")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(wrong_tries):
        page = enter_code(browser, page, wrong)
        assert_refused(browser, page)
    last = enter_code(browser, page, right)
    if works:
        assert last.request.path == "/" and is_logged_in(browser)
    else:
        assert_refused(browser, last)


@pytest.mark.slow
def test_used_code_cannot_be_used_again(app_with):
    """A code logs in once; the same code typed in a second login fails (resend interval shortened)."""
    app = app_with(otp={"resend_interval": 1})
    person = create_test_user(app)
    first = english_browser(app)
    page = start_sms_login(first, person.national_code)
    code = last_sms_code(app, person.mobile, "login")
    assert enter_code(first, page, code).request.path == "/"

    time.sleep(1.1)
    second = english_browser(app)
    page = start_sms_login(second, person.national_code)
    assert_code_page(page)
    fresh = last_sms_code(app, person.mobile, "login")
    if fresh == code:  # one chance in a million: the new code happens to equal the old one
        pytest.fail("the new code equals the used one; run again")
    assert_refused(second, enter_code(second, page, code))


def test_verify_page_without_a_started_login_goes_back_to_the_start(app):
    browser = english_browser(app)
    response = browser.client.get("/login/sms/verify")
    assert response.status_code in (302, 303)
    assert "/login/sms" in response.location and "/verify" not in response.location


# -- sending again ------------------------------------------------------------------------------------


def test_resend_too_soon_gives_a_message_and_sends_nothing(app, user, at_code_page):
    browser, page = at_code_page
    resent = browser.submit(page, {}, action_contains="/login/sms/resend")
    assert resent.status_code == 200 and "/login/sms/verify" in resent.request.path
    messages = " ".join(flashes(resent))
    assert re.search(r"\d+ seconds", messages), messages
    assert len(outbox_for(app, user.mobile, "login")) == 1
    # The first code still works.
    done = enter_code(browser, resent, last_sms_code(app, user.mobile, "login"))
    assert done.request.path == "/"


@pytest.mark.slow
def test_resend_after_the_interval_sends_a_new_code_and_the_old_one_stops(app_with):
    app = app_with(otp={"resend_interval": 1})
    person: UserInfo = create_test_user(app)
    browser = english_browser(app)
    page = start_sms_login(browser, person.national_code)
    old = last_sms_code(app, person.mobile, "login")
    time.sleep(1.1)
    resent = browser.submit(page, {}, action_contains="/login/sms/resend")
    assert len(outbox_for(app, person.mobile, "login")) == 2
    new = last_sms_code(app, person.mobile, "login")
    if new != old:
        assert_refused(browser, enter_code(browser, resent, old))
    done = enter_code(browser, browser.get("/login/sms/verify"), new)
    assert done.request.path == "/" and is_logged_in(browser)


# -- a pending authorization request is kept ------------------------------------------------------------


def test_sms_start_form_keeps_the_pending_request_after_an_error(app, rp_client: ClientInfo):
    browser = english_browser(app)
    _verifier, challenge = pkce_pair()
    login_page = browser.authorize(authorization_params(rp_client, challenge))
    link = parse_page(page_text(login_page)).links["link-otp-login"]
    tx = query_of(link)["tx"]
    page = browser.get(link)
    bad = browser.submit(page, {"national_code": "1234567890"}, action_contains="/login/sms")
    assert bad.status_code == 200
    assert field_error(bad, "national_code")
    assert find_form(page_text(bad), action_contains="/login/sms").fields.get("tx") == tx
    assert sms_outbox(app) == []


# -- long-run limits of SMS codes (issue 19, item 9) -----------------------------------------------------------


def start_with_captcha(app: Flask, browser: Browser, national_code: str) -> Any:
    page = browser.get("/login/sms")
    values = {"national_code": national_code, "captcha": captcha_answer(app, browser)}
    return browser.submit(page, values, action_contains="/login/sms")


def code_attempt(browser: Browser, page: Any, code: str, captcha: str | None = None) -> Any:
    form = find_form(page_text(page), action_contains="/login/sms/verify")
    values = {**form.fields, "code": code}
    values.pop("captcha", None)
    if captcha is not None:
        values["captcha"] = captcha
    return browser.post(form.action, values)


@pytest.mark.slow
def test_consecutive_wrong_codes_then_every_check_needs_a_captcha_and_a_wait(app_with):
    """NIST SP 800-63B 5.2.2: at most 100 consecutive failures before another step. After
    otp.captcha_after_failures (20) wrong codes in a row for the account, a code is checked only with a solved
    CAPTCHA, and each further check waits longer; the right code still works in the end (no lock)."""
    app = app_with(captcha={"enabled": True}, otp={"max_tries": 40})
    user = create_test_user(app)
    browser = english_browser(app)
    page = start_with_captcha(app, browser, user.national_code)
    right = last_sms_code(app, user.mobile, "login")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for attempt in range(20):
        page = code_attempt(browser, page, wrong)
        assert field_error(page, "code") == WRONG_CODE, attempt

    refused = code_attempt(browser, page, right)  # the right code, without a CAPTCHA: not even checked
    assert not is_logged_in(browser)
    assert "captcha" in find_form(page_text(refused), action_contains="/login/sms/verify").fields
    wrong_again = code_attempt(browser, refused, wrong, captcha=captcha_answer(app, browser))
    assert field_error(wrong_again, "code") == WRONG_CODE
    waiting = code_attempt(browser, wrong_again, right, captcha=captcha_answer(app, browser))
    assert re.search(r"Wait \d+ seconds", field_error(waiting, "code") or ""), field_error(waiting, "code")
    assert not is_logged_in(browser)

    time.sleep(2.1)
    done = code_attempt(browser, waiting, right, captcha=captcha_answer(app, browser))
    assert done.request.path == "/" and is_logged_in(browser), field_error(done, "code")


@pytest.mark.slow
def test_a_strangers_requests_for_codes_do_not_use_up_the_owners(app_with):
    """The review's lock-out: about five requests an hour from a stranger left the owner without a code for an
    hour. A stranger's requests (no CAPTCHA solved, not logged in: the "send again" button) spend a budget of
    their own; the owner, solving the CAPTCHA, still gets a code."""
    app = app_with(captcha={"enabled": True}, otp={"resend_interval": 1})
    user = create_test_user(app)
    stranger = english_browser(app, ip="203.0.113.66")
    page = start_with_captcha(app, stranger, user.national_code)
    refused = None
    for _ in range(8):
        time.sleep(1.05)
        page = stranger.submit(page, {}, action_contains="/login/sms/resend")
        if any("Too many codes" in message for message in flashes(page)):
            refused = page
            break
    assert refused is not None, "the stranger's requests have no budget"
    sent = len(outbox_for(app, user.mobile, "login"))

    owner = english_browser(app, ip="198.51.100.20")
    page = start_with_captcha(app, owner, user.national_code)
    assert_code_page(page)
    assert field_error(page, "national_code") is None
    assert len(outbox_for(app, user.mobile, "login")) == sent + 1
    done = enter_code(owner, page, last_sms_code(app, user.mobile, "login"))
    assert done.request.path == "/" and is_logged_in(owner)
