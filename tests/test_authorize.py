"""The authorization endpoint: what becomes an error page, what goes back to the client as an error, prompt,
max_age, id_token_hint, login_hint, ui_locales, the claims parameter, the binding of a pending request to
its browser, and the shape of a successful response (RFC 6749 section 4.1, RFC 7636, RFC 9207, OpenID
Connect Core section 3.1.2)."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    authorization_params,
    browser_for,
    create_test_client,
    create_test_user,
    english_browser,
    exchange_code,
    find_form,
    get_code,
    is_logged_in,
    pkce_pair,
    query_of,
    sms_outbox,
    statements_run,
    valid_national_code,
)

LOA1 = "urn:hoviyat:loa:1"
LOA2 = "urn:hoviyat:loa:2"


# -- helpers ----------------------------------------------------------------------------------------


def authorize_url(params: dict[str, str] | list[tuple[str, str]]) -> str:
    return "/authorize?" + urlencode(params)


def is_login_page(response: Any) -> bool:
    return (
        response.status_code == 200 and b'name="national_code"' in response.data and b'name="password"' in response.data
    )


def is_consent_page(response: Any) -> bool:
    return response.status_code == 200 and b'name="decision"' in response.data


def assert_error_page(response: Any) -> None:
    """An error shown to the user at the provider: nothing goes to the client."""
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "http-equiv" not in body.lower()  # no meta refresh to anywhere either
    assert 'name="code"' not in body


def assert_error_redirect(
    response: Any, rp: ClientInfo, issuer: str, error: str | tuple[str, ...], state: str | None
) -> dict[str, str]:
    """An authorization error response (RFC 6749 section 4.1.2.1) with ``iss`` (RFC 9207)."""
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:500])
    location = response.location
    location.encode("ascii")  # a Location header must be ASCII (percent-encoded)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == rp.redirect_uri
    assert not parts.fragment
    query = query_of(location)
    assert query.get("error") in ((error,) if isinstance(error, str) else error), query
    assert query.get("iss") == issuer
    if state is None:
        assert "state" not in query
    else:
        assert query.get("state") == state
    assert "code" not in query
    return query


def assert_code_redirect(response: Any, rp: ClientInfo, issuer: str, state: str) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:500])
    parts = urlsplit(response.location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == rp.redirect_uri
    query = query_of(response.location)
    assert "error" not in query, query
    assert query.get("state") == state
    assert query.get("iss") == issuer
    assert query.get("code")
    return query["code"]


def decode_id_token(client: FlaskClient, id_token: str) -> dict[str, Any]:
    jwks = client.get("/jwks.json").get_json()
    return dict(jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"]).claims)


def tokens_for(client: FlaskClient, rp: ClientInfo, code: str, verifier: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exchange ``code``; return the token response and the verified ID token's claims."""
    response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()
    return token, decode_id_token(client, token["id_token"])


def userinfo(client: FlaskClient, access_token: str) -> dict[str, Any]:
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def sign_in(browser: Browser, rp: ClientInfo, user: UserInfo, **extra: str) -> dict[str, Any]:
    """A whole flow in ``browser`` (login and consent as asked); returns the ID token's claims."""
    code, verifier, _query = get_code(browser, rp, user, **extra)
    return tokens_for(browser.client, rp, code, verifier)[1]


def second_user(app: Flask) -> UserInfo:
    return create_test_user(
        app,
        national_code=valid_national_code("001234568"),
        mobile="+989121234568",
        given_name="مریم",
        family_name="احمدی",
    )


def tx_of(response: Any) -> str:
    """The pending request's id from a redirect to the login or consent page."""
    assert response.status_code in (302, 303), response.status_code
    tx = query_of(response.location).get("tx")
    assert tx, response.location
    return tx


# -- error page: never redirect to an address we cannot trust ----------------------------------------


NEAR_MISSES = [
    "https://rp.example/callback/",
    "https://rp.example/Callback",
    "https://RP.EXAMPLE/callback",
    "https://rp.example/callback?extra=1",
    "http://rp.example/callback",
    "https://rp.example:8443/callback",
    "https://rp.example.evil.example/callback",
    "https://rp.example/callback#fragment",
    "https://rp.example/callback/../callback",
    "https://evil.example/callback",
    " https://rp.example/callback",
]


