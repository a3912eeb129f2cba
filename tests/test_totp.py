"""The authenticator app (idp/totp.py, /account/two-factor) and its recovery codes, and their use as a second
factor at /login/second-factor.

Codes are computed with pyotp at the provider's clock (``idp.clock.timestamp()``). Tests move that clock to
the start of a 30-second step first, so a step boundary never falls between computing a code and checking it.
"""

from __future__ import annotations

import base64
import re
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, text

from idp import clock, totp
from idp.extensions import db
from idp.rules.digits import to_persian_digits
from idp.store import commit
from idp.store.models import User, UserSession

from .helpers import (
    Browser,
    UserInfo,
    authorization_params,
    create_test_user,
    english_browser,
    exchange_code,
    field_error,
    find_form,
    in_parallel,
    last_sms_code,
    pkce_pair,
    query_of,
    sms_outbox,
)

STEP = 30
RECOVERY_CODE = re.compile(r"(?<![\w-])[a-z2-7]{4}-[a-z2-7]{4}(?![\w-])")


# -- helpers ---------------------------------------------------------------------------------------------


def align_clock() -> None:
    """Move the provider's clock to the start of a TOTP step: the test then has ~30 s inside one step."""
    clock.advance(STEP - clock.timestamp() % STEP)


def next_step(steps: int = 1) -> None:
    clock.advance(steps * STEP)


def code_at(secret: str, drift_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.timestamp() + drift_steps * STEP)


class _SecretParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.secret: str | None = None
        self.images: list[str] = []
        self._in_secret = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if a.get("id") == "totp-secret":
            self._in_secret = True
            self.secret = ""
        if tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag: str) -> None:
        self._in_secret = False

    def handle_data(self, data: str) -> None:
        if self._in_secret:
            self.secret = (self.secret or "") + data.strip()


def enrolment_page(browser: Browser) -> tuple[Any, str, list[str]]:
    page = browser.get("/account/two-factor")
    assert page.status_code == 200
    if 'id="confirm-first"' in page.get_data(as_text=True):
        page = browser.confirm_it_is_me()
    parser = _SecretParser()
    parser.feed(page.get_data(as_text=True))
    assert parser.secret, page.get_data(as_text=True)[:3000]
    return page, parser.secret, parser.images


def log_in(app: Flask, user: UserInfo) -> Browser:
    browser = english_browser(app)
    page = browser.login(browser.get("/login"), user)
    assert page.request.path == "/", page.request.path
    return browser


def redirect_path(response: Any) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:2000])
    return urlsplit(response.location).path


def recovery_codes_in(response: Any) -> list[str]:
    return list(dict.fromkeys(RECOVERY_CODE.findall(response.get_data(as_text=True))))


def enrol(browser: Browser) -> tuple[str, list[str]]:
    """Turn the authenticator app on; returns the secret and the recovery codes shown."""
    page, secret, _ = enrolment_page(browser)
    align_clock()
    response = browser.submit(page, {"code": code_at(secret)}, field_name="code")
    assert response.status_code == 200, response.status_code
    codes = recovery_codes_in(response)
    assert len(codes) == 10, response.get_data(as_text=True)[:3000]
    return secret, codes


def load_user(app: Flask, user_id: str) -> User:
    with app.app_context():
        found = db.session.get(User, user_id)
        assert found is not None
        db.session.expunge(found)
        return found


def amr_of_sessions(app: Flask, user_id: str) -> list[list[str]]:
    with app.app_context():
        rows = db.session.scalars(
            select(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        ).all()
        return [list(row.amr) for row in rows]


def second_factor(browser: Browser, method: str, code: str) -> Any:
    """Answer the step-up page with ``method`` (otp or recovery); returns the raw response."""
    page = browser.get(f"/login/second-factor?method={method}")
    assert page.status_code == 200, page.status_code
    form = find_form(page.get_data(as_text=True), field_name="code")
    assert f"method={method}" in form.action, (method, form.action)
    return browser.client.post(form.action, data={**form.fields, "code": code})


def accepted(response: Any) -> bool:
    if response.status_code in (302, 303):
        return True
    assert response.status_code == 200, response.status_code
    assert field_error(response, "code", raw=True), response.get_data(as_text=True)[:3000]
    return False


def csrf_of(browser: Browser, path: str) -> str:
    page = browser.get(path)
    return find_form(page.get_data(as_text=True), field_name="csrf_token").fields["csrf_token"]


# -- enrolment -------------------------------------------------------------------------------------------


def test_enrolment_page_shows_a_qr_image_and_the_secret(app, user):
    browser = log_in(app, user)
    page, secret, images = enrolment_page(browser)
    qr = [src for src in images if src.startswith("data:image/svg+xml")]
    assert len(qr) == 1, images
    svg = base64.b64decode(qr[0].split(",", 1)[1]).decode("utf-8")
    assert "<svg" in svg and "<script" not in svg.lower()
    # Base32, and at least 128 bits of key (RFC 4226 section 4, R6).
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) >= 16
    assert find_form(page.get_data(as_text=True), field_name="code")
    # The same secret while enrolment is pending (reloading the page must not change the QR code).
    assert enrolment_page(browser)[1] == secret
    assert not load_user(app, user.id).has_totp


