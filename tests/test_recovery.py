"""Password recovery (/password/forgot, /password/reset, /password/reset/resend).

A code goes to the account's registered mobile (purpose "reset"); with it the user chooses a new password
(the same rules as registration) and is logged in, back at the relying party when one was waiting. A reset
ends every other session of the user, revokes every refresh token of the account and is audited as
password.reset. An unknown national code gets the same pages and wording, and no SMS.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from limits import parse
from sqlalchemy import select

from idp import clock
from idp.extensions import db
from idp.store.models import AuditEvent

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
    get_code,
    is_logged_in,
    last_sms_code,
    page_text,
    parse_page,
    pkce_pair,
    query_of,
    refresh_grant,
    sms_outbox,
    valid_national_code,
)
from .test_step_up import enrol_totp, password_login, totp_code

LOA1 = "urn:hoviyat:loa:1"
NEW_PASSWORD = "a brand new passphrase 7"
UNKNOWN_NATIONAL_CODE = valid_national_code("987654321")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
WRONG_CODE = "The code is not correct or has expired."


# -- helpers ----------------------------------------------------------------------------------------


def flashes(response: Any) -> list[str]:
    found = re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', page_text(response), re.S)
    return [html.unescape(m).strip() for m in found]


def without_seconds(text: str) -> str:
    """A count of seconds to wait may tick between two requests; the wording is what must not differ."""
    return re.sub(r"\d+ seconds", "N seconds", text)


def visible_page(response: Any) -> str:
    """The page without what differs between requests (CSRF token, pending request id)."""
    body = re.sub(r'name="csrf_token"[^>]*value="[^"]*"', 'name="csrf_token"', page_text(response))
    body = re.sub(r'<input[^>]*name="tx"[^>]*>', '<input name="tx">', body)
    return re.sub(r"tx=[A-Za-z0-9_\-]+", "tx=", body)


def ask_for_code(browser: Browser, national_code: str, tx: str | None = None) -> Any:
    page = browser.get("/password/forgot" + (f"?tx={tx}" if tx else ""))
    assert page.status_code == 200
    return browser.submit(page, {"national_code": national_code}, action_contains="/password/forgot")


def reset(browser: Browser, page: Any, code: str, password: str, confirm: str | None = None) -> Any:
    values = {"code": code, "password": password, "password_confirm": password if confirm is None else confirm}
    return browser.submit(page, values, action_contains="/password/reset")


def can_log_in(app: Flask, national_code: str, password: str) -> bool:
    browser = english_browser(app)
    page = browser.get("/login")
    done = browser.submit(page, {"national_code": national_code, "password": password}, field_name="password")
    return done.status_code == 200 and done.request.path == "/"


def audit_events(app: Flask, event: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def decode(client: Any, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def tokens_in_new_browser(app: Flask, rp: ClientInfo, user: UserInfo) -> tuple[Browser, dict[str, Any]]:
    browser = english_browser(app)
    code, verifier, _ = get_code(browser, rp, user)
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return browser, response.get_json()


# -- the whole recovery ------------------------------------------------------------------------------------


def test_recovery_from_the_login_page_returns_to_the_relying_party(app, user, rp_client):
    browser = english_browser(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    login_page = browser.authorize(params)
    tx = query_of(login_page.request.url)["tx"]
    link = parse_page(page_text(login_page)).links["link-forgot-password"]
    assert query_of(link).get("tx") == tx

    page = browser.get(link)
    assert find_form(page_text(page), action_contains="/password/forgot").fields.get("tx") == tx
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/password/forgot")
    assert page.status_code == 200 and page.request.path == "/password/reset"
    form = find_form(page_text(page), action_contains="/password/reset")
    assert {"code", "password", "password_confirm"} <= set(form.fields)
    texted = sms_outbox(app)
    assert [(m["to"], m["purpose"]) for m in texted] == [(user.mobile, "reset")]

    page = reset(browser, page, texted[0]["code"], NEW_PASSWORD)
    if page.status_code == 200 and b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302, (page.request.path, field_error(page, "code"), field_error(page, "password"))
    assert page.location.startswith(rp_client.redirect_uri)
    query = query_of(page.location)
    assert query["state"] == params["state"] and query["iss"] == browser.issuer
    response = exchange_code(browser.client, rp_client, query["code"], verifier)
    assert response.status_code == 200
    claims = decode(browser.client, response.get_json()["id_token"])
    assert claims["acr"] == LOA1  # a code by SMS alone is one factor

    assert not can_log_in(app, user.national_code, user.password)
    assert can_log_in(app, user.national_code, NEW_PASSWORD)
    events = audit_events(app, "password.reset")
    assert [e.user_id for e in events] == [user.id]
    assert NEW_PASSWORD not in str(events[0].detail) and texted[0]["code"] not in str(events[0].detail)


def test_recovery_without_a_relying_party_lands_on_the_account(app, user):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    done = reset(browser, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD)
    assert done.status_code == 200 and done.request.path == "/"
    assert is_logged_in(browser)


def test_recovery_ends_other_sessions_and_revokes_every_refresh_token(app, user, rp_client):
    other_rp = _second_client(app)
    elsewhere, token = tokens_in_new_browser(app, rp_client, user)
    _, other_token = tokens_in_new_browser(app, other_rp, user)
    assert is_logged_in(elsewhere)

    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    assert reset(browser, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD).request.path == "/"

    assert not is_logged_in(elsewhere)
    for rp, refresh_token in ((rp_client, token["refresh_token"]), (other_rp, other_token["refresh_token"])):
        refused = refresh_grant(elsewhere.client, rp, refresh_token)
        assert refused.status_code == 400, refused.get_json()
        assert refused.get_json()["error"] == "invalid_grant"
    info = elsewhere.client.get("/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 401
    assert is_logged_in(browser)  # the browser that reset the password is logged in


def _second_client(app: Flask) -> ClientInfo:
    return create_test_client(app, name="Second Portal", redirect_uris=["https://two.example/cb"])


# -- telling nobody who has an account --------------------------------------------------------------


def test_unknown_national_code_gets_the_same_pages_and_no_sms(app, user):
    known_browser, unknown_browser = english_browser(app), english_browser(app)
    known = ask_for_code(known_browser, user.national_code)
    sent = len(sms_outbox(app))
    unknown = ask_for_code(unknown_browser, UNKNOWN_NATIONAL_CODE)
    assert (unknown.status_code, unknown.request.path) == (known.status_code, known.request.path)
    assert visible_page(unknown) == visible_page(known)
    assert len(sms_outbox(app)) == sent

    wrong_for_known = reset(known_browser, known, "000000", NEW_PASSWORD)
    for guess in ("000000", last_sms_code(app, user.mobile, "reset")):
        failed = reset(unknown_browser, unknown, guess, NEW_PASSWORD)
        assert failed.status_code == 200 and failed.request.path == "/password/reset"
        assert field_error(failed, "code") == field_error(wrong_for_known, "code") == WRONG_CODE
        assert field_error(failed, "password") is None
    assert not is_logged_in(unknown_browser)


def test_unknown_and_known_national_codes_answer_alike_when_asked_twice(app, user):
    answers = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        ask_for_code(browser, national_code)
        again = ask_for_code(browser, national_code)
        typed_back = visible_page(again).replace(national_code, "<national code>")  # the form echoes it
        answers.append((again.status_code, again.request.path, without_seconds(typed_back)))
    assert answers[0] == answers[1]


def test_resend_answers_alike_for_unknown_and_known_national_codes(app, user):
    answers = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        page = ask_for_code(browser, national_code)
        resent = browser.submit(page, {}, action_contains="/password/reset/resend")
        answers.append((resent.status_code, resent.request.path, [without_seconds(f) for f in flashes(resent)]))
    assert answers[0] == answers[1], answers


def test_resend_too_soon_gives_a_message_and_the_first_code_still_works(app, user):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    resent = browser.submit(page, {}, action_contains="/password/reset/resend")
    assert resent.request.path == "/password/reset"
    assert flashes(resent)
    assert len([m for m in sms_outbox(app) if m["purpose"] == "reset"]) == 1
    done = reset(browser, resent, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD)
    assert done.request.path == "/"


# -- bad input changes nothing -------------------------------------------------------------------------


def _login_code_for(app: Flask, user: UserInfo) -> str:
    other = english_browser(app)
    page = other.get("/login/sms")
    other.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    return last_sms_code(app, user.mobile, "login")


BAD_CODES = ["wrong", "expired", "login-purpose", "letters"]
WEAK_PASSWORDS = {
    "national-code": "0012345679",
    "mobile": "09121234567",
    "mobile-e164": "+989121234567",
    "birthdate": "1990-03-21",
    "jalali-birthdate": "13690101",
    "common": "password123",
    "common-upper": "PASSWORD123",
    "short": "Ab3$xyz",
}


@pytest.fixture
def other_session(app, user, rp_client) -> tuple[Browser, dict[str, Any]]:
    """The user logged in elsewhere, with a refresh token: a reset that fails must leave both alone."""
    return tokens_in_new_browser(app, rp_client, user)


def assert_nothing_changed(app: Flask, user: UserInfo, rp: ClientInfo, other: tuple[Browser, dict[str, Any]]) -> None:
    browser, token = other
    assert is_logged_in(browser)
    assert refresh_grant(browser.client, rp, token["refresh_token"]).status_code == 200
    assert audit_events(app, "password.reset") == []
    assert can_log_in(app, user.national_code, user.password)
    assert not can_log_in(app, user.national_code, NEW_PASSWORD)


@pytest.mark.parametrize("bad", BAD_CODES)
def test_bad_code_changes_nothing(app, user, rp_client, other_session, bad):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    right = last_sms_code(app, user.mobile, "reset")
    if bad == "wrong":
        code = f"{(int(right) + 1) % 1_000_000:06d}"
    elif bad == "expired":
        clock.advance(121)
        code = right
    elif bad == "login-purpose":
        code = _login_code_for(app, user)
        if code == right:
            pytest.fail("the login code equals the reset code (one in a million); run again")
    else:
        code = "abcdef"
    failed = reset(browser, page, code, NEW_PASSWORD)
    assert failed.status_code == 200 and failed.request.path == "/password/reset"
    assert field_error(failed, "code")
    assert not is_logged_in(browser)
    if bad == "expired":
        clock.reset()  # back to now, so the other session and tokens are judged at the real time
    assert_nothing_changed(app, user, rp_client, other_session)


@pytest.mark.parametrize("weak", list(WEAK_PASSWORDS.values()), ids=list(WEAK_PASSWORDS))
def test_weak_new_password_changes_nothing_and_the_code_still_works(app, user, rp_client, other_session, weak):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    code = last_sms_code(app, user.mobile, "reset")
    failed = reset(browser, page, code, weak)
    assert failed.status_code == 200 and failed.request.path == "/password/reset"
    assert field_error(failed, "password")
    assert not is_logged_in(browser)
    assert can_log_in(app, user.national_code, user.password)
    assert not can_log_in(app, user.national_code, weak)
    assert audit_events(app, "password.reset") == []
    assert is_logged_in(other_session[0])
    # Fixing the password with the same code works: the rule was checked before the code was used.
    done = reset(browser, failed, code, NEW_PASSWORD)
    assert done.request.path == "/", (field_error(done, "code"), field_error(done, "password"))


def test_different_confirmation_changes_nothing(app, user, rp_client, other_session):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    failed = reset(browser, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD, NEW_PASSWORD + "!")
    assert failed.status_code == 200 and failed.request.path == "/password/reset"
    assert field_error(failed, "password_confirm")
    assert not is_logged_in(browser)
    assert_nothing_changed(app, user, rp_client, other_session)


def test_persian_digits_in_national_code_and_code(app, user):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code.translate(PERSIAN))
    assert page.request.path == "/password/reset"
    code = last_sms_code(app, user.mobile, "reset")
    done = reset(browser, page, code.translate(PERSIAN), NEW_PASSWORD)
    assert done.request.path == "/", field_error(done, "code")
    assert can_log_in(app, user.national_code, NEW_PASSWORD)


def test_reset_page_without_a_started_recovery_goes_back_to_the_start(app):
    response = english_browser(app).client.get("/password/reset")
    assert response.status_code in (302, 303)
    assert response.location.split("?")[0].endswith("/password/forgot")


# -- an attacker without the code learns nothing about the account (issue 19, item 1) --------------------

PROBES = {"short": "abc", "birthdate": "1990-03-21", "mobile": "09121234567", "national-code": "0012345679"}


def wrong_code_for(app: Flask, user: UserInfo) -> str:
    """A code that is not the one texted to ``user`` for the reset (any code, when none was texted)."""
    texted = [m["code"] for m in sms_outbox(app) if m["to"] == user.mobile and m["purpose"] == "reset"]
    return f"{(int(texted[-1]) + 1) % 1_000_000:06d}" if texted else "000000"


def reset_form_values(page: Any, **values: str) -> dict[str, str]:
    form = find_form(page_text(page), action_contains="/password/reset")
    return {**form.fields, **values}


@pytest.mark.parametrize("password", list(PROBES.values()), ids=list(PROBES))
def test_reset_reveals_nothing_about_the_account_before_a_correct_code(app, user, password):
    """``password=abc`` or the birth date with a wrong code: the same answer for an account and for none, and
    no password rule is judged before the code is right."""
    answers = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        page = ask_for_code(browser, national_code)
        failed = reset(browser, page, wrong_code_for(app, user), password)
        answers.append(
            (
                failed.status_code,
                failed.request.path,
                field_error(failed, "code"),
                field_error(failed, "password"),
                visible_page(failed),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][2] == WRONG_CODE and answers[0][3] is None


def test_every_reset_attempt_spends_one_of_the_codes_tries(app, user):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    right, wrong = last_sms_code(app, user.mobile, "reset"), wrong_code_for(app, user)
    weak = list(WEAK_PASSWORDS.values())
    for attempt in range(app.extensions["idp"].config.otp.max_tries):
        page = reset(browser, page, wrong, weak[attempt % len(weak)])
        assert (field_error(page, "code"), field_error(page, "password")) == (WRONG_CODE, None), attempt
    used_up = reset(browser, page, right, NEW_PASSWORD)
    assert field_error(used_up, "code") == WRONG_CODE
    assert not is_logged_in(browser)
    assert can_log_in(app, user.national_code, user.password)


@pytest.mark.parametrize("whose", ["account", "no-account"])
def test_birth_date_search_is_stopped_by_the_per_account_limit(app, user, whose):
    """The review's attack: 553 birth dates as the password, each with a wrong code. No answer says anything
    about the birth date, and the per-account limit stops the search after the same number of requests for an
    account and for none."""
    national_code = user.national_code if whose == "account" else UNKNOWN_NATIONAL_CODE
    browser = english_browser(app)
    page = ask_for_code(browser, national_code)
    values = reset_form_values(page, code=wrong_code_for(app, user))
    first = dt.date(1989, 9, 1)
    limited_at = None
    for number in range(1, 554):
        guess = (first + dt.timedelta(days=number - 1)).isoformat()
        response = browser.client.post("/password/reset", data={**values, "password": guess, "password_confirm": guess})
        if response.status_code == 429:
            limited_at = number
            break
        assert response.status_code == 200 and field_error(response, "password") is None, guess
        assert field_error(response, "code") == WRONG_CODE, guess
    assert limited_at is not None, "553 guesses and no limit"
    assert limited_at == parse(app.extensions["idp"].config.limits.password_reset_per_account).amount + 1
    assert response.headers.get("Retry-After")


def test_reset_costs_the_same_store_operations_and_hmacs_for_an_unknown_national_code(app, user, monkeypatch):
    """Timing: a wrong code costs the same work whether or not the national code has an account (the same store
    operations, one HMAC, no Argon2, no registry call)."""
    import idp.otp
    import idp.passwords

    provider = app.extensions["idp"]
    calls: list[str] = []

    def counting(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = args[0] if name.startswith("store.") else ""
            calls.append(f"{name}:{key.split(':')[0]}")
            return original(*args, **kwargs)

        return wrapper

    for name in ("get", "put", "add", "incr", "consume", "delete"):
        monkeypatch.setattr(provider.store, name, counting(f"store.{name}", getattr(provider.store, name)))
    monkeypatch.setattr(idp.otp, "keyed_hash", counting("hmac", idp.otp.keyed_hash))
    monkeypatch.setattr(idp.passwords, "_on_argon2_thread", counting("argon2", idp.passwords._on_argon2_thread))
    for name in ("mobile_belongs_to", "find_person"):
        monkeypatch.setattr(provider.registry, name, counting(f"registry.{name}", getattr(provider.registry, name)))

    work = []
    for national_code in (user.national_code, UNKNOWN_NATIONAL_CODE):
        browser = english_browser(app)
        page = ask_for_code(browser, national_code)
        values = reset_form_values(page, code=wrong_code_for(app, user), password="abc", password_confirm="abc")
        calls.clear()
        assert browser.client.post("/password/reset", data=values).status_code == 200
        work.append(list(calls))
    assert work[0] == work[1]
    assert "hmac:" in work[0]
    assert not [call for call in work[0] if call.startswith(("argon2", "registry"))]


def test_a_refused_new_password_keeps_the_verified_code(app, user):
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    failed = reset(browser, page, last_sms_code(app, user.mobile, "reset"), "abc")
    assert field_error(failed, "password") and field_error(failed, "code") is None
    assert "code" not in find_form(page_text(failed), action_contains="/password/reset").fields  # no new code
    done = browser.submit(
        failed, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}, action_contains="/password/reset"
    )
    assert done.request.path == "/", (field_error(done, "code"), field_error(done, "password"))
    assert can_log_in(app, user.national_code, NEW_PASSWORD)


def test_a_verified_code_counts_only_for_its_recovery_and_until_it_expires(app, user):
    other = create_test_user(app, national_code=valid_national_code("001122334"), mobile="+989351112233")
    browser = english_browser(app)
    page = ask_for_code(browser, user.national_code)
    reset(browser, page, last_sms_code(app, user.mobile, "reset"), "abc")
    # A recovery of another account in the same browser starts without a verified code.
    page = ask_for_code(browser, other.national_code)
    assert "code" in find_form(page_text(page), action_contains="/password/reset").fields
    refused = browser.client.post(
        "/password/reset", data=reset_form_values(page, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD)
    )
    assert field_error(refused, "code") and not is_logged_in(browser)
    assert can_log_in(app, other.national_code, other.password)

    # A verified code lapses when the code would have expired.
    third = create_test_user(app, national_code=valid_national_code("002233445"), mobile="+989351112244")
    browser = english_browser(app)
    page = ask_for_code(browser, third.national_code)
    failed = reset(browser, page, last_sms_code(app, third.mobile, "reset"), "abc")
    assert "code" not in find_form(page_text(failed), action_contains="/password/reset").fields
    clock.advance(app.extensions["idp"].config.otp.ttl + 1)
    page = browser.get("/password/reset")
    assert "code" in find_form(page_text(page), action_contains="/password/reset").fields
    refused = browser.client.post(
        "/password/reset", data=reset_form_values(page, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD)
    )
    assert field_error(refused, "code") and not is_logged_in(browser)


# -- recovery does not get past a second factor (issue 19, item 2; ASVS 5.0 section 6.4.3) ------------------

LOA2 = "urn:hoviyat:loa:2"


def csrf_token_of(browser: Browser) -> str:
    return find_form(page_text(browser.get("/password/forgot")), action_contains="/password/forgot").fields[
        "csrf_token"
    ]


def test_a_password_set_by_an_sms_reset_is_not_a_second_factor_in_that_session(app, user, rp_client):
    """The review's attack: with the SIM alone, reset the password, then pass the step-up with that password.
    The ID token must not say loa:2 with amr ["sms", "pwd"]: both came from the SIM."""
    browser = english_browser(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2)
    login_page = browser.authorize(params)
    tx = query_of(login_page.request.url)["tx"]
    page = browser.get(parse_page(page_text(login_page)).links["link-forgot-password"])
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/password/forgot")
    page = reset(browser, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD)
    assert page.status_code == 200 and page.request.path == "/login/second-factor"
    assert 'name="password"' not in page_text(page)  # the password just chosen is not offered

    answer = browser.post(
        f"/login/second-factor?method=pwd&tx={tx}",
        {"csrf_token": csrf_token_of(browser), "tx": tx, "password": NEW_PASSWORD},
    )
    if answer.status_code == 302 and answer.location.startswith(rp_client.redirect_uri):
        token = exchange_code(browser.client, rp_client, query_of(answer.location)["code"], verifier).get_json()
        claims = decode(browser.client, token["id_token"])
        assert claims["acr"] != LOA2, claims["amr"]
    # The session is still one factor: a loa:2 request without interaction is refused.
    _verifier, challenge = pkce_pair()
    silent = authorization_params(rp_client, challenge, acr_values=LOA2, prompt="none")
    assert query_of(browser.client.get("/authorize", query_string=silent).location).get("error") == "login_required"
    # The way on is a new login with the password, then a second factor, offered on the page.
    again = parse_page(page_text(page)).links.get("link-log-in-again")
    assert again and query_of(again).get("tx") == tx
    page = browser.submit(
        browser.get(again), {"national_code": user.national_code, "password": NEW_PASSWORD}, field_name="password"
    )
    page = browser.second_factor_by_sms(page, app, user.mobile)
    if page.status_code == 200 and b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302 and page.location.startswith(rp_client.redirect_uri)
    token = exchange_code(browser.client, rp_client, query_of(page.location)["code"], verifier).get_json()
    claims = decode(browser.client, token["id_token"])
    assert (claims["acr"], claims["amr"]) == (LOA2, ["pwd", "sms"])


def test_with_an_authenticator_app_the_sim_alone_cannot_reset_the_password(app, user):
    owner = english_browser(app)
    password_login(owner, user)
    secret, _codes = enrol_totp(owner)

    attacker = english_browser(app)
    page = ask_for_code(attacker, user.national_code)
    page = reset(attacker, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD)
    assert page.status_code == 200 and page.request.path == "/password/reset/second-factor"
    assert "code" in find_form(page_text(page), action_contains="/password/reset/second-factor").fields
    wrong = f"{(int(totp_code(secret)) + 1) % 1_000_000:06d}"
    refused = attacker.submit(page, {"code": wrong}, action_contains="/password/reset/second-factor")
    assert field_error(refused, "code")
    for skipped in ("/password/reset", "/"):
        attacker.get(skipped)
    assert not is_logged_in(attacker)
    assert audit_events(app, "password.reset") == []
    assert can_log_in(app, user.national_code, user.password)
    assert not can_log_in(app, user.national_code, NEW_PASSWORD)


@pytest.mark.parametrize("second", ["app", "recovery-code"])
def test_with_an_authenticator_app_recovery_asks_for_it_too(app, user, rp_client, second):
    owner = english_browser(app)
    password_login(owner, user)
    secret, codes = enrol_totp(owner)
    clock.advance(30)  # the enrolment code's time step is spent

    browser = english_browser(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    login_page = browser.authorize(params)
    page = browser.get(parse_page(page_text(login_page)).links["link-forgot-password"])
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/password/forgot")
    page = reset(browser, page, last_sms_code(app, user.mobile, "reset"), NEW_PASSWORD)
    assert page.request.path == "/password/reset/second-factor"
    code = totp_code(secret) if second == "app" else codes[0]
    page = browser.submit(page, {"code": code}, action_contains="/password/reset/second-factor")
    if page.status_code == 200 and b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302 and page.location.startswith(rp_client.redirect_uri), field_error(page, "code")
    response = exchange_code(browser.client, rp_client, query_of(page.location)["code"], verifier)
    claims = decode(browser.client, response.get_json()["id_token"])
    assert claims["amr"] == ["sms", "otp"]
    assert claims["acr"] == LOA1  # two things held, nothing known: still one kind of factor
    assert can_log_in(app, user.national_code, NEW_PASSWORD)
    assert [e.user_id for e in audit_events(app, "password.reset")] == [user.id]
