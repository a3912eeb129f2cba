"""A user on a phone, in a real browser (Chromium through Playwright), sent by a relying party.

Each test starts at the authorization endpoint, goes through the hosted pages in Persian (right to left)
at 360 CSS pixels, and ends back at the relying party with a code, which is exchanged for tokens over
HTTP; the ID token is verified against the provider's JWKS. At every step the page is photographed into
test-artifacts/browser/<test>/ and checked: the language and direction, no sideways scrolling, code fields
that phones can fill from the SMS, and error messages tied to the field they are about.

The relying party has no web app: its redirect URI (https://rp.example/callback) cannot load. The code is
read from the browser's request to it. (``page.route`` cannot answer that request instead: the provider
reaches the redirect URI by a redirect, and Playwright does not hand redirected requests to route
handlers, so the browser goes on to a DNS failure for rp.example, which these tests ignore.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers import (
    REDIRECT_URI,
    ClientInfo,
    add_registry_person,
    authorization_params,
    create_test_client,
    create_test_user,
    last_sms_code,
    pkce_pair,
    query_of,
    valid_national_code,
)

pytestmark = pytest.mark.browser

AT_RP = re.compile(r"^https://rp\.example/")
PHONE_WIDTH = 360
LOA1 = "urn:hoviyat:loa:1"
LOA2 = "urn:hoviyat:loa:2"
ARABIC_SCRIPT = re.compile(r"[\u0600-\u06FF]")


class Phone:
    """The page of a phone's browser, with the checks every step of a flow gets."""

    def __init__(self, page: Any, folder: Path, issuer: str, locale: str = "fa") -> None:
        self.page = page
        self.folder = folder
        self.issuer = issuer
        self.locale = locale
        self.shots = 0

    # -- moving around ---------------------------------------------------------------------------------

    def open(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None and response.ok, f"{url} -> {response.status if response else None}"

    def tap(self, selector: str) -> None:
        """Tap a link or button and wait for the page it leads to."""
        with self.page.expect_navigation():
            self.page.locator(selector).tap()

    def submit(self, form_action: str) -> None:
        """Tap the primary button of the form whose action contains ``form_action``."""
        self.tap(f'form[action*="{form_action}"] button[type="submit"].primary')

    def allow_and_return(self) -> dict[str, str]:
        """On the consent page, tap "allow"; returns the query of the request the browser makes to the RP."""
        with self.page.expect_request(lambda request: AT_RP.match(request.url) is not None) as sent:
            self.page.locator('button[name="decision"][value="allow"]').tap()
        request = sent.value
        assert request.is_navigation_request() and request.method == "GET"
        assert request.url.startswith(REDIRECT_URI + "?"), request.url
        return query_of(request.url)

    # -- checks ----------------------------------------------------------------------------------------

    def step(self, name: str, path: str) -> None:
        """Checks every page of a flow gets, then a full-page screenshot <nn>-<name>.png."""
        page = self.page
        page.wait_for_load_state("load")
        self.shots += 1
        page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)
        assert page.url.startswith(self.issuer), f"{name}: left the provider for {page.url}"
        assert urlsplit(page.url).path == path, f"{name}: expected {path}, at {page.url}"
        expected_dir = "rtl" if self.locale == "fa" else "ltr"
        html = page.locator("html")
        assert (html.get_attribute("lang"), html.get_attribute("dir")) == (self.locale, expected_dir), name
        assert page.evaluate("getComputedStyle(document.body).direction") == expected_dir, name
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= PHONE_WIDTH + 1, f"{name}: the page scrolls sideways ({scroll_width}px wide)"

    def assert_code_field(self) -> None:
        """Phones offer the texted code above the keyboard, and a digit keyboard, only with these."""
        code = self.page.locator('input[name="code"]')
        assert code.count() == 1
        assert code.get_attribute("autocomplete") == "one-time-code"
        assert code.get_attribute("inputmode") == "numeric"

    def assert_error_linked(self, field_name: str) -> str:
        """The field is marked invalid and names, in aria-describedby, a visible error message; returns it."""
        field = self.page.locator(f'[name="{field_name}"]:not([type="hidden"])')
        assert field.count() == 1
        assert field.get_attribute("aria-invalid") == "true", f"{field_name} is not marked invalid"
        described_by = (field.get_attribute("aria-describedby") or "").split()
        messages = [
            self.page.locator(f'[id="{element_id}"]').inner_text().strip()
            for element_id in described_by
            if self.page.locator(f'[id="{element_id}"].error').count() == 1
            and self.page.locator(f'[id="{element_id}"]').is_visible()
        ]
        assert messages and all(messages), (
            f"no visible error message among aria-describedby={described_by} of {field_name}"
        )
        return messages[0]


