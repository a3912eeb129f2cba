"""The second factor (step-up) for urn:hoviyat:loa:2 (idp/auth/second_factor.py, idp/oidc/endpoints/authorize.py).

loa:2 is a password plus something held: an SMS code to the account's mobile, an authenticator-app (TOTP)
code or a recovery code. The ID token's acr says loa:2 and amr lists both methods. A session from an SMS
login proves the password as its second factor. After max_age the user logs in again with the password AND
a second factor. TOTP guessing goes through the login throttle.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pyotp
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
    create_test_client,
    create_test_user,
    english_browser,
    exchange_code,
    field_error,
    find_form,
    last_sms_code,
    page_text,
    parse_page,
    pkce_pair,
    query_of,
    sms_outbox,
)

LOA1 = "urn:hoviyat:loa:1"
LOA2 = "urn:hoviyat:loa:2"
SECOND_FACTOR = "/login/second-factor"
METHOD_LINKS = ("method-pwd", "method-sms", "method-otp", "method-recovery")


# -- helpers ----------------------------------------------------------------------------------------


def method_links(response: Any) -> dict[str, str]:
    return {k: v for k, v in parse_page(page_text(response)).links.items() if k in METHOD_LINKS}


def is_second_factor_page(response: Any) -> bool:
    return response.status_code == 200 and response.request.path == SECOND_FACTOR


def decode(client: Any, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def password_login(browser: Browser, user: UserInfo) -> None:
    """Log in at /login with no relying party (one factor: amr ["pwd"])."""
    page = browser.get("/login")
    done = browser.login(page, user)
    assert done.status_code == 200 and done.request.path == "/", (done.status_code, done.request.path)


def sms_login(browser: Browser, app: Flask, user: UserInfo) -> None:
    """Log in with an SMS code and no relying party (one factor: amr ["sms"])."""
    page = browser.get("/login/sms")
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    done = browser.submit(page, {"code": last_sms_code(app, user.mobile, "login")}, field_name="code")
    assert done.status_code == 200 and done.request.path == "/", (done.status_code, done.request.path)


def start(browser: Browser, rp: ClientInfo, **extra: str) -> tuple[Any, dict[str, str], str]:
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, **extra)
    return browser.authorize(params), params, verifier


def finish(browser: Browser, page: Any, rp: ClientInfo, params: dict[str, str], verifier: str) -> dict[str, Any]:
    """Consent if asked, check the redirect to the RP, exchange the code; returns the ID token's claims."""
    if page.status_code == 200 and b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302, (page.status_code, page.request.path, page_text(page)[:1500])
    assert page.location.startswith(rp.redirect_uri), page.location
    query = query_of(page.location)
    assert "error" not in query, query
    assert query["state"] == params["state"]
    assert query["iss"] == browser.issuer
    response = exchange_code(browser.client, rp, query["code"], verifier)
    assert response.status_code == 200, response.get_json()
    return decode(browser.client, response.get_json()["id_token"])


def totp_code(secret: str) -> str:
    """The code the app shows at the provider's time (pyotp alone would use real time)."""
    return pyotp.TOTP(secret).at(clock.timestamp())


def enrol_totp(browser: Browser, user: UserInfo | None = None) -> tuple[str, list[str]]:
    """Turn on the authenticator app on /account/two-factor (after confirming with an SMS code, which that page asks
    of a one-factor session); returns the secret and the recovery codes. With ``user``, the browser then logs out
    and in again with the password: a one-factor session again, as before the enrolment."""
    page = browser.get("/account/two-factor")
    assert page.status_code == 200
    if 'id="confirm-first"' in page_text(page):
        page = browser.confirm_it_is_me()
    match = re.search(r'id="totp-secret"[^>]*>\s*([A-Z2-7]+)\s*<', page_text(page))
    assert match, page_text(page)[:2000]
    secret = match.group(1)
    shown = browser.submit(page, {"code": totp_code(secret)}, action_contains="/account/two-factor")
    assert shown.status_code == 200, shown.status_code
    codes = re.findall(r"<code>\s*([a-z2-7]{4}-[a-z2-7]{4})\s*</code>", page_text(shown))
    assert len(codes) >= 5, page_text(shown)[:2000]
    if user is not None:
        home = browser.get("/")
        browser.submit(home, {"confirm": "yes"}, action_contains="/logout")
        password_login(browser, user)
    return secret, codes


