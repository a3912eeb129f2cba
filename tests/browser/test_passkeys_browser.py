"""Passkeys in a real browser: Chromium with a virtual authenticator (Chrome DevTools Protocol ``WebAuthn``
domain, through Playwright's CDP session), a phone's platform authenticator with a resident key and user
verification, against the provider served at ``http://localhost:PORT`` (Chromium refuses an IP address as a
relying-party ID).

The person enrols a passkey on the account page, logs out, logs in with it only and goes back to a relying
party with ``acr=urn:hoviyat:loa:3`` and no text message; steps a password login up with it; removes it. What
an attacker tries is refused: a second account registering the same credential, a page at another origin
using it, a replayed answer.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode

import cbor2
import pytest
from babel.messages.pofile import read_po
from flask import Flask
from werkzeug.serving import make_server

from tests.browser.test_browser_flows import Phone, authorize_url, fill_all, redeem, start
from tests.conftest import free_port
from tests.helpers import UserInfo, create_test_user, last_sms_code, sms_outbox
from tests.test_translations import CATALOGUE
from tests.webauthn_authenticator import b64url, from_b64url, provider_at_localhost

pytestmark = pytest.mark.browser

LOA2 = "urn:hoviyat:loa:2"
LOA3 = "urn:hoviyat:loa:3"


@pytest.fixture
def app(app_with: Any) -> Flask:
    return provider_at_localhost(app_with)


@pytest.fixture
def phone(phone_page: Any, artifacts_dir: Any, live_server: str) -> Phone:
    return Phone(phone_page, artifacts_dir, live_server)


class VirtualAuthenticator:
    """A phone's built-in authenticator, added to the page's browser through the DevTools protocol."""

    def __init__(self, page: Any, *, backup_eligible: bool = False) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
            "defaultBackupEligibility": backup_eligible,
            "defaultBackupState": backup_eligible,
        }
        self.id = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]


def without_autofill(phone: Phone) -> None:
    """The page's browser offers no passkey in autofill (conditional mediation), as many do not: the passkey
    button is the way. (Chromium's virtual authenticator picks a passkey from autofill at once, by itself.)"""
    phone.page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);")


def log_in_by_password(phone: Phone, user: UserInfo) -> None:
    phone.open(f"{phone.issuer}/login")
    fill_all(phone, {"national_code": user.national_code, "password": user.password})
    phone.submit("/login")
    phone.step("home", "/")


def enrol(app: Flask, phone: Phone, user: UserInfo, name: str = "گوشی من") -> None:
    """From a password login: the passkeys page, confirm with an SMS code, then add the passkey."""
    log_in_by_password(phone, user)
    phone.open(f"{phone.issuer}/account/passkeys")
    phone.step("passkeys-empty", "/account/passkeys")
    assert phone.page.locator("#add-passkey").is_visible()
    phone.tap("#add-passkey")  # the login is one factor: confirm first
    phone.step("confirm", "/login/second-factor")
    phone.tap("#send-code")
    fill_all(phone, {"code": last_sms_code(app, user.mobile, "step_up")})
    phone.submit("/login/second-factor")
    phone.step("passkeys-confirmed", "/account/passkeys")
    fill_all(phone, {"name": name})
    phone.tap("#add-passkey")
    phone.step("passkey-added", "/account/passkeys")
    assert phone.page.locator(".passkey-name").all_inner_texts() == [name]


def log_out(phone: Phone) -> None:
    phone.open(f"{phone.issuer}/")
    phone.tap('form[action="/logout"] button')
    assert not logged_in(phone)


def logged_in(phone: Phone) -> bool:
    """Whether the account home answers this browser (without opening the login page, whose autofill may log in)."""
    return phone.page.request.get(f"{phone.issuer}/", max_redirects=0).status == 200


def persian(message: str) -> str:
    """The Persian text the pages show for ``message`` (the phone's browser asks for Persian)."""
    with CATALOGUE.open("rb") as handle:
        return read_po(handle, locale="fa")[message].string


def passkey_login_error(phone: Phone) -> str:
    return phone.page.locator(".flash-error").inner_text()