def _page_error_cases() -> list[Any]:
    cases = [
        pytest.param(lambda p: p | {"client_id": "no-such-client"}, id="unknown-client_id"),
        pytest.param(lambda p: {k: v for k, v in p.items() if k != "client_id"}, id="missing-client_id"),
        pytest.param(lambda p: p | {"client_id": ""}, id="empty-client_id"),
        pytest.param(lambda p: {k: v for k, v in p.items() if k != "redirect_uri"}, id="missing-redirect_uri"),
        pytest.param(lambda p: [*p.items(), ("client_id", p["client_id"])], id="client_id-repeated-same"),
        pytest.param(lambda p: [*p.items(), ("client_id", "other")], id="client_id-repeated-different"),
        pytest.param(lambda p: [*p.items(), ("redirect_uri", p["redirect_uri"])], id="redirect_uri-repeated"),
        pytest.param(
            lambda p: [*p.items(), ("redirect_uri", "https://evil.example/cb")], id="redirect_uri-repeated-evil"
        ),
    ]
    for uri in NEAR_MISSES:
        cases.append(pytest.param(lambda p, uri=uri: p | {"redirect_uri": uri}, id=f"unregistered:{uri.strip()}"))
    return cases


@pytest.mark.parametrize("mutate", _page_error_cases())
def test_untrusted_client_or_redirect_uri_gets_an_error_page(app, client, rp_client, mutate):
    _verifier, challenge = pkce_pair()
    params = mutate(authorization_params(rp_client, challenge))
    response = client.get(authorize_url(params))
    assert_error_page(response)
    # Also by POST (OpenID Connect Core 3.1.2.1).
    items = params if isinstance(params, list) else list(params.items())
    response = client.post("/authorize", data=urlencode(items), content_type="application/x-www-form-urlencoded")
    assert_error_page(response)


def test_error_page_even_when_the_rest_of_the_request_is_also_wrong(app, client, rp_client):
    """An unregistered redirect_uri wins over every other error: no redirect carries the error there."""
    params = {
        "response_type": "token",
        "client_id": rp_client.client_id,
        "redirect_uri": "https://evil.example/callback",
        "scope": "email",
        "state": "s",
        "prompt": "none",
    }
    assert_error_page(client.get(authorize_url(params)))


def test_client_without_the_code_grant_gets_an_error_page(app, client):
    machine = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    _verifier, challenge = pkce_pair()
    params = authorization_params(machine, challenge) | {"redirect_uri": "https://rp.example/callback"}
    assert_error_page(client.get(authorize_url(params)))


# -- error redirect: the client and redirect_uri are good, the rest is not -------------------------------