@pytest.fixture
def phone(phone_page: Any, artifacts_dir: Path, live_server: str) -> Phone:
    return Phone(phone_page, artifacts_dir, live_server)


# -- the relying party's side ---------------------------------------------------------------------------


def start(app: Flask, **extra: str) -> tuple[ClientInfo, str, dict[str, str]]:
    """A relying party and its authorization request: (client, PKCE verifier, request parameters)."""
    rp = create_test_client(app)
    verifier, challenge = pkce_pair()
    return rp, verifier, authorization_params(rp, challenge, **extra)


def authorize_url(issuer: str, params: dict[str, str]) -> str:
    return f"{issuer}/authorize?{urlencode(params)}"


def redeem(issuer: str, rp: ClientInfo, params: dict[str, str], query: dict[str, str], verifier: str) -> dict:
    """Check the authorization response, exchange its code and verify the ID token; returns its claims."""
    assert "error" not in query, query
    assert query.get("state") == params["state"]
    assert query.get("iss") == issuer
    response = requests.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": rp.redirect_uri,
            "code_verifier": verifier,
        },
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    id_token = response.json()["id_token"]
    jwks = requests.get(f"{issuer}/jwks.json", timeout=10).json()
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": rp.client_id},
        nonce={"essential": True, "value": params["nonce"]},
        exp={"essential": True},
    ).validate(decoded.claims)
    return dict(decoded.claims)