@pytest.mark.parametrize("wrong", ["000000", "12345", "abcdef", "drift+3", "drift-3"])
def test_a_wrong_code_does_not_enable(app, user, wrong):
    browser = log_in(app, user)
    page, secret, _ = enrolment_page(browser)
    align_clock()
    if wrong.startswith("drift"):
        wrong = code_at(secret, int(wrong[5:]))
    elif wrong == code_at(secret):
        wrong = "999999"  # "000000" happened to be the right code (one chance in a million)
    response = browser.submit(page, {"code": wrong}, field_name="code")
    assert response.status_code == 200
    assert field_error(response, "code", raw=True), response.get_data(as_text=True)[:3000]
    assert recovery_codes_in(response) == []
    stored = load_user(app, user.id)
    assert not stored.has_totp and stored.totp_secret_encrypted is None
    # The same secret can still be confirmed.
    again, secret_again, _ = enrolment_page(browser)
    assert secret_again == secret
    assert browser.submit(again, {"code": code_at(secret)}, field_name="code").status_code == 200
    assert load_user(app, user.id).has_totp


def test_the_right_code_enables_and_shows_ten_recovery_codes_once(app, user):
    browser = log_in(app, user)
    secret, codes = enrol(browser)
    assert len(set(codes)) == 10
    stored = load_user(app, user.id)
    assert stored.has_totp
    page = browser.get("/account/two-factor")
    html = page.get_data(as_text=True)
    assert not any(code in html for code in codes)
    assert secret not in html
    assert "totp-secret" not in html
    assert find_form(html, action_contains="/account/two-factor/disable").fields.keys() >= {"password"}
    assert "Unused recovery codes: 10" in html


def test_enrolment_code_may_be_typed_in_persian_digits(app, user):
    browser = log_in(app, user)
    page, secret, _ = enrolment_page(browser)
    align_clock()
    response = browser.submit(page, {"code": to_persian_digits(code_at(secret))}, field_name="code")
    assert response.status_code == 200
    assert len(recovery_codes_in(response)) == 10
    assert load_user(app, user.id).has_totp


def test_seed_is_encrypted_and_recovery_codes_hashed_at_rest(app, user):
    browser = log_in(app, user)
    secret, codes = enrol(browser)
    with app.app_context():
        [stored] = db.session.execute(
            text("select totp_secret_encrypted from users where id = :id"), {"id": user.id}
        ).scalars()
        hashes = list(
            db.session.execute(
                text("select code_hash from recovery_codes where user_id = :id"), {"id": user.id}
            ).scalars()
        )
    assert stored
    for form in (secret, secret.lower(), secret.rstrip("=")):
        assert form not in stored
    assert base64.b32decode(secret + "=" * (-len(secret) % 8)) not in stored.encode()
    assert len(hashes) == 10
    for code in codes:
        for form in (code, code.replace("-", ""), code.upper(), code.replace("-", "").upper()):
            assert form not in hashes
            assert not any(form in value for value in hashes)


# -- using the app as a second factor -------------------------------------------------------------------------


def test_a_code_is_accepted_once_per_time_step(app, user):
    browser = log_in(app, user)
    secret, _ = enrol(browser)
    # The enrolment code itself cannot be used again for a login.
    assert not accepted(second_factor(browser, "otp", code_at(secret)))

    next_step()
    code = code_at(secret)
    response = second_factor(browser, "otp", to_persian_digits(code))
    assert accepted(response)
    assert redirect_path(response) == "/"
    assert any("otp" in amr for amr in amr_of_sessions(app, user.id))

    assert not accepted(second_factor(browser, "otp", code))  # replay in the same step
    assert not accepted(second_factor(browser, "otp", code_at(secret, -1)))  # an older step
    next_step()
    assert accepted(second_factor(browser, "otp", code_at(secret)))