def _foreign_id_token(issuer: str, rp: ClientInfo) -> str:
    key = ECKey.generate_key("P-256", private=True)
    now = int(time.time())
    claims = {"iss": issuer, "sub": "someone", "aud": rp.client_id, "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "ES256", "kid": "not-ours"}, claims, key, algorithms=["ES256"])


DROP = object()
FOREIGN_HINT = object()

REDIRECT_ERROR_CASES = [
    pytest.param({"code_challenge": DROP, "code_challenge_method": DROP}, "invalid_request", id="no-pkce"),
    pytest.param({"code_challenge": DROP}, "invalid_request", id="no-code_challenge"),
    pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="pkce-plain"),
    pytest.param({"code_challenge_method": DROP}, "invalid_request", id="pkce-method-missing"),
    pytest.param({"code_challenge_method": "S512"}, "invalid_request", id="pkce-method-unknown"),
    pytest.param({"response_type": "token"}, "unsupported_response_type", id="response_type-token"),
    pytest.param({"response_type": "id_token"}, "unsupported_response_type", id="response_type-id_token"),
    pytest.param({"response_type": "code id_token"}, "unsupported_response_type", id="response_type-code-id_token"),
    pytest.param({"response_type": "کد"}, "unsupported_response_type", id="response_type-non-ascii"),
    pytest.param({"response_type": "code\u00e9"}, "unsupported_response_type", id="response_type-latin1"),
    pytest.param({"response_type": DROP}, ("invalid_request", "unsupported_response_type"), id="response_type-missing"),
    pytest.param({"scope": "openid email"}, "invalid_scope", id="scope-not-registered"),
    pytest.param({"scope": "openid admin"}, "invalid_scope", id="scope-unknown"),
    pytest.param({"scope": "profile"}, "invalid_scope", id="scope-without-openid"),
    pytest.param({"request": "eyJhbGciOiJub25lIn0.e30."}, "invalid_request_object", id="request"),
    pytest.param({"request_uri": "https://rp.example/request.jwt"}, "request_uri_not_supported", id="request_uri"),
    pytest.param({"registration": "{}"}, "registration_not_supported", id="registration"),
    pytest.param({"response_mode": "fragment"}, "invalid_request", id="response_mode-fragment"),
    pytest.param({"response_mode": "form_post"}, "invalid_request", id="response_mode-form_post"),
    pytest.param({"max_age": "abc"}, "invalid_request", id="max_age-letters"),
    pytest.param({"max_age": "-5"}, "invalid_request", id="max_age-negative"),
    pytest.param({"max_age": "1.5"}, "invalid_request", id="max_age-fraction"),
    pytest.param({"max_age": "۵"}, "invalid_request", id="max_age-persian-digit"),
    pytest.param({"max_age": "9" * 40}, "invalid_request", id="max_age-huge"),
    pytest.param({"claims": "{not json"}, "invalid_request", id="claims-not-json"),
    pytest.param({"claims": "[1, 2]"}, "invalid_request", id="claims-array"),
    pytest.param({"claims": '{"id_token": "national_id"}'}, "invalid_request", id="claims-member-not-object"),
    pytest.param({"claims": '{"userinfo": {"name": 5}}'}, "invalid_request", id="claims-claim-not-object"),
    pytest.param(
        {"claims": '{"id_token": {"acr": {"essential": true, "values": 5}}}'},
        "invalid_request",
        id="claims-values-not-array",
    ),
    pytest.param(
        {"claims": '{"id_token": {"acr": {"essential": "yes", "values": ["urn:hoviyat:loa:2"]}}}'},
        "invalid_request",
        id="claims-essential-not-boolean",
    ),
    pytest.param({"prompt": "none login"}, "invalid_request", id="prompt-none-login"),
    pytest.param({"prompt": "consent none"}, "invalid_request", id="prompt-consent-none"),
    pytest.param({"id_token_hint": "not-a-token"}, "invalid_request", id="id_token_hint-garbage"),
    pytest.param({"id_token_hint": "a.b.c"}, "invalid_request", id="id_token_hint-three-parts"),
    pytest.param({"id_token_hint": FOREIGN_HINT}, "invalid_request", id="id_token_hint-foreign-key"),
    pytest.param({"state": DROP, "response_type": "token"}, "unsupported_response_type", id="no-state"),
]


@pytest.mark.parametrize(("changes", "error"), REDIRECT_ERROR_CASES)
def test_bad_request_is_sent_back_to_the_client_with_state_and_iss(app, client, issuer, rp_client, changes, error):
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    for name, value in changes.items():
        if value is DROP:
            params.pop(name)
        elif value is FOREIGN_HINT:
            params[name] = _foreign_id_token(issuer, rp_client)
        else:
            params[name] = value
    response = client.get(authorize_url(params))
    query = assert_error_redirect(response, rp_client, issuer, error, params.get("state"))
    if "error_description" in query:
        assert query["error_description"].isascii()