def wrong_code(code: str) -> str:
    """A six-digit code that is not ``code``."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


def fill_all(phone: Phone, values: dict[str, str], typed: Callable[[str], bool] = lambda name: False) -> None:
    for name, value in values.items():
        field = phone.page.locator(f'[name="{name}"]:not([type="hidden"])')
        if typed(name):
            field.fill("")
            field.press_sequentially(value)
        else:
            field.fill(value)


# -- the flows ------------------------------------------------------------------------------------------


def test_registration_from_a_relying_party(app: Flask, phone: Phone) -> None:
    issuer = phone.issuer
    national_code = valid_national_code("274011530")
    add_registry_person(app, national_code, "1995-05-10", ["+989131234567"], given_name="مریم", family_name="احمدی")
    rp, verifier, params = start(app, scope="openid profile national_id")

    phone.open(authorize_url(issuer, params))
    phone.step("login", "/login")
    phone.tap("#link-register")
    phone.step("register-mobile", "/register")

    mobile = phone.page.locator('input[name="mobile"]')
    mobile.press_sequentially("۰۹۱۳۱۲۳۴۵۶۷")  # typed on a Persian keyboard
    assert mobile.input_value() == "۰۹۱۳۱۲۳۴۵۶۷"
    phone.submit("/register")
    phone.step("register-details", "/register/details")
    phone.assert_code_field()

    code = last_sms_code(app, "+989131234567", "register")
    details = {
        "national_code": national_code,
        "birth_day": "۲۰",  # 20 Ordibehesht 1374 = 10 May 1995, in Persian digits
        "birth_month": "۲",
        "birth_year": "۱۳۷۴",
        "password": "Kuh-e Damavand 5610",
        "password_confirm": "Kuh-e Damavand 5610",
    }
    fill_all(phone, {**details, "code": wrong_code(code)})
    phone.submit("/register/details")
    phone.step("register-details-wrong-code", "/register/details")
    phone.assert_error_linked("code")
    phone.assert_code_field()

    fill_all(phone, {**details, "code": code})
    phone.submit("/register/details")
    phone.step("consent", "/consent")

    claims = redeem(issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["national_id"] == national_code
    assert (claims["given_name"], claims["family_name"]) == ("مریم", "احمدی")
    assert claims["birthdate"] == "1995-05-10"
    assert claims["verified_claims"]["claims"]["national_id"] == national_code
    assert claims["amr"] == ["sms"]


def test_password_login(app: Flask, phone: Phone) -> None:
    issuer = phone.issuer
    user = create_test_user(app)
    rp, verifier, params = start(app)

    phone.open(authorize_url(issuer, params))
    phone.step("login", "/login")
    fill_all(phone, {"national_code": user.national_code, "password": "not the password"})
    phone.submit("/login")
    phone.step("login-wrong-password", "/login")
    phone.assert_error_linked("password")

    fill_all(phone, {"national_code": user.national_code, "password": user.password})
    phone.submit("/login")
    phone.step("consent", "/consent")

    claims = redeem(issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["acr"] == LOA1
    assert claims["amr"] == ["pwd"]


def test_sms_login(app: Flask, phone: Phone) -> None:
    issuer = phone.issuer
    user = create_test_user(app)
    rp, verifier, params = start(app)

    phone.open(authorize_url(issuer, params))
    phone.step("login", "/login")
    phone.tap("#link-otp-login")
    phone.step("sms-login", "/login/sms")
    fill_all(phone, {"national_code": user.national_code})
    phone.submit("/login/sms")
    phone.step("sms-code", "/login/sms/verify")
    phone.assert_code_field()

    code = last_sms_code(app, user.mobile, "login")
    fill_all(phone, {"code": wrong_code(code)})
    phone.submit("/login/sms/verify")
    phone.step("sms-code-wrong", "/login/sms/verify")
    phone.assert_error_linked("code")

    fill_all(phone, {"code": code})
    phone.submit("/login/sms/verify")
    phone.step("consent", "/consent")

    claims = redeem(issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["acr"] == LOA1
    assert claims["amr"] == ["sms"]


def test_step_up_to_two_factors(app: Flask, phone: Phone) -> None:
    issuer = phone.issuer
    user = create_test_user(app)
    rp, verifier, params = start(app, acr_values=LOA2)

    phone.open(authorize_url(issuer, params))
    phone.step("login", "/login")
    fill_all(phone, {"national_code": user.national_code, "password": user.password})
    phone.submit("/login")
    phone.step("second-factor", "/login/second-factor")

    phone.tap("#send-code")
    phone.step("second-factor-code-sent", "/login/second-factor")
    phone.assert_code_field()

    code = last_sms_code(app, user.mobile, "step_up")
    fill_all(phone, {"code": wrong_code(code)})
    phone.submit("/login/second-factor")
    phone.step("second-factor-wrong-code", "/login/second-factor")
    phone.assert_error_linked("code")

    fill_all(phone, {"code": code})
    phone.submit("/login/second-factor")
    phone.step("consent", "/consent")

    claims = redeem(issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["acr"] == LOA2
    assert claims["amr"] == ["pwd", "sms"]


def test_language_switcher_turns_the_page_english(app: Flask, phone: Phone) -> None:
    issuer = phone.issuer
    user = create_test_user(app)
    rp, verifier, params = start(app)

    phone.open(authorize_url(issuer, params))
    phone.step("login-fa", "/login")
    tx = phone.page.locator('input[name="tx"]').input_value()
    assert tx

    phone.tap("#lang-en")
    phone.locale = "en"
    phone.step("login-en", "/login")
    assert phone.page.locator("#lang-fa").count() == 1
    assert phone.page.locator("#lang-en").count() == 0
    heading = phone.page.locator("h1").inner_text()
    assert heading and not ARABIC_SCRIPT.search(heading), heading
    # The pending authorization request survived the switch: the user still goes back to the RP.
    assert phone.page.locator('input[name="tx"]').input_value() == tx

    fill_all(phone, {"national_code": user.national_code, "password": user.password})
    phone.submit("/login")
    phone.step("consent-en", "/consent")
    assert not ARABIC_SCRIPT.search(phone.page.locator("h1").inner_text())

    claims = redeem(issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["amr"] == ["pwd"]