def test_enrol_log_out_then_log_in_with_the_passkey_only_at_loa3(app: Flask, phone: Phone) -> None:
    user = create_test_user(app)
    authenticator = VirtualAuthenticator(phone.page)
    enrol(app, phone, user)
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] is True
    log_out(phone)

    texts_before = len(sms_outbox(app))
    rp, verifier, params = start(app, acr_values=LOA3)
    # The login page offers the passkey in the national-code field's autofill (conditional mediation); the
    # virtual authenticator picks it at once, as the person would with one tap, and nothing is typed.
    with phone.page.expect_navigation(url=re.compile(r".*/consent\b.*")):
        phone.open(authorize_url(phone.issuer, params))
    phone.step("consent", "/consent")
    claims = redeem(phone.issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["acr"] == LOA3
    assert claims["amr"] == ["hwk", "user"]
    assert len(sms_outbox(app)) == texts_before  # SMS sent for a passkey login: 0
    assert authenticator.credentials()[0]["signCount"] >= 1


def test_a_synced_passkey_steps_a_password_login_up(app: Flask, phone: Phone) -> None:
    user = create_test_user(app)
    without_autofill(phone)
    VirtualAuthenticator(phone.page, backup_eligible=True)
    enrol(app, phone, user)
    log_out(phone)

    texts_before = len(sms_outbox(app))
    rp, verifier, params = start(app, acr_values=LOA2)
    phone.open(authorize_url(phone.issuer, params))
    fill_all(phone, {"national_code": user.national_code, "password": user.password})
    phone.submit("/login")
    phone.step("second-factor-passkey", "/login/second-factor")
    phone.tap("#passkey-step-up")
    phone.step("consent", "/consent")
    claims = redeem(phone.issuer, rp, params, phone.allow_and_return(), verifier)
    assert claims["acr"] == LOA3
    assert claims["amr"] == ["pwd", "swk", "user"]
    assert len(sms_outbox(app)) == texts_before


def test_a_removed_passkey_no_longer_logs_in(app: Flask, phone: Phone) -> None:
    user = create_test_user(app)
    without_autofill(phone)
    authenticator = VirtualAuthenticator(phone.page)
    enrol(app, phone, user)
    phone.tap(".remove-passkey")
    phone.step("passkey-removed", "/account/passkeys")
    assert phone.page.locator(".passkey-name").count() == 0
    log_out(phone)

    assert len(authenticator.credentials()) == 1  # still on the device, no longer at Hoviyat
    phone.open(f"{phone.issuer}/login")
    phone.tap("#passkey-login")
    phone.step("login-refused", "/login")
    assert passkey_login_error(phone) == persian(
        "This passkey is not registered for a Hoviyat account (or not for this one)."
    )
    assert not logged_in(phone)


def test_a_second_account_cannot_register_the_same_credential(app: Flask, phone: Phone, chromium: Any) -> None:
    """An attestation of format "none" signs nothing: a second account's browser can send a registration with
    the first account's credential id (here the test rewrites the answer on its way, as a hostile page could
    write it). The provider refuses it."""
    first = create_test_user(app)
    without_autofill(phone)
    authenticator = VirtualAuthenticator(phone.page)
    enrol(app, phone, first)
    taken_id = _standard_b64decode(authenticator.credentials()[0]["credentialId"])
    log_out(phone)

    second = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    phone.page.context.clear_cookies()

    def rewrite(route: Any) -> None:
        request = route.request
        if request.method != "POST":
            route.continue_()
            return
        form = dict(parse_qsl(request.post_data))
        if "credential" in form:
            form["credential"] = _with_credential_id(form["credential"], taken_id)
        route.continue_(post_data=urlencode(form))

    phone.page.route(re.compile(r".*/account/passkeys$"), rewrite)
    log_in_by_password(phone, second)
    phone.open(f"{phone.issuer}/account/passkeys")
    phone.tap("#add-passkey")
    phone.step("confirm", "/login/second-factor")
    phone.tap("#send-code")
    fill_all(phone, {"code": last_sms_code(app, second.mobile, "step_up")})
    phone.submit("/login/second-factor")
    phone.tap("#add-passkey")
    phone.step("passkey-taken", "/account/passkeys")
    assert phone.page.locator(".passkey-error").inner_text() == persian(
        "This passkey is registered already and cannot be added again."
    )
    assert phone.page.locator(".passkey-name").count() == 0


def test_a_page_at_another_origin_cannot_use_the_passkey(app: Flask, phone: Phone) -> None:
    """The same pages served at another port of the same host: another origin, where the browser still lets a
    page use the passkeys of the host ``localhost`` (a relying-party ID names a host, not a port), and reports
    that origin. The provider expects exactly its issuer's origin and refuses the answer."""
    user = create_test_user(app)
    without_autofill(phone)
    VirtualAuthenticator(phone.page)
    enrol(app, phone, user)
    log_out(phone)

    port = free_port()
    other = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=other.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        phone.page.goto(f"http://localhost:{port}/login")
        with phone.page.expect_navigation():
            phone.page.locator("#passkey-login").tap()
        assert phone.page.url.startswith(f"http://localhost:{port}/login")
        assert passkey_login_error(phone) == persian("The passkey could not be checked. Try again.")
    finally:
        other.shutdown()
        thread.join(timeout=5)
    assert not logged_in(phone)


def test_a_replayed_answer_is_refused(app: Flask, phone: Phone) -> None:
    user = create_test_user(app)
    without_autofill(phone)
    VirtualAuthenticator(phone.page)
    enrol(app, phone, user)
    log_out(phone)

    sent: list[str] = []

    def keep(route: Any) -> None:
        sent.append(dict(parse_qsl(route.request.post_data))["credential"])
        route.continue_()

    phone.page.route(re.compile(r".*/login/passkey$"), keep)
    phone.open(f"{phone.issuer}/login")
    phone.tap("#passkey-login")
    phone.step("home", "/")
    phone.page.unroute(re.compile(r".*/login/passkey$"))
    log_out(phone)

    # The same answer again, from the login page's own form: its challenge was spent by the first login.
    phone.open(f"{phone.issuer}/login")
    phone.page.evaluate(
        "answer => { const form = document.querySelector('form[data-passkey]');"
        " form.elements.credential.value = answer; form.submit(); }",
        sent[0],
    )
    phone.page.wait_for_url(re.compile(r".*/login$"))
    assert passkey_login_error(phone) == persian("That passkey request has expired or was used already. Try again.")
    assert not logged_in(phone)


def _standard_b64decode(text: str) -> bytes:
    import base64

    return base64.b64decode(text + "=" * (-len(text) % 4))


def _with_credential_id(answer_json: str, credential_id: bytes) -> str:
    """The registration answer with its credential id replaced, in the JSON and in the authenticator data."""
    answer = json.loads(answer_json)
    attestation = cbor2.loads(from_b64url(answer["response"]["attestationObject"]))
    data = attestation["authData"]
    # rpIdHash (32), flags (1), counter (4), AAGUID (16), then the id's length (2) and the id (section 6.5.1).
    old_length = int.from_bytes(data[53:55], "big")
    new_id = len(credential_id).to_bytes(2, "big") + credential_id
    attestation["authData"] = data[:53] + new_id + data[55 + old_length :]
    answer["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    answer["id"] = answer["rawId"] = b64url(credential_id)
    return json.dumps(answer)