def test_errors_are_redirected_for_a_signed_in_user_too(app, issuer, user, rp_client):
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    _verifier, challenge = pkce_pair()
    for changes, error in (
        ({"scope": "openid email"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ):
        params = authorization_params(rp_client, challenge) | changes
        response = browser.client.get(authorize_url(params))
        assert_error_redirect(response, rp_client, issuer, error, params["state"])


def test_access_token_is_not_an_id_token_hint(app, client, issuer, user, rp_client):
    browser = browser_for(app)
    code, verifier, _ = get_code(browser, rp_client, user)
    token, _claims = tokens_for(browser.client, rp_client, code, verifier)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, id_token_hint=token["access_token"])
    assert_error_redirect(client.get(authorize_url(params)), rp_client, issuer, "invalid_request", params["state"])


# -- prompt=none ------------------------------------------------------------------------------------


def test_prompt_none_without_session_is_login_required(app, client, issuer, rp_client):
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, prompt="none")
    response = client.get(authorize_url(params))
    assert_error_redirect(response, rp_client, issuer, "login_required", params["state"])


def test_prompt_none_with_session_but_no_consent_is_consent_required(app, issuer, user, rp_client):
    browser = browser_for(app)
    _verifier, challenge = pkce_pair()
    page = browser.login(browser.authorize(authorization_params(rp_client, challenge)), user)
    assert is_consent_page(page)  # logged in, consent not given
    params = authorization_params(rp_client, challenge, prompt="none")
    response = browser.client.get(authorize_url(params))
    assert_error_redirect(response, rp_client, issuer, "consent_required", params["state"])


def test_prompt_none_with_session_and_consent_issues_a_code_without_a_page(app, issuer, user, rp_client):
    browser = browser_for(app)
    first = sign_in(browser, rp_client, user)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, prompt="none")
    response = browser.client.get(authorize_url(params))  # no redirect followed: the very first answer
    code = assert_code_redirect(response, rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["sub"] == first["sub"]
    assert claims["auth_time"] == first["auth_time"]  # no new login
    assert claims["nonce"] == params["nonce"]


# -- prompt=login, max_age ---------------------------------------------------------------------------


def test_prompt_login_asks_for_the_password_again(app, issuer, user, rp_client):
    browser = browser_for(app)
    first = sign_in(browser, rp_client, user)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, prompt="login")
    page = browser.authorize(params)
    assert is_login_page(page)
    response = browser.login(page, user)
    code = assert_code_redirect(response, rp_client, issuer, params["state"])  # consent is remembered
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["sub"] == first["sub"]
    assert claims["auth_time"] >= first["auth_time"]
    assert claims["sid"] != first["sid"]  # a new login session


def test_max_age_zero_asks_for_the_password_again_and_no_second_factor(app, issuer, user, rp_client):
    """Core 3.1.2.1: max_age=0 is equivalent to prompt=login: the user authenticates again with what the requested
    level needs (loa:1: the password), not one factor more."""
    browser = browser_for(app)
    first = sign_in(browser, rp_client, user)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, max_age="0")
    page = browser.authorize(params)
    assert is_login_page(page)
    code = assert_code_redirect(browser.login(page, user), rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["sid"] != first["sid"]
    assert claims["acr"] == LOA1 and claims["amr"] == ["pwd"]
    assert sms_outbox(app) == []  # no text message was sent


def test_max_age_zero_with_loa2_asks_for_the_password_and_a_second_factor(app, issuer, user, rp_client):
    """A relying party that asks for two factors gets them again after max_age: the new login has one."""
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, max_age="0", acr_values=LOA2)
    page = browser.authorize(params)
    assert is_login_page(page)
    second = browser.login(page, user)
    assert "/login/second-factor" in second.request.path
    code = assert_code_redirect(
        browser.second_factor_by_sms(second, app, user.mobile), rp_client, issuer, params["state"]
    )
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["acr"] == LOA2 and claims["amr"] == ["pwd", "sms"]