@pytest.mark.parametrize(("drift", "ok"), [(-2, False), (-1, True), (0, True), (1, True), (2, False), (5, False)])
def test_one_step_of_clock_drift_is_accepted_two_are_not(app, user, drift, ok):
    with app.app_context():
        person = db.session.get(User, user.id)
        secret = totp.new_secret()
        align_clock()
        assert totp.enable(person, secret, code_at(secret)) is not None
        commit()
        next_step(10)
        assert totp.verify(person, code_at(secret, drift)) is ok
        commit()


def test_drift_codes_are_single_use_too(app, user):
    with app.app_context():
        person = db.session.get(User, user.id)
        secret = totp.new_secret()
        align_clock()
        totp.enable(person, secret, code_at(secret))
        next_step(10)
        ahead = code_at(secret, 1)
        assert totp.verify(person, ahead)
        assert not totp.verify(person, ahead)
        # After a code of the next step was used, this step's code is older and refused.
        assert not totp.verify(person, code_at(secret))
        next_step(2)
        assert totp.verify(person, code_at(secret))


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "12 34 5a", "abcdef", "-12345"])
def test_malformed_codes_are_refused(app, user, bad):
    with app.app_context():
        person = db.session.get(User, user.id)
        secret = totp.new_secret()
        align_clock()
        totp.enable(person, secret, code_at(secret))
        next_step()
        assert totp.verify(person, bad) is False