def submit_code(browser: Browser, page: Any, code: str) -> Any:
    return browser.submit(page, {"code": code}, field_name="code", action_contains=SECOND_FACTOR)


# -- loa:2 with the password and an SMS code (must show) --------------------------------------------------


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param({"acr_values": LOA2}, id="acr_values"),
        pytest.param(
            {"claims": json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA2]}}})},
            id="essential-acr-claim",
        ),
    ],
)
def test_loa2_after_password_and_sms_has_two_methods(app, user, rp_client, ask):
    browser = english_browser(app)
    page, params, verifier = start(browser, rp_client, **ask)
    assert b'name="password"' in page.data
    page = browser.login(page, user)
    assert is_second_factor_page(page)
    assert query_of(page.request.url).get("tx")  # the pending request is kept
    assert method_links(page) == {}  # no authenticator app: the SMS code is the only way

    page = browser.submit(page, {}, action_contains="/login/second-factor/send")
    assert is_second_factor_page(page)
    texted = [m for m in sms_outbox(app) if m["purpose"] == "step_up"]
    assert [m["to"] for m in texted] == [user.mobile]
    page = submit_code(browser, page, texted[0]["code"])

    claims = finish(browser, page, rp_client, params, verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"] == ["pwd", "sms"]
    assert claims["nonce"] == params["nonce"]
    assert isinstance(claims["auth_time"], int)


def test_a_loa2_session_is_not_asked_again(app, user, rp_client):
    browser = english_browser(app)
    page, params, verifier = start(browser, rp_client, acr_values=LOA2)
    page = browser.second_factor_by_sms(browser.login(page, user), app, user.mobile)
    first = finish(browser, page, rp_client, params, verifier)
    page, params, verifier = start(browser, rp_client, acr_values=LOA2, prompt="none")
    again = finish(browser, page, rp_client, params, verifier)
    assert again["acr"] == LOA2 and again["amr"] == ["pwd", "sms"]
    assert again["sid"] == first["sid"] and again["auth_time"] == first["auth_time"]
    assert len([m for m in sms_outbox(app) if m["purpose"] == "step_up"]) == 1  # no second code


# -- the authenticator app and recovery codes --------------------------------------------------------------


def test_step_up_with_the_authenticator_app(app, user, rp_client):
    browser = english_browser(app)
    password_login(browser, user)
    secret, _codes = enrol_totp(browser, user)
    clock.advance(30)  # the enrolment code's time step is spent
    texts_before = len(sms_outbox(app))

    page, params, verifier = start(browser, rp_client, acr_values=LOA2)
    assert is_second_factor_page(page)  # the session has the password only
    assert find_form(page_text(page), action_contains=SECOND_FACTOR, field_name="code")
    assert set(method_links(page)) == {"method-sms", "method-recovery"}  # the app is the default
    page = submit_code(browser, page, totp_code(secret))
    claims = finish(browser, page, rp_client, params, verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"] == ["pwd", "otp"]
    assert len(sms_outbox(app)) == texts_before  # no SMS was needed


def test_enrolment_rejects_a_wrong_code_and_keeps_the_app_off(app, user, rp_client):
    browser = english_browser(app)
    password_login(browser, user)
    page = browser.confirm_it_is_me()
    secret = re.search(r'id="totp-secret"[^>]*>\s*([A-Z2-7]+)', page_text(page)).group(1)
    wrong = f"{(int(totp_code(secret)) + 1) % 1_000_000:06d}"
    failed = browser.submit(page, {"code": wrong}, action_contains="/account/two-factor")
    assert failed.status_code == 200 and field_error(failed, "code")
    assert not re.findall(r"<code>\s*[a-z2-7]{4}-[a-z2-7]{4}\s*</code>", page_text(failed))  # no recovery codes
    # Step-up still offers SMS only.
    browser = english_browser(app)
    password_login(browser, user)
    page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    assert is_second_factor_page(page) and method_links(page) == {}
    assert find_form(page_text(page), action_contains="/login/second-factor/send")


def test_totp_code_is_accepted_once_per_time_step(app, user, rp_client):
    first = english_browser(app)
    password_login(first, user)
    secret, _codes = enrol_totp(first, user)
    clock.advance(30)
    code = totp_code(secret)
    page, params, verifier = start(first, rp_client, acr_values=LOA2)
    finish(first, submit_code(first, page, code), rp_client, params, verifier)

    # The same code, within the same 30-second step, in another browser: refused.
    second = english_browser(app)
    page, _params, _verifier = start(second, rp_client, acr_values=LOA2)
    page = second.login(page, user)
    assert is_second_factor_page(page)
    refused = submit_code(second, page, code)
    assert is_second_factor_page(refused) and field_error(refused, "code")
    # The next step's code works.
    clock.advance(30)
    page, params, verifier = start(second, rp_client, acr_values=LOA2)
    claims = finish(second, submit_code(second, page, totp_code(secret)), rp_client, params, verifier)
    assert claims["amr"] == ["pwd", "otp"]


def test_recovery_code_works_once(app, user, rp_client):
    browser = english_browser(app)
    password_login(browser, user)
    _secret, codes = enrol_totp(browser, user)
    # Shown once: the two-factor page no longer lists them.
    again = browser.get("/account/two-factor")
    assert not any(code in page_text(again) for code in codes)

    first = english_browser(app)
    page, params, verifier = start(first, rp_client, acr_values=LOA2)
    page = first.login(page, user)
    page = first.get(method_links(page)["method-recovery"])
    assert is_second_factor_page(page)
    assert set(method_links(page)) == {"method-otp", "method-sms"}
    claims = finish(first, submit_code(first, page, codes[0].upper()), rp_client, params, verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"][0] == "pwd" and len(claims["amr"]) == 2

    second = english_browser(app)
    page, params, verifier = start(second, rp_client, acr_values=LOA2)
    page = second.get(method_links(second.login(page, user))["method-recovery"])
    refused = submit_code(second, page, codes[0])
    assert is_second_factor_page(refused)
    assert field_error(refused, "code")
    # Another, unused one still works.
    claims = finish(second, submit_code(second, refused, codes[1]), rp_client, params, verifier)
    assert claims["acr"] == LOA2


# -- a session from an SMS login: the password is the second factor -------------------------------------------


def test_after_an_sms_login_loa2_asks_for_the_password(app, user, rp_client):
    browser = english_browser(app)
    sms_login(browser, app, user)
    page, params, verifier = start(browser, rp_client, acr_values=LOA2)
    assert is_second_factor_page(page)
    form = find_form(page_text(page), action_contains=SECOND_FACTOR)
    assert "password" in form.fields and "code" not in form.fields
    assert method_links(page) == {}

    wrong = browser.submit(page, {"password": "not the password"}, field_name="password")
    assert is_second_factor_page(wrong) and field_error(wrong, "password")

    page = browser.submit(wrong, {"password": user.password}, field_name="password")
    claims = finish(browser, page, rp_client, params, verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"] == ["sms", "pwd"]


def test_sms_session_cannot_pick_a_code_method_instead_of_the_password(app, user, rp_client):
    browser = english_browser(app)
    sms_login(browser, app, user)
    page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    tx = query_of(page.request.url)["tx"]
    for method in ("sms", "otp", "recovery"):
        other = browser.get(f"{SECOND_FACTOR}?method={method}&tx={tx}")
        form = find_form(page_text(other), action_contains=SECOND_FACTOR)
        assert "password" in form.fields and "code" not in form.fields, method


def test_sms_login_alone_is_loa1(app, user, rp_client):
    browser = english_browser(app)
    sms_login(browser, app, user)
    page, params, verifier = start(browser, rp_client)
    claims = finish(browser, page, rp_client, params, verifier)
    assert claims["acr"] == LOA1 and claims["amr"] == ["sms"]


# -- max_age and prompt=none ---------------------------------------------------------------------------


@pytest.mark.slow
def test_max_age_elapsed_asks_again_for_what_the_requested_level_needs_only(app, user, rp_client):
    """OpenID Connect Core 3.1.2.1: after max_age the user authenticates again; the new login is one factor when the
    relying party asks for no more, even if the session it replaces had two. No text message is sent."""
    browser = english_browser(app)
    page, params, verifier = start(browser, rp_client, acr_values=LOA2)
    first = finish(
        browser, browser.second_factor_by_sms(browser.login(page, user), app, user.mobile), rp_client, params, verifier
    )
    assert first["acr"] == LOA2
    texts_before = len(sms_outbox(app))

    time.sleep(1.1)
    page, params, verifier = start(browser, rp_client, max_age="1")
    assert page.status_code == 200 and b'name="password"' in page.data  # the password, even with a loa:2 session
    second = finish(browser, browser.login(page, user), rp_client, params, verifier)
    assert second["auth_time"] > first["auth_time"]
    assert second["acr"] == LOA1 and second["amr"] == ["pwd"]
    assert second["sub"] == first["sub"]
    assert len(sms_outbox(app)) == texts_before


@pytest.mark.slow
def test_max_age_elapsed_with_loa2_asks_for_the_password_and_a_second_factor_again(app_with):
    app = app_with(otp={"resend_interval": 1})  # a second step-up code soon after the first
    user, rp_client = create_test_user(app), create_test_client(app)
    browser = english_browser(app)
    page, params, verifier = start(browser, rp_client, acr_values=LOA2)
    first = finish(
        browser, browser.second_factor_by_sms(browser.login(page, user), app, user.mobile), rp_client, params, verifier
    )
    time.sleep(1.1)
    page, params, verifier = start(browser, rp_client, max_age="1", acr_values=LOA2)
    page = browser.login(page, user)
    assert is_second_factor_page(page)  # the new login has one factor; loa:2 needs two
    skipped = browser.get(f"/authorize/resume?tx={query_of(page.request.url)['tx']}")
    assert skipped.status_code != 302 or not skipped.location.startswith(rp_client.redirect_uri)
    second = finish(browser, browser.second_factor_by_sms(page, app, user.mobile), rp_client, params, verifier)
    assert second["auth_time"] > first["auth_time"]
    assert second["acr"] == LOA2 and second["amr"] == ["pwd", "sms"]


@pytest.mark.slow
def test_max_age_elapsed_after_an_sms_login_asks_for_one_factor(app, user, rp_client):
    browser = english_browser(app)
    sms_login(browser, app, user)
    page, params, verifier = start(browser, rp_client)
    first = finish(browser, page, rp_client, params, verifier)
    assert first["amr"] == ["sms"]
    time.sleep(1.1)
    page, params, verifier = start(browser, rp_client, max_age="1")
    assert page.status_code == 200 and b'name="password"' in page.data
    second = finish(browser, browser.login(page, user), rp_client, params, verifier)
    assert second["auth_time"] > first["auth_time"]
    assert second["acr"] == LOA1 and second["amr"] == ["pwd"]


@pytest.mark.parametrize("first_login", ["password", "sms"])
def test_prompt_none_with_loa2_and_a_one_factor_session_is_login_required(app, user, rp_client, first_login):
    browser = english_browser(app)
    if first_login == "password":
        password_login(browser, user)
    else:
        sms_login(browser, app, user)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2, prompt="none")
    response = browser.client.get("/authorize", query_string=params)
    assert response.status_code in (302, 303)
    assert response.location.startswith(rp_client.redirect_uri)
    query = query_of(response.location)
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]
    assert query["iss"] == browser.issuer
    assert "code" not in query


# -- wrong codes -----------------------------------------------------------------------------------------


def _other_purpose_code(app: Flask, user: UserInfo) -> str:
    other = english_browser(app)
    page = other.get("/login/sms")
    other.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    return last_sms_code(app, user.mobile, "login")


@pytest.mark.parametrize("wrong", ["off-by-one", "expired", "login-purpose"])
def test_wrong_sms_code_at_step_up_fails(app, user, rp_client, wrong):
    browser = english_browser(app)
    page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    page = browser.login(page, user)
    page = browser.submit(page, {}, action_contains="/login/second-factor/send")
    right = last_sms_code(app, user.mobile, "step_up")
    if wrong == "off-by-one":
        code = f"{(int(right) + 1) % 1_000_000:06d}"
    elif wrong == "expired":
        clock.advance(121)
        code = right
    else:
        code = _other_purpose_code(app, user)
        if code == right:
            pytest.fail("the login code equals the step-up code (one in a million); run again")
    refused = submit_code(browser, page, code)
    assert is_second_factor_page(refused)
    assert field_error(refused, "code")
    # Still one factor: a loa:2 request with prompt=none is refused.
    _v, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2, prompt="none")
    assert query_of(browser.client.get("/authorize", query_string=params).location)["error"] == "login_required"


def test_wrong_totp_code_at_step_up_fails(app, user, rp_client):
    browser = english_browser(app)
    password_login(browser, user)
    secret, _codes = enrol_totp(browser, user)
    clock.advance(30)
    page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    right = totp_code(secret)
    for wrong in (f"{(int(right) + 1) % 1_000_000:06d}", pyotp.TOTP(secret).at(clock.timestamp() - 600), "12345"):
        page = submit_code(browser, page, wrong)
        assert is_second_factor_page(page) and field_error(page, "code"), wrong


def wrong_totp(secret: str) -> str:
    valid = {pyotp.TOTP(secret).at(clock.timestamp() + drift * 30) for drift in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def wait_message(response: Any) -> str | None:
    error = field_error(response, "code") or ""
    return error if re.search(r"\bWait \d+ seconds\b", error) else None


@pytest.mark.slow
def test_guessing_totp_codes_is_throttled(app_with):
    app = app_with(login={"delay_after_failures": 2, "max_delay": 2, "captcha_after_failures": 50})
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = english_browser(app)
    password_login(browser, user)
    secret, _codes = enrol_totp(browser, user)
    clock.advance(30)
    page, params, verifier = start(browser, rp, acr_values=LOA2)

    wrong = wrong_totp(secret)
    for attempt in range(1, 3):  # up to delay_after_failures: plain "wrong code"
        page = submit_code(browser, page, wrong)
        assert field_error(page, "code") and not wait_message(page), attempt
    page = submit_code(browser, page, wrong)  # the attempt that closes the gate may still be checked
    if not wait_message(page):
        page = submit_code(browser, page, wrong)
    assert wait_message(page), field_error(page, "code")

    refused = submit_code(browser, page, totp_code(secret))  # the right code, during the wait
    assert is_second_factor_page(refused) and wait_message(refused)

    time.sleep(2.1)
    claims = finish(browser, submit_code(browser, refused, totp_code(secret)), rp, params, verifier)
    assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == LOA2


def test_totp_failures_beyond_the_captcha_limit_do_not_lock_out_the_owner_when_captcha_is_off(app_with):
    """captcha.enabled = false: no page can show a CAPTCHA, so none may be demanded."""
    app = app_with(login={"delay_after_failures": 50, "captcha_after_failures": 2})
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = english_browser(app)
    password_login(browser, user)
    secret, _codes = enrol_totp(browser, user)
    clock.advance(30)
    page, params, verifier = start(browser, rp, acr_values=LOA2)
    for _ in range(3):
        page = submit_code(browser, page, wrong_totp(secret))
    claims = finish(browser, submit_code(browser, page, totp_code(secret)), rp, params, verifier)
    assert claims["amr"] == ["pwd", "otp"]


# -- the page itself -------------------------------------------------------------------------------------


def test_second_factor_page_without_a_session_redirects_to_login(app, rp_client):
    browser = english_browser(app)
    response = browser.client.get(SECOND_FACTOR)
    assert response.status_code in (302, 303)
    assert response.location.split("?")[0].endswith("/login")
    # With a pending request: the login page keeps it.
    login_page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    tx = query_of(login_page.request.url)["tx"]
    response = browser.client.get(f"{SECOND_FACTOR}?tx={tx}")
    assert response.status_code in (302, 303)
    assert response.location.split("?")[0].endswith("/login")
    assert query_of(response.location).get("tx") == tx
    # Nor can a code be sent, or a code posted, without a session.
    sent = browser.client.post(f"{SECOND_FACTOR}/send")
    assert sent.status_code in (302, 303, 400) and sms_outbox(app) == []
    posted = browser.client.post(SECOND_FACTOR, data={"code": "123456"})
    assert posted.status_code in (302, 303, 400)


def test_method_links_follow_what_the_user_has(app, user, rp_client):
    browser = english_browser(app)
    password_login(browser, user)
    page, _params, _verifier = start(browser, rp_client, acr_values=LOA2)
    tx = query_of(page.request.url)["tx"]
    assert method_links(page) == {}  # no app: SMS only, nothing to switch to
    assert method_links(browser.get(f"{SECOND_FACTOR}?method=otp&tx={tx}")) == {}
    assert find_form(page_text(browser.get(f"{SECOND_FACTOR}?method=otp&tx={tx}")), action_contains="/send")

    enrol_totp(browser)
    expected = {
        "otp": {"method-sms", "method-recovery"},
        "sms": {"method-otp", "method-recovery"},
        "recovery": {"method-otp", "method-sms"},
        "pwd": {"method-sms", "method-recovery"},  # not offered to a password session: the app page
    }
    for method, links in expected.items():
        page = browser.get(f"{SECOND_FACTOR}?method={method}&tx={tx}")
        assert is_second_factor_page(page)
        found = method_links(page)
        assert set(found) == links, (method, found)
        assert all(query_of(href).get("tx") == tx for href in found.values())