def test_generous_max_age_keeps_the_session_and_reports_auth_time(app, issuer, user, rp_client):
    browser = browser_for(app)
    first = sign_in(browser, rp_client, user)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, max_age="3600")
    code = assert_code_redirect(browser.client.get(authorize_url(params)), rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["auth_time"] == first["auth_time"]  # Core 3.1.2.1: auth_time is required with max_age
    assert claims["sid"] == first["sid"]


@pytest.mark.slow
def test_max_age_passed_forces_a_new_login_with_a_later_auth_time(app, issuer, user, rp_client):
    """Issue 19's correction of max_age: after it has passed, a password login and a code; no second factor."""
    browser = browser_for(app)
    first = sign_in(browser, rp_client, user)
    time.sleep(2)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, max_age="1")
    page = browser.authorize(params)
    assert is_login_page(page)
    code = assert_code_redirect(browser.login(page, user), rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["auth_time"] > first["auth_time"]
    assert claims["sub"] == first["sub"]
    assert claims["acr"] == LOA1 and claims["amr"] == ["pwd"]


@pytest.mark.slow
def test_max_age_passed_with_prompt_none_is_login_required(app, issuer, user, rp_client):
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    time.sleep(1.1)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, max_age="1", prompt="none")
    response = browser.client.get(authorize_url(params))
    assert_error_redirect(response, rp_client, issuer, "login_required", params["state"])


# -- id_token_hint ----------------------------------------------------------------------------------


@pytest.fixture
def hint_of_another_user(app, rp_client) -> tuple[str, dict[str, Any]]:
    """An ID token issued to rp_client for a second account, from another browser."""
    other = second_user(app)
    browser = browser_for(app)
    code, verifier, _ = get_code(browser, rp_client, other)
    token, claims = tokens_for(browser.client, rp_client, code, verifier)
    return token["id_token"], claims


def test_id_token_hint_of_another_user_forces_a_login(app, issuer, user, rp_client, hint_of_another_user):
    hint, other_claims = hint_of_another_user
    browser = browser_for(app)
    mine = sign_in(browser, rp_client, user)
    assert mine["sub"] != other_claims["sub"]

    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, id_token_hint=hint)
    page = browser.authorize(params)
    assert is_login_page(page)
    # Logging in as the hinted account finishes the request for that account.
    other = UserInfo("", valid_national_code("001234568"), user.password)
    response = browser.login(page, other)
    code = assert_code_redirect(response, rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["sub"] == other_claims["sub"]


def test_id_token_hint_of_another_user_with_prompt_none_is_login_required(
    app, issuer, user, rp_client, hint_of_another_user
):
    hint, _ = hint_of_another_user
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, id_token_hint=hint, prompt="none")
    response = browser.client.get(authorize_url(params))
    assert_error_redirect(response, rp_client, issuer, "login_required", params["state"])


def test_id_token_hint_of_the_signed_in_user_needs_no_login(app, issuer, user, rp_client):
    browser = browser_for(app)
    code, verifier, _ = get_code(browser, rp_client, user)
    token, first = tokens_for(browser.client, rp_client, code, verifier)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, id_token_hint=token["id_token"], prompt="none")
    code = assert_code_redirect(browser.client.get(authorize_url(params)), rp_client, issuer, params["state"])
    assert tokens_for(browser.client, rp_client, code, verifier)[1]["sub"] == first["sub"]


# -- login_hint, ui_locales ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        pytest.param("0012345679", "0012345679", id="ascii"),
        pytest.param("۰۰۱۲۳۴۵۶۷۹", "0012345679", id="persian-digits"),
        pytest.param("٠٠١٢٣٤٥٦٧٩", "0012345679", id="arabic-indic-digits"),
        pytest.param("someone@example.com", "", id="unreadable-is-ignored"),
    ],
)
def test_login_hint_fills_in_the_national_code(app, rp_client, hint, expected):
    browser = browser_for(app)
    _verifier, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge, login_hint=hint))
    assert is_login_page(page)
    form = find_form(page.get_data(as_text=True), field_name="national_code")
    assert form.fields["national_code"] == expected


def test_login_hint_lets_the_user_log_in_with_only_the_password(app, user, rp_client):
    browser = browser_for(app)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, login_hint="۰۰۱۲۳۴۵۶۷۹")
    page = browser.authorize(params)
    page = browser.submit(page, {"password": user.password}, field_name="national_code")
    assert is_consent_page(page)


HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)


def html_lang_dir(response: Any) -> tuple[str, str]:
    tag = HTML_TAG.search(response.get_data(as_text=True))
    assert tag, "no <html> element"
    lang = re.search(r'\blang="([^"]*)"', tag.group(0))
    direction = re.search(r'\bdir="([^"]*)"', tag.group(0))
    return (lang.group(1) if lang else ""), (direction.group(1) if direction else "")