def test_loa2_authorization_is_met_with_the_app(app, user, rp_client):
    secret, _ = enrol(log_in(app, user))
    next_step()
    browser = log_in(app, user)  # a password login: one factor, which loa:2 must step up
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, acr_values="urn:hoviyat:loa:2")
    page = browser.authorize(params)
    assert page.request.path == "/login/second-factor", page.request.path
    response = browser.submit(page, {"code": code_at(secret)}, field_name="code")
    if response.status_code == 200 and b'name="decision"' in response.data:
        response = browser.consent(response)
    assert response.status_code == 302 and response.location.startswith(rp_client.redirect_uri), response.location
    query = query_of(response.location)
    assert query["state"] == params["state"]
    token = exchange_code(browser.client, rp_client, query["code"], verifier).get_json()
    keys = KeySet.import_key_set(browser.client.get("/jwks.json").get_json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256", "ES256"]).claims
    assert claims["acr"] == "urn:hoviyat:loa:2"
    assert {"pwd", "otp"} <= set(claims["amr"])


# -- recovery codes --------------------------------------------------------------------------------------


def test_recovery_codes_are_single_use_with_or_without_dash_in_any_case(app, user):
    browser = log_in(app, user)
    _, codes = enrol(browser)
    assert accepted(second_factor(browser, "recovery", codes[0]))
    assert not accepted(second_factor(browser, "recovery", codes[0]))
    assert not accepted(second_factor(browser, "recovery", codes[0].replace("-", "").upper()))
    assert accepted(second_factor(browser, "recovery", codes[1].replace("-", "")))
    assert accepted(second_factor(browser, "recovery", codes[2].upper()))
    assert accepted(second_factor(browser, "recovery", " " + codes[3].replace("-", "").upper() + " "))
    assert any("otp" in amr for amr in amr_of_sessions(app, user.id))
    with app.app_context():
        assert totp.remaining_recovery_codes(db.session.get(User, user.id)) == 6
    assert "Unused recovery codes: 6" in browser.get("/account/two-factor").get_data(as_text=True)


def test_a_made_up_recovery_code_is_refused(app, user):
    browser = log_in(app, user)
    _, codes = enrol(browser)
    made_up = "aaaa-bbbb" if "aaaa-bbbb" not in codes else "cccc-dddd"
    assert not accepted(second_factor(browser, "recovery", made_up))
    with app.app_context():
        assert totp.remaining_recovery_codes(db.session.get(User, user.id)) == 10


def test_regenerated_recovery_codes_replace_the_old_ones(app, user):
    browser = log_in(app, user)
    _, old = enrol(browser)
    assert accepted(second_factor(browser, "recovery", old[0]))
    token = csrf_of(browser, "/account/two-factor")
    response = browser.client.post("/account/two-factor/recovery-codes", data={"csrf_token": token})
    assert response.status_code == 200
    new = recovery_codes_in(response)
    assert len(new) == 10 and not set(new) & set(old)
    with app.app_context():
        assert totp.remaining_recovery_codes(db.session.get(User, user.id)) == 10
    assert not accepted(second_factor(browser, "recovery", old[1]))
    assert accepted(second_factor(browser, "recovery", new[0]))
    # Shown once: the settings page does not repeat them.
    html = browser.get("/account/two-factor").get_data(as_text=True)
    assert not any(code in html for code in new)


# -- turning it off --------------------------------------------------------------------------------------


def _disable(browser: Browser, password: str) -> Any:
    token = csrf_of(browser, "/account/two-factor")
    return browser.client.post("/account/two-factor/disable", data={"csrf_token": token, "password": password})


def test_disable_needs_the_password(app, user):
    browser = log_in(app, user)
    secret, _ = enrol(browser)
    response = _disable(browser, "not the password")
    assert redirect_path(response) == "/account/two-factor"
    assert load_user(app, user.id).has_totp
    next_step()
    assert accepted(second_factor(browser, "otp", code_at(secret)))


def test_disable_removes_the_app_from_step_up(app, user):
    browser = log_in(app, user)
    secret, codes = enrol(browser)
    page = browser.get("/login/second-factor")
    assert "method=otp" in find_form(page.get_data(as_text=True), field_name="code").action

    assert redirect_path(_disable(browser, user.password)) == "/account/two-factor"
    stored = load_user(app, user.id)
    assert not stored.has_totp
    assert stored.totp_secret_encrypted is None
    with app.app_context():
        assert (
            db.session.execute(
                text("select count(*) from recovery_codes where user_id = :id"), {"id": user.id}
            ).scalar_one()
            == 0
        )

    page = browser.get("/login/second-factor")
    html = page.get_data(as_text=True)
    assert 'id="method-otp"' not in html and 'id="method-recovery"' not in html
    assert "method=otp" not in html and "method=recovery" not in html
    # Asking for the app anyway gets the SMS code form, and neither a TOTP nor a recovery code is accepted.
    next_step()
    forced = browser.get("/login/second-factor?method=otp")
    assert "method=otp" not in find_form(forced.get_data(as_text=True), field_name="code").action
    response = browser.client.post(
        "/login/second-factor?method=otp",
        data={"csrf_token": csrf_of(browser, "/login/second-factor"), "code": code_at(secret)},
    )
    assert response.status_code == 200
    response = browser.client.post(
        "/login/second-factor?method=recovery",
        data={"csrf_token": csrf_of(browser, "/login/second-factor"), "code": codes[0]},
    )
    assert response.status_code == 200
    assert not any("otp" in amr for amr in amr_of_sessions(app, user.id))
    # Enrolment is offered again, with a new secret.
    assert enrolment_page(browser)[1] != secret


# -- the server secret changes --------------------------------------------------------------------------------


def test_a_new_server_secret_makes_the_old_seed_fail_cleanly(app_with):
    # A step-up code a second after another (the enrolment's): otp.resend_interval counts per number, across apps.
    before = app_with(server={"secret_key": "first secret key"}, otp={"resend_interval": 1})
    after = app_with(server={"secret_key": "second secret key"}, otp={"resend_interval": 1})  # same database
    person = create_test_user(before)
    browser = log_in(before, person)
    secret, _ = enrol(browser)
    next_step()

    other = log_in(after, person)
    assert load_user(after, person.id).has_totp
    response = second_factor(other, "otp", code_at(secret))
    assert response.status_code == 200, response.status_code
    assert field_error(response, "code", raw=True)
    assert not any("otp" in amr for amr in amr_of_sessions(after, person.id))
    # The settings page still works, and turning the app off is possible once confirmed by SMS.
    assert other.get("/account/two-factor").status_code == 200
    time.sleep(1.1)
    other.confirm_it_is_me()
    assert redirect_path(_disable(other, person.password)) == "/account/two-factor"
    assert enrolment_page(other)[1]


# -- one factor cannot change the factors (a stolen password or SIM) ----------------------------------------------


def sms_log_in(app: Flask, user: UserInfo) -> Browser:
    """A login with the SIM alone: a code by SMS (one factor)."""
    browser = english_browser(app)
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code})
    done = browser.submit(page, {"code": last_sms_code(app, user.mobile, "login")}, field_name="code")
    assert done.request.path == "/", done.request.path
    return browser


def try_to_enrol(browser: Browser) -> Any:
    """An attacker's own authenticator app, turned on with a secret of the attacker's choosing."""
    token = csrf_of(browser, "/")  # the account page's logout form: any form's token will do
    secret = pyotp.random_base32()
    with browser.client.session_transaction() as session:
        session["totp_enrolment"] = secret  # as if the page had shown it
    return browser.client.post("/account/two-factor", data={"csrf_token": token, "code": code_at(secret)})


