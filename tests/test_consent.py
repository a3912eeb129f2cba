"""The consent page: it names the client and says in plain words what it will receive; a decision is
remembered per user, client and scope set; deny returns access_denied; trusted clients skip it; the form
is protected against cross-site requests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    authorization_params,
    create_test_client,
    create_test_user,
    english_browser,
    exchange_code,
    find_form,
    page_text,
    pkce_pair,
    query_of,
    valid_national_code,
)

# The plain words the English consent page uses for each claim (OpenID Connect Core 5.4 scopes).
LABELS = {
    "profile": ["Your full name", "Your first name", "Your last name", "Your date of birth"],
    "phone": ["Your mobile number"],
    "national_id": ["Your national code"],
    "email": ["Your email address"],
}
RAW_CLAIM_NAMES = ["phone_number", "national_id", "verified_claims", "given_name", "family_name", "birthdate"]


def is_consent_page(response: Any) -> bool:
    return response.status_code == 200 and b'name="decision"' in response.data


def is_login_page(response: Any) -> bool:
    return response.status_code == 200 and b'name="national_code"' in response.data


def to_consent_page(browser: Browser, rp: ClientInfo, user: UserInfo, **extra: str) -> tuple[Any, dict[str, str], str]:
    """Start an authorization in ``browser``, log in if asked; returns (response, params, verifier)."""
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, **extra)
    response = browser.authorize(params)
    if is_login_page(response):
        response = browser.login(response, user)
    return response, params, verifier


def assert_code(response: Any, rp: ClientInfo, issuer: str, state: str) -> str:
    assert response.status_code == 302, (response.status_code, response.get_data(as_text=True)[:1000])
    parts = urlsplit(response.location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == rp.redirect_uri
    query = query_of(response.location)
    assert "error" not in query, query
    assert query["state"] == state
    assert query["iss"] == issuer
    return query["code"]


def assert_error(response: Any, rp: ClientInfo, issuer: str, error: str, state: str) -> None:
    assert response.status_code == 302, (response.status_code, response.get_data(as_text=True)[:1000])
    parts = urlsplit(response.location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == rp.redirect_uri
    query = query_of(response.location)
    assert query.get("error") == error, query
    assert query.get("state") == state
    assert query.get("iss") == issuer
    assert "code" not in query


def silent(browser: Browser, rp: ClientInfo, **extra: str) -> tuple[Any, dict[str, str]]:
    """An authorization with prompt=none: tells, without a page, whether consent is remembered."""
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, prompt="none", **extra)
    return browser.client.get("/authorize?" + urlencode(params)), params


def allow(browser: Browser, rp: ClientInfo, user: UserInfo, issuer: str, **extra: str) -> str:
    page, params, _verifier = to_consent_page(browser, rp, user, **extra)
    assert is_consent_page(page)
    return assert_code(browser.consent(page, "allow"), rp, issuer, params["state"])


def second_user(app: Flask) -> UserInfo:
    return create_test_user(app, national_code=valid_national_code("001234568"), mobile="+989121234568")


# -- what the page shows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "shown", "not_shown"),
    [
        pytest.param(
            "openid phone national_id", ["phone", "national_id"], ["profile", "email"], id="phone+national_id"
        ),
        pytest.param("openid profile", ["profile"], ["phone", "national_id", "email"], id="profile"),
        pytest.param("openid national_id", ["national_id"], ["profile", "phone", "email"], id="national_id"),
    ],
)
def test_consent_page_names_the_client_and_lists_each_claim_in_plain_words(app, user, scope, shown, not_shown):
    rp = create_test_client(app, name="Mellat Insurance")
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp, user, scope=scope)
    assert is_consent_page(page)
    text = page_text(page)
    assert "Mellat Insurance" in text
    for scope_name in shown:
        for label in LABELS[scope_name]:
            assert label in text, label
    for scope_name in not_shown:
        for label in LABELS[scope_name]:
            assert label not in text, label
    for raw in RAW_CLAIM_NAMES:
        assert raw not in text  # plain words, not protocol names
    form = find_form(text, action_contains="/consent")
    assert form.method == "post" and "csrf_token" in form.fields


def test_consent_page_lists_a_claim_asked_for_by_the_claims_parameter(app, user, rp_client):
    browser = english_browser(app)
    claims = json.dumps({"id_token": {"national_id": None}})
    page, _params, _verifier = to_consent_page(browser, rp_client, user, scope="openid", claims=claims)
    assert is_consent_page(page)
    assert "Your national code" in page_text(page)
    assert "Your mobile number" not in page_text(page)


def test_client_name_is_escaped(app, user):
    rp = create_test_client(app, name='<script>alert("x")</script> Shop')
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp, user)
    assert is_consent_page(page)
    assert "<script>alert" not in page_text(page)
    assert "&lt;script&gt;" in page_text(page)


# -- allow, and what is remembered -------------------------------------------------------------------


def test_allow_issues_a_code_that_works(app, issuer, user, rp_client):
    browser = english_browser(app)
    page, params, verifier = to_consent_page(browser, rp_client, user, scope="openid phone")
    code = assert_code(browser.consent(page, "allow"), rp_client, issuer, params["state"])
    response = exchange_code(browser.client, rp_client, code, verifier)
    assert response.status_code == 200
    token = response.get_json()
    assert set(token["scope"].split()) == {"openid", "phone"}
    jwks = browser.client.get("/jwks.json").get_json()
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"]).claims
    assert claims["phone_number"] == user.mobile


def test_consent_is_remembered_for_the_same_and_smaller_scope_sets(app, issuer, user, rp_client):
    browser = english_browser(app)
    allow(browser, rp_client, user, issuer, scope="openid profile phone")
    for scope in ("openid profile phone", "openid phone profile", "openid profile", "openid"):
        _verifier, challenge = pkce_pair()
        params = authorization_params(rp_client, challenge, scope=scope)
        response = browser.client.get("/authorize?" + urlencode(params))  # the first answer is the code
        assert_code(response, rp_client, issuer, params["state"])


def test_a_larger_scope_set_asks_again(app, issuer, user, rp_client):
    browser = english_browser(app)
    allow(browser, rp_client, user, issuer, scope="openid profile")
    page, params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile national_id")
    assert is_consent_page(page)
    assert "Your national code" in page_text(page)
    assert_code(browser.consent(page, "allow"), rp_client, issuer, params["state"])
    # Now both are remembered.
    response, params = silent(browser, rp_client, scope="openid national_id profile")
    assert_code(response, rp_client, issuer, params["state"])


def test_a_claim_beyond_the_remembered_scopes_asks_again(app, issuer, user, rp_client):
    browser = english_browser(app)
    allow(browser, rp_client, user, issuer, scope="openid profile")
    claims = json.dumps({"userinfo": {"phone_number": None}})
    response, params = silent(browser, rp_client, scope="openid profile", claims=claims)
    assert_error(response, rp_client, issuer, "consent_required", params["state"])
    page, _params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile", claims=claims)
    assert is_consent_page(page)
    assert "Your mobile number" in page_text(page)


def test_prompt_consent_asks_again_even_when_remembered(app, issuer, user, rp_client):
    browser = english_browser(app)
    allow(browser, rp_client, user, issuer, scope="openid profile")
    page, params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile", prompt="consent")
    assert is_consent_page(page)
    assert "Your full name" in page_text(page)
    assert_code(browser.consent(page, "allow"), rp_client, issuer, params["state"])


# -- deny -----------------------------------------------------------------------------------------


def test_deny_returns_access_denied_and_remembers_nothing(app, issuer, user, rp_client):
    browser = english_browser(app)
    page, params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile")
    assert is_consent_page(page)
    assert_error(browser.consent(page, "deny"), rp_client, issuer, "access_denied", params["state"])

    response, params = silent(browser, rp_client, scope="openid profile")
    assert_error(response, rp_client, issuer, "consent_required", params["state"])
    page, _params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile")
    assert is_consent_page(page)


def test_deny_of_a_larger_set_keeps_what_was_allowed_before_and_adds_nothing(app, issuer, user, rp_client):
    browser = english_browser(app)
    allow(browser, rp_client, user, issuer, scope="openid profile")
    page, params, _verifier = to_consent_page(browser, rp_client, user, scope="openid profile phone")
    assert_error(browser.consent(page, "deny"), rp_client, issuer, "access_denied", params["state"])
    response, params = silent(browser, rp_client, scope="openid profile phone")
    assert_error(response, rp_client, issuer, "consent_required", params["state"])
    response, params = silent(browser, rp_client, scope="openid profile")
    assert_code(response, rp_client, issuer, params["state"])


def test_a_finished_request_cannot_be_decided_again(app, issuer, user, rp_client):
    browser = english_browser(app)
    page, params, _verifier = to_consent_page(browser, rp_client, user)
    assert_error(browser.consent(page, "deny"), rp_client, issuer, "access_denied", params["state"])
    again = browser.consent(page, "allow")  # the same form, posted once more
    assert not (again.location or "").startswith(rp_client.redirect_uri)
    assert again.status_code == 400


# -- trusted clients, per-client and per-user consent ----------------------------------------------


def test_trusted_client_skips_the_page(app, issuer, user):
    rp = create_test_client(app, name="Hoviyat Portal", trusted=True)
    browser = english_browser(app)
    response, params, _verifier = to_consent_page(browser, rp, user, scope="openid profile phone national_id")
    assert_code(response, rp, issuer, params["state"])


def test_consent_is_per_client(app, issuer, user):
    rp_a = create_test_client(app, name="Client A")
    rp_b = create_test_client(app, name="Client B")
    browser = english_browser(app)
    allow(browser, rp_a, user, issuer, scope="openid profile")

    response, params = silent(browser, rp_b, scope="openid profile")
    assert_error(response, rp_b, issuer, "consent_required", params["state"])
    page, _params, _verifier = to_consent_page(browser, rp_b, user, scope="openid profile")
    assert is_consent_page(page)
    assert "Client B" in page_text(page) and "Client A" not in page_text(page)


def test_consent_is_per_user(app, issuer, user, rp_client):
    allow(english_browser(app), rp_client, user, issuer, scope="openid profile")
    other = second_user(app)
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp_client, other, scope="openid profile")
    assert is_consent_page(page)


# -- the form itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "csrf_token",
    [pytest.param(None, id="missing"), pytest.param("", id="empty"), pytest.param("forged.token", id="forged")],
)
def test_consent_without_a_valid_csrf_token_is_rejected(app, issuer, user, rp_client, csrf_token):
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp_client, user)
    form = find_form(page_text(page), action_contains="/consent")
    data = {"decision": "allow"}
    if csrf_token is not None:
        data["csrf_token"] = csrf_token
    response = browser.client.post(form.action, data=data)
    assert response.status_code == 400
    assert "Location" not in response.headers
    response, params = silent(browser, rp_client)
    assert_error(response, rp_client, issuer, "consent_required", params["state"])


def test_csrf_token_of_another_browser_is_rejected(app, issuer, user, rp_client):
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp_client, user)
    form = find_form(page_text(page), action_contains="/consent")
    attacker = english_browser(app)
    other_page, _p, _v = to_consent_page(attacker, rp_client, second_user(app))
    attacker_token = find_form(page_text(other_page), action_contains="/consent").fields["csrf_token"]
    response = browser.client.post(form.action, data={"decision": "allow", "csrf_token": attacker_token})
    assert response.status_code == 400
    response, params = silent(browser, rp_client)
    assert_error(response, rp_client, issuer, "consent_required", params["state"])


@pytest.mark.parametrize("decision", ["", "maybe", "Allow", "allow deny", None])
def test_invalid_decision_issues_no_code(app, issuer, user, rp_client, decision):
    browser = english_browser(app)
    page, _params, _verifier = to_consent_page(browser, rp_client, user)
    form = find_form(page_text(page), action_contains="/consent")
    data = dict(form.fields)
    if decision is not None:
        data["decision"] = decision
    response = browser.client.post(form.action, data=data)
    assert not (response.location or "").startswith(rp_client.redirect_uri), response.location
    assert response.status_code in (200, 400)
    response, params = silent(browser, rp_client)
    assert_error(response, rp_client, issuer, "consent_required", params["state"])