@pytest.mark.parametrize(
    ("ui_locales", "accept_language", "lang", "direction"),
    [
        pytest.param("en", "fa", "en", "ltr", id="en"),
        pytest.param("fa", "en", "fa", "rtl", id="fa"),
        pytest.param("fa-IR", "en", "fa", "rtl", id="fa-IR"),
        pytest.param("de en-US fa", "fa", "en", "ltr", id="first-supported"),
    ],
)
def test_ui_locales_chooses_the_language_of_the_login_page(
    app, rp_client, ui_locales, accept_language, lang, direction
):
    browser = browser_for(app, language=accept_language)
    _verifier, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge, ui_locales=ui_locales))
    assert is_login_page(page)
    assert html_lang_dir(page) == (lang, direction)
    if lang == "en":
        assert "Log in" in page.get_data(as_text=True)


def test_unsupported_ui_locales_falls_back(app, rp_client):
    browser = english_browser(app)
    _verifier, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge, ui_locales="de zh"))
    assert is_login_page(page)
    assert html_lang_dir(page) == ("en", "ltr")


# -- unknown parameters ------------------------------------------------------------------------------


def test_unknown_parameters_are_ignored(app, user, rp_client):
    browser = browser_for(app)
    extra = {"foo": "bar", "x-vendor": "۱۲۳", "display": "page", "empty": "", "claims_locales": "fa"}
    code, verifier, _query = get_code(browser, rp_client, user, **extra)
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["aud"] == rp_client.client_id


def test_acr_values_loa2_asks_for_a_second_factor(app, issuer, user, rp_client):
    browser = browser_for(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2)
    page = browser.login(browser.authorize(params), user)
    assert "/login/second-factor" in page.request.path
    page = browser.second_factor_by_sms(page, app, user.mobile)
    code = assert_code_redirect(browser.consent(page), rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"] == ["pwd", "sms"]


@pytest.mark.parametrize(
    "acr_values",
    [LOA1, f"{LOA1} {LOA2}", "urn:other:gold", f"urn:other:gold {LOA1}"],
    ids=["loa1", "loa1-first", "unknown", "unknown-then-loa1"],
)
def test_acr_values_preferring_one_factor_need_no_second_factor(app, user, rp_client, acr_values):
    browser = browser_for(app)
    claims = sign_in(browser, rp_client, user, acr_values=acr_values)
    assert claims["acr"] == LOA1
    assert claims["amr"] == ["pwd"]


def test_a_session_with_two_factors_is_not_asked_again(app, issuer, user, rp_client):
    browser = browser_for(app)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2)
    page = browser.second_factor_by_sms(browser.login(browser.authorize(params), user), app, user.mobile)
    assert_code_redirect(browser.consent(page), rp_client, issuer, params["state"])
    verifier, challenge = pkce_pair()
    again = authorization_params(rp_client, challenge, acr_values=LOA2, prompt="none")
    code = assert_code_redirect(browser.client.get(authorize_url(again)), rp_client, issuer, again["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["acr"] == LOA2


def test_prompt_none_with_loa2_and_a_one_factor_session_is_login_required(app, issuer, user, rp_client):
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values=LOA2, prompt="none")
    assert_error_redirect(
        browser.client.get(authorize_url(params)), rp_client, issuer, "login_required", params["state"]
    )


# -- the claims parameter ----------------------------------------------------------------------------


def test_claims_parameter_releases_national_id_in_the_id_token(app, user, rp_client):
    browser = browser_for(app)
    request = {"id_token": {"national_id": None}}
    code, verifier, _ = get_code(browser, rp_client, user, scope="openid", claims=json.dumps(request))
    token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["national_id"] == user.national_code
    assert "given_name" not in claims and "phone_number" not in claims  # nothing else came with it
    assert "national_id" not in userinfo(browser.client, token["access_token"])  # asked for the ID token only


def test_claims_parameter_cannot_exceed_the_registration(app, user):
    rp = create_test_client(app, name="Small Shop", scope="openid profile")
    browser = browser_for(app)
    request = {"id_token": {"national_id": None}, "userinfo": {"national_id": None, "phone_number": None}}
    code, verifier, _ = get_code(browser, rp, user, scope="openid", claims=json.dumps(request))
    token, claims = tokens_for(browser.client, rp, code, verifier)
    assert "national_id" not in claims
    assert "verified_claims" not in claims
    info = userinfo(browser.client, token["access_token"])
    assert "national_id" not in info and "phone_number" not in info


def test_claims_parameter_releases_phone_number_at_userinfo(app, user, rp_client):
    browser = browser_for(app)
    request = {"userinfo": {"phone_number": None}}
    code, verifier, _ = get_code(browser, rp_client, user, scope="openid", claims=json.dumps(request))
    token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert userinfo(browser.client, token["access_token"])["phone_number"] == user.mobile
    assert "phone_number" not in claims


@pytest.mark.parametrize(
    "acr",
    [
        pytest.param({"essential": True, "values": ["urn:other:gold"]}, id="values"),
        pytest.param({"essential": True, "value": "urn:other:gold"}, id="value"),
    ],
)
def test_essential_acr_that_cannot_be_met(app, client, issuer, rp_client, acr):
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, claims=json.dumps({"id_token": {"acr": acr}}))
    response = client.get(authorize_url(params))
    assert_error_redirect(response, rp_client, issuer, "unmet_authentication_requirements", params["state"])