@pytest.mark.parametrize("way_in", ["stolen password", "SIM alone"])
def test_one_factor_cannot_turn_on_an_app_that_would_lock_the_owner_out(app, user, way_in):
    """With an app of the attacker's on the account, recovery by SMS would ask for its codes: the owner locked
    out. Turning one on needs a fresh login of two factors, and the key is not even shown before."""
    browser = log_in(app, user) if way_in == "stolen password" else sms_log_in(app, user)
    page = browser.get("/account/two-factor").get_data(as_text=True)
    assert 'id="totp-secret"' not in page and 'id="confirm-first"' in page
    refused = try_to_enrol(browser)
    assert refused.status_code in (200, 302, 303)
    assert not load_user(app, user.id).has_totp


def test_a_stolen_password_cannot_turn_off_the_owners_app_or_remake_its_codes(app, user):
    owner = log_in(app, user)
    _secret, codes = enrol(owner)
    attacker = log_in(app, user)
    response = _disable(attacker, user.password)
    assert response.status_code == 303 and "/login/second-factor" in response.location
    assert load_user(app, user.id).has_totp
    token = csrf_of(attacker, "/account/two-factor")
    remade = attacker.client.post("/account/two-factor/recovery-codes", data={"csrf_token": token})
    assert remade.status_code == 303 and "/login/second-factor" in remade.location
    # The owner's recovery codes still work, and the confirmation page asks for what the attacker lacks.
    assert second_factor(english_browser_logged_in(app, user), "recovery", codes[0]).status_code in (302, 303)


def english_browser_logged_in(app: Flask, user: UserInfo) -> Browser:
    return log_in(app, user)


def test_turning_the_app_on_is_texted_to_the_owner(app, user):
    browser = log_in(app, user)
    enrol(browser)
    texts = [m for m in sms_outbox(app) if m["purpose"] == "second_factor"]
    assert len(texts) == 1 and "authenticator app was turned on" in texts[0]["text"]


# -- one code, one request (parallel replays) -------------------------------------------------------------------

PARALLEL = 8


def _step_up_pages(app: Flask, person: UserInfo, method: str) -> list[tuple[Browser, Any]]:
    """PARALLEL browsers, each logged in with the password and at the step-up page for ``method``, with its form."""
    pages = []
    for _ in range(PARALLEL):
        browser = log_in(app, person)
        page = browser.get(f"/login/second-factor?method={method}")
        assert page.status_code == 200, page.status_code
        pages.append((browser, find_form(page.get_data(as_text=True), field_name="code")))
    return pages


def _race(pages: list[tuple[Browser, Any]], code: str) -> int:
    """Each browser sends ``code`` at once; how many were accepted."""

    def attempt(index: int) -> bool:
        browser, form = pages[index]
        return accepted(browser.client.post(form.action, data={**form.fields, "code": code}))

    return sum(in_parallel(PARALLEL, attempt))


@pytest.fixture
def race_app(app_with, monkeypatch) -> Flask:
    """An app where every parallel attempt reaches the check of its code (the login throttle's waits would refuse
    most before), and where each request lingers a little between that check and its commit, as a loaded server
    does: a spend that is decided by a read, not by the write, then lets every request through."""
    for name in ("verify", "use_recovery_code"):
        check = getattr(totp, name)

        def lingering(*args: Any, _check: Any = check) -> bool:
            result = _check(*args)
            time.sleep(0.05)
            return result

        monkeypatch.setattr(totp, name, lingering)
    return app_with(login={"delay_after_failures": 100, "captcha_after_failures": 100})


def test_a_totp_code_sent_from_many_sessions_at_once_is_accepted_once(race_app):
    person = create_test_user(race_app)
    secret, _ = enrol(log_in(race_app, person))
    pages = _step_up_pages(race_app, person, "otp")
    next_step()
    assert _race(pages, code_at(secret)) == 1
    assert sum("otp" in amr for amr in amr_of_sessions(race_app, person.id)) == 1


def test_a_recovery_code_sent_from_many_sessions_at_once_is_accepted_once(race_app):
    person = create_test_user(race_app)
    _, codes = enrol(log_in(race_app, person))
    pages = _step_up_pages(race_app, person, "recovery")
    assert _race(pages, codes[0]) == 1
    assert sum("otp" in amr for amr in amr_of_sessions(race_app, person.id)) == 1
    with race_app.app_context():
        assert totp.remaining_recovery_codes(db.session.get(User, person.id)) == 9