@pytest.mark.parametrize(
    ("acr", "expected"),
    [
        pytest.param({"essential": True, "values": [LOA1, LOA2]}, LOA1, id="essential-either"),
        pytest.param({"essential": True, "values": [LOA2]}, LOA2, id="essential-loa2"),
        pytest.param({"essential": True, "value": LOA2}, LOA2, id="essential-loa2-value"),
        pytest.param({"values": [LOA2]}, LOA2, id="voluntary-loa2"),
        pytest.param(None, LOA1, id="null"),
    ],
)
def test_acr_request_that_can_be_met(app, issuer, user, rp_client, acr, expected):
    browser = browser_for(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, claims=json.dumps({"id_token": {"acr": acr}}))
    page = browser.login(browser.authorize(params), user)
    if expected == LOA2:
        page = browser.second_factor_by_sms(page, app, user.mobile)
    code = assert_code_redirect(browser.consent(page), rp_client, issuer, params["state"])
    _token, claims = tokens_for(browser.client, rp_client, code, verifier)
    assert claims["acr"] == expected


# -- the pending request belongs to the browser that started it ----------------------------------------


def test_pending_request_cannot_be_resumed_from_another_browser(app, issuer, user, rp_client):
    victim = browser_for(app)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    tx = tx_of(victim.client.get(authorize_url(params)))

    other = app.test_client()
    assert_error_page(other.get(f"/authorize/resume?tx={tx}"))
    assert_error_page(other.get(f"/login?tx={tx}"))
    assert_error_page(other.get(f"/consent?tx={tx}"))

    # Logging in there with that request's id gives no code either ...
    other_browser = Browser(other, issuer)
    response = other_browser.submit(
        other_browser.get("/login"),
        {"national_code": user.national_code, "password": user.password, "tx": tx},
        field_name="national_code",
    )
    assert not (response.location or "").startswith(rp_client.redirect_uri)
    # ... nor does a browser where the same user is logged in.
    home = other_browser.login(other_browser.get("/login"), user)
    assert home.status_code == 200 and b'name="password"' not in home.data
    assert_error_page(other.get(f"/authorize/resume?tx={tx}"))
    assert_error_page(other.get(f"/consent?tx={tx}"))

    # The browser that started it can still finish it.
    page = victim.login(victim.get(f"/login?tx={tx}"), user)
    response = victim.consent(page)
    assert_code_redirect(response, rp_client, issuer, params["state"])


@pytest.mark.parametrize("tx", ["", "no-such-request", "x" * 200])
def test_unknown_pending_request_is_an_error_page(app, client, tx):
    assert_error_page(client.get(f"/authorize/resume?tx={tx}"))
    assert_error_page(client.get(f"/consent?tx={tx}"))


# -- a successful response --------------------------------------------------------------------------


def test_successful_response_has_code_state_and_iss_and_the_code_works_once(app, issuer, user, rp_client):
    browser = browser_for(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    response = browser.consent(browser.login(browser.authorize(params), user))
    code = assert_code_redirect(response, rp_client, issuer, params["state"])
    assert set(query_of(response.location)) == {"code", "state", "iss"}
    assert not urlsplit(response.location).fragment

    first = exchange_code(browser.client, rp_client, code, verifier)
    assert first.status_code == 200
    claims = decode_id_token(browser.client, first.get_json()["id_token"])
    assert claims["iss"] == issuer and claims["aud"] == rp_client.client_id and claims["nonce"] == params["nonce"]

    again = exchange_code(browser.client, rp_client, code, verifier)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"


def test_successful_response_without_state_has_no_state(app, user, rp_client):
    browser = browser_for(app)
    sign_in(browser, rp_client, user)
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    params.pop("state")
    response = browser.client.get(authorize_url(params))
    assert response.status_code == 302
    assert set(query_of(response.location)) == {"code", "iss"}


def test_authorization_request_by_post(app, issuer, user, rp_client):
    browser = browser_for(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge)
    page = browser.post("/authorize", params)
    assert is_login_page(page)
    response = browser.consent(browser.login(page, user))
    code = assert_code_redirect(response, rp_client, issuer, params["state"])
    tokens_for(browser.client, rp_client, code, verifier)


def test_code_is_bound_to_its_pkce_challenge(app, user, rp_client):
    browser = browser_for(app)
    code, _verifier, _ = get_code(browser, rp_client, user)
    other_verifier, _ = pkce_pair()
    response = exchange_code(browser.client, rp_client, code, other_verifier)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_a_password_login_reads_the_account_once_and_nothing_after_its_commit(app, client, issuer, user, rp_client):
    """Guards the benchmark target "whole code flow with a password" (issue 20). The login POST of every code flow:
    the account read, the session and its audit row written in one transaction, and nothing read back after the
    commit (reading the new session's id afterwards cost a second transaction)."""
    browser = Browser(client, issuer)
    _verifier, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge))
    assert b'name="national_code"' in page.data
    form = find_form(page.get_data(as_text=True), field_name="national_code")
    values = {**dict(form.fields), "national_code": user.national_code, "password": user.password}
    with statements_run(app) as log:
        response = client.post(form.action, data=values)  # the POST alone, not the redirects it starts
    seen = log.kinds
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    assert seen[-1] == "COMMIT", seen
    assert seen.count("SELECT") == 1 and seen.count("COMMIT") == 1, seen
    assert sorted(kind for kind in seen if kind == "INSERT") == ["INSERT", "INSERT"], seen
    assert is_logged_in(browser)


def test_resuming_after_login_reads_the_session_and_consent_outside_a_transaction(app, client, issuer, user):
    """Guards the benchmark target "whole code flow with a password" (issue 20). The redirect back to the
    authorization endpoint after every login reads the login session and the consent and writes nothing: on
    PostgreSQL both reads run in autocommit, with no BEGIN before them and no ROLLBACK after (two round trips of
    every code flow)."""
    rp = create_test_client(app)
    get_code(Browser(client, issuer), rp, user)  # logs in and consents once
    browser = Browser(client, issuer)
    _verifier, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp, challenge, prompt="login"))
    form = find_form(page.get_data(as_text=True), field_name="national_code")
    values = {**dict(form.fields), "national_code": user.national_code, "password": user.password}
    logged_in = client.post(form.action, data=values)
    assert logged_in.status_code in (302, 303) and "/authorize/resume" in logged_in.location
    with statements_run(app) as log:
        response = client.get(logged_in.location)
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri), response.location
    assert "code=" in response.location
    assert log.statements == ["SELECT", "SELECT"], log.entries  # the session, the consent
    if log.dialect == "postgresql":
        assert all(log.autocommit), log.entries  # psycopg sends no BEGIN, so no ROLLBACK either
