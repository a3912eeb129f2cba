"""The registration wizard (idp/signup) through HTTP: from a relying party's login page to its callback,
field-level errors for bad input, one-time code rules, the registry or SMS gateway being down, CAPTCHA,
and two registrations of one national code racing."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import jdatetime
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from werkzeug.wrappers import Request, Response

from idp import clock
from idp.extensions import db
from idp.otp import check_code, issue_code
from idp.rules.digits import to_persian_digits
from idp.store.audit import recent_events
from idp.store.models import User
from idp.store.users import find_user_by_national_code

from .helpers import (
    Browser,
    add_registry_person,
    authorization_params,
    captcha_answer,
    create_test_user,
    exchange_code,
    find_form,
    last_sms_code,
    parse_page,
    pkce_pair,
    query_of,
    sms_outbox,
    valid_national_code,
)
from .test_otp import store_records
from .test_registry import clear_rate_limit_counters, fake_servers, unused_port

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PASSWORD = "saffron tea at noon 7"


@dataclass(frozen=True)
class Registrant:
    national_code: str
    birthdate: str  # Gregorian ISO, as in the registry file
    jalali: tuple[str, str, str]  # year, month, day as typed
    mobile: str  # E.164
    typed_mobile: str  # as the user types it
    given_name: str = "سارا"
    family_name: str = "محمدی"


SARA = Registrant(valid_national_code("246813579"), "1995-06-01", ("1374", "3", "11"), "+989131112233", "09131112233")
# Someone else in the registry, with other mobiles.
REZA = Registrant(
    valid_national_code("135792468"), "1988-11-05", ("1367", "8", "14"), "+989351234567", "09351234567", "رضا", "کاظمی"
)


def put_in_registry(app: Flask, person: Registrant, *extra_mobiles: str) -> None:
    add_registry_person(
        app,
        person.national_code,
        person.birthdate,
        [person.mobile, *extra_mobiles],
        person.given_name,
        person.family_name,
    )


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request: pytest.FixtureRequest) -> Iterator[None]:
    clear_rate_limit_counters(request)
    yield
    clear_rate_limit_counters(request)


@pytest.fixture
def people(app: Flask) -> None:
    put_in_registry(app, SARA)
    put_in_registry(app, REZA)


@pytest.fixture
def en(client: FlaskClient) -> FlaskClient:
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def english(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


# -- reading pages ----------------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Field errors (``p.error`` by id), flash messages, inputs by name and the steps of ``ol.steps``."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[str, str] = {}
        self.flashes: list[str] = []
        self.inputs: dict[str, dict[str, str]] = {}
        self.steps: list[dict[str, str]] = []
        self.images: list[str] = []
        self._capture: tuple[str, str] | None = None
        self._text: list[str] = []
        self._in_steps = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "p" and "error" in classes:
            self._capture, self._text = ("error", a.get("id", "")), []
        elif tag == "p" and "flash" in classes:
            self._capture, self._text = ("flash", ""), []
        elif tag == "input" and a.get("name"):
            self.inputs[a["name"]] = a
        elif tag == "ol" and "steps" in classes:
            self._in_steps = True
        elif tag == "li" and self._in_steps:
            self.steps.append(a)
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._in_steps = False
        if tag == "p" and self._capture is not None:
            kind, ident = self._capture
            text = " ".join("".join(self._text).split())
            if kind == "error":
                self.errors[ident] = text
            else:
                self.flashes.append(text)
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._text.append(data)


def page_of(response: Any) -> PageParser:
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser


# -- driving the wizard -----------------------------------------------------------------------------------


def start(client: FlaskClient, typed_mobile: str, tx: str | None = None, **extra: str) -> Any:
    """Step 1: open /register and submit the mobile number; returns the POST's response."""
    page = client.get("/register" + (f"?tx={tx}" if tx else ""))
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    return client.post(form.action or "/register", data={**form.fields, "mobile": typed_mobile, **extra})


def to_details(client: FlaskClient, person: Registrant = SARA, typed_mobile: str | None = None) -> Any:
    """Step 1 done: the details page (step 2)."""
    response = start(client, typed_mobile or person.typed_mobile)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    page = client.get(response.location)
    assert page.status_code == 200
    return page


def details_data(page: Any, person: Registrant = SARA, code: str | None = None, **changes: str) -> dict[str, str]:
    form = find_form(page.get_data(as_text=True), field_name="birth_year")
    year, month, day = person.jalali
    data = {
        **form.fields,
        "national_code": person.national_code,
        "birth_year": year,
        "birth_month": month,
        "birth_day": day,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "code": code or "",
    }
    data.update(changes)
    return data


def submit_details(client: FlaskClient, page: Any, data: dict[str, str]) -> Any:
    form = find_form(page.get_data(as_text=True), field_name="birth_year")
    return client.post(urljoin(page.request.path, form.action), data=data)


def register(app: Flask, client: FlaskClient, person: Registrant = SARA, **changes: str) -> Any:
    page = to_details(client, person)
    code = last_sms_code(app, person.mobile, "register")
    return submit_details(client, page, details_data(page, person, code, **changes))


def account_of(app: Flask, national_code: str) -> User | None:
    with app.app_context():
        return find_user_by_national_code(national_code)


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def assert_registered(app: Flask, response: Any, person: Registrant = SARA) -> User:
    if response.status_code != 303:
        parsed = page_of(response)
        raise AssertionError(f"not registered: {response.status_code} {parsed.errors} {parsed.flashes}")
    user = account_of(app, person.national_code)
    assert user is not None
    return user


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


# -- the happy path ---------------------------------------------------------------------------------------


def test_registration_from_a_relying_party(app, client, issuer, rp_client, people):
    browser = Browser(client, issuer)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, scope="openid profile phone national_id")

    login = browser.authorize(params)
    assert login.status_code == 200 and b'name="password"' in login.data
    link = parse_page(login.get_data(as_text=True)).links["link-register"]
    tx = query_of(link).get("tx")
    assert tx, link

    step1 = browser.get(link)
    assert step1.status_code == 200
    assert find_form(step1.get_data(as_text=True), field_name="mobile").fields.get("tx") == tx

    step2 = browser.submit(step1, {"mobile": SARA.typed_mobile}, field_name="mobile")
    assert step2.status_code == 200 and step2.request.path == "/register/details"
    assert find_form(step2.get_data(as_text=True), field_name="birth_year").fields.get("tx") == tx
    [message] = sms_outbox(app)
    assert message["to"] == SARA.mobile
    assert message["purpose"] == "register"
    assert re.fullmatch(r"[0-9]{6}", message["code"])
    assert message["code"] in message["text"]
    assert ISO_Z.match(message["at"])

    year, month, day = SARA.jalali
    fields = {
        "national_code": SARA.national_code,
        "birth_year": year,
        "birth_month": month,
        "birth_day": day,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "code": message["code"],
    }
    consent = browser.submit(step2, fields, field_name="birth_year")
    assert consent.status_code == 200, consent.get_data(as_text=True)[:3000]
    assert b'name="decision"' in consent.data  # logged in, back in the relying party's authorization

    callback = browser.consent(consent)
    assert callback.status_code == 302
    assert callback.location.startswith(rp_client.redirect_uri)
    query = query_of(callback.location)
    assert query["state"] == params["state"] and query["iss"] == issuer

    tokens = exchange_code(client, rp_client, query["code"], verifier)
    assert tokens.status_code == 200, tokens.get_json()
    tokens = tokens.get_json()
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    claims = dict(jwt.decode(tokens["id_token"], keys, algorithms=["RS256", "ES256"]).claims)
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()

    assert claims["nonce"] == params["nonce"]
    assert info["sub"] == claims["sub"]
    for document in (claims, info):
        assert document["given_name"] == SARA.given_name
        assert document["family_name"] == SARA.family_name
        assert document["birthdate"] == SARA.birthdate
        assert document["national_id"] == SARA.national_code
        assert document["phone_number"] == SARA.mobile
        verified = document["verified_claims"]
        assert verified["claims"]["national_id"] == SARA.national_code
        assert verified["claims"]["given_name"] == SARA.given_name
        assert verified["claims"]["birthdate"] == SARA.birthdate
        assert ISO_Z.match(verified["verification"]["time"])
        [evidence] = verified["verification"]["evidence"]
        assert evidence["type"] == "electronic_record"
        assert evidence["record"]["type"] == "population_register"

    user = account_of(app, SARA.national_code)
    assert user.identity_verified_at is not None
    assert user.mobile == SARA.mobile
    assert user.birthdate == dt.date.fromisoformat(SARA.birthdate)
    assert user.password_hash and PASSWORD not in user.password_hash
    with app.app_context():
        [event] = recent_events(event="user.registered", user_id=user.id)
        assert PASSWORD not in json.dumps(event.detail) and message["code"] not in json.dumps(event.detail)


def test_registration_without_a_relying_party_lands_on_the_account(app, client, people):
    done = register(app, client)
    user = assert_registered(app, done)
    home = client.get(done.location)
    assert home.status_code == 200
    assert b'name="password"' not in home.data  # logged in, not sent to the login page
    assert user.family_name in home.get_data(as_text=True)


def test_the_new_password_logs_in(app, client, people):
    assert_registered(app, register(app, client))
    other = app.test_client()
    page = other.get("/login")
    form = find_form(page.get_data(as_text=True), field_name="national_code")
    response = other.post("/login", data={**form.fields, "national_code": SARA.national_code, "password": PASSWORD})
    assert response.status_code in (302, 303)
    assert "/login" not in response.location


def test_progress_indicator_and_code_field(app, client, people):
    page = client.get("/register")
    steps = page_of(page).steps
    assert len(steps) >= 2
    assert [s.get("aria-current") for s in steps][:2] == ["step", None]

    details = to_details(client)
    parsed = page_of(details)
    assert [s.get("aria-current") for s in parsed.steps][:2] == [None, "step"]
    assert sum(1 for s in parsed.steps if s.get("aria-current") == "step") == 1
    code = parsed.inputs["code"]
    assert code.get("autocomplete") == "one-time-code"
    assert code.get("inputmode") == "numeric"
    for name in ("national_code", "birth_year", "birth_month", "birth_day", "password", "password_confirm"):
        assert name in parsed.inputs, name


# -- digits in other scripts --------------------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("script", ["persian", "arabic-indic"])
def test_persian_and_arabic_indic_digits_are_accepted(app, client, people, script):
    convert = to_persian_digits if script == "persian" else (lambda text: text.translate(ARABIC_INDIC))
    page = to_details(client, typed_mobile=convert(SARA.typed_mobile))
    code = last_sms_code(app, SARA.mobile, "register")
    year, month, day = SARA.jalali
    data = details_data(
        page,
        code=convert(code),
        national_code=convert(SARA.national_code),
        birth_year=convert(year),
        birth_month=convert(month),
        birth_day=convert(day),
    )
    user = assert_registered(app, submit_details(client, page, data))
    assert user.national_code == SARA.national_code
    assert user.mobile == SARA.mobile


# -- bad input ------------------------------------------------------------------------------------------------

NEXT_JALALI_YEAR = str(jdatetime.date.today().year + 1)
UNKNOWN = valid_national_code("987654320")

BAD_DETAILS = [
    (
        "check-digit",
        {"national_code": SARA.national_code[:9] + str((int(SARA.national_code[9]) + 1) % 10)},
        "national_code",
    ),
    ("same-digits", {"national_code": "1111111111"}, "national_code"),
    ("zeros", {"national_code": "0000000000"}, "national_code"),
    ("too-short", {"national_code": "12345678"}, "national_code"),
    ("letters", {"national_code": "00123a5679"}, "national_code"),
    ("1402-12-30", {"birth_year": "1402", "birth_month": "12", "birth_day": "30"}, "birth"),
    ("1400-07-31", {"birth_year": "1400", "birth_month": "7", "birth_day": "31"}, "birth"),
    ("month-13", {"birth_year": "1374", "birth_month": "13", "birth_day": "11"}, "birth"),
    ("day-0", {"birth_day": "0"}, "birth"),
    ("no-date", {"birth_year": "", "birth_month": "", "birth_day": ""}, "birth"),
    ("future", {"birth_year": NEXT_JALALI_YEAR, "birth_month": "1", "birth_day": "1"}, "birth"),
    (
        "mobile-not-owned",
        {"national_code": REZA.national_code, "birth_year": "1367", "birth_month": "8", "birth_day": "14"},
        "national_code",
    ),
    ("not-in-registry", {"national_code": UNKNOWN}, "national_code"),
    ("birthdate-mismatch", {"birth_day": "12"}, "birth"),
    ("birthdate-other-year", {"birth_year": "1375"}, "birth"),
    ("password-short", {"password": "k7#Lm2q", "password_confirm": "k7#Lm2q"}, "password"),
    ("password-national-code", {"password": SARA.national_code, "password_confirm": SARA.national_code}, "password"),
    ("password-mobile", {"password": SARA.typed_mobile, "password_confirm": SARA.typed_mobile}, "password"),
    ("password-birthdate", {"password": "13740311", "password_confirm": "13740311"}, "password"),
    ("password123", {"password": "password123", "password_confirm": "password123"}, "password"),
    ("12345678", {"password": "12345678", "password_confirm": "12345678"}, "password"),
    ("passwords-differ", {"password_confirm": PASSWORD + "!"}, "password_confirm"),
    ("empty-code", {"code": ""}, "code"),
    ("wrong-code", {"code": "WRONG"}, "code"),
    ("letters-code", {"code": "abcdef"}, "code"),
]


@pytest.mark.parametrize(("changes", "field"), [(c, f) for _, c, f in BAD_DETAILS], ids=[i for i, _, _ in BAD_DETAILS])
def test_bad_details_give_a_field_error_and_no_account(app, en, people, changes, field):
    page = to_details(en)
    code = last_sms_code(app, SARA.mobile, "register")
    if changes.get("code") == "WRONG":
        changes = {**changes, "code": wrong_code(code)}
    response = submit_details(en, page, {**details_data(page, code=code), **changes})

    assert response.status_code == 200, response.status_code
    errors = page_of(response).errors
    assert f"{field}-error" in errors, errors
    assert errors[f"{field}-error"], errors
    assert user_count(app) == 0
    # The wizard stays on step 2 with the same number: fixing the input finishes the registration.
    assert_registered(app, submit_details(en, response, details_data(response, code=code)))


def test_registry_mismatch_messages(app, en, people):
    page = to_details(en)
    code = last_sms_code(app, SARA.mobile, "register")
    not_owned = submit_details(en, page, details_data(page, code=code, national_code=REZA.national_code))
    assert "not registered in the name" in page_of(not_owned).errors["national_code-error"]
    mismatch = submit_details(en, not_owned, details_data(not_owned, code=code, birth_day="12"))
    assert "do not match" in page_of(mismatch).errors["birth-error"]
    assert user_count(app) == 0


@pytest.mark.parametrize("typed", ["", "0912123456", "09121234567890", "02188776655", "+15551234567", "mobile"])
def test_bad_mobile_gives_a_field_error_and_no_sms(app, en, typed):
    response = start(en, typed)
    assert response.status_code == 200
    assert "mobile-error" in page_of(response).errors
    assert sms_outbox(app) == []


# -- the one-time code -------------------------------------------------------------------------------------


def test_expired_code_is_refused(app, en, people):
    page = to_details(en)
    code = last_sms_code(app, SARA.mobile, "register")
    clock.advance(121)
    response = submit_details(en, page, details_data(page, code=code))
    assert response.status_code == 200
    assert "code-error" in page_of(response).errors
    assert user_count(app) == 0


def test_code_for_another_purpose_is_refused(app, en, people):
    page = to_details(en)
    register_code = last_sms_code(app, SARA.mobile, "register")
    with app.app_context():
        login_code, _ = issue_code("login", SARA.mobile, None, verified=True)
    assert login_code != register_code  # one chance in a million
    response = submit_details(en, page, details_data(page, code=login_code))
    assert response.status_code == 200
    assert "code-error" in page_of(response).errors
    assert user_count(app) == 0


def test_sixth_try_fails_even_with_the_right_code(app, en, people):
    page = to_details(en)
    code = last_sms_code(app, SARA.mobile, "register")
    for _ in range(5):
        page = submit_details(en, page, details_data(page, code=wrong_code(code)))
        assert "code-error" in page_of(page).errors
    response = submit_details(en, page, details_data(page, code=code))
    assert response.status_code == 200
    assert "code-error" in page_of(response).errors
    assert user_count(app) == 0


def test_fifth_try_with_the_right_code_works(app, en, people):
    page = to_details(en)
    code = last_sms_code(app, SARA.mobile, "register")
    for _ in range(4):
        page = submit_details(en, page, details_data(page, code=wrong_code(code)))
    assert_registered(app, submit_details(en, page, details_data(page, code=code)))


def test_code_is_bound_to_the_mobile_of_step_one(app, en, people):
    """A code texted to another number (here: in another browser) does not finish this registration."""
    put_in_registry(app, SARA, "+989139998877")
    page = to_details(en)
    other = english(app)
    to_details(other, typed_mobile="09139998877")
    other_code = last_sms_code(app, "+989139998877", "register")
    response = submit_details(en, page, details_data(page, code=other_code))
    assert "code-error" in page_of(response).errors
    assert user_count(app) == 0


def test_registration_uses_up_the_code(app, client, people):
    page = to_details(client)
    code = last_sms_code(app, SARA.mobile, "register")
    assert_registered(app, submit_details(client, page, details_data(page, code=code)))
    with app.app_context():
        assert not check_code("register", SARA.mobile, code)
    assert user_count(app) == 1


def resend(client: FlaskClient, page: Any) -> Any:
    form = find_form(page.get_data(as_text=True), action_contains="/register/resend")
    response = client.post(urljoin(page.request.path, form.action), data=form.fields)
    assert response.status_code in (302, 303)
    return client.get(response.location)


def test_resend_too_soon(app, en, people):
    page = to_details(en)
    after = resend(en, page)
    assert after.status_code == 200 and after.request.path == "/register/details"
    flashes = " ".join(page_of(after).flashes)
    assert "moment ago" in flashes, flashes
    assert len(sms_outbox(app)) == 1
    # The first code still works.
    code = last_sms_code(app, SARA.mobile, "register")
    assert_registered(app, submit_details(en, after, details_data(after, code=code)))


@pytest.mark.slow
def test_resend_after_the_interval(app_with):
    app = app_with(otp={"resend_interval": 1})
    put_in_registry(app, SARA)
    client = english(app)
    page = to_details(client)
    old = last_sms_code(app, SARA.mobile, "register")
    time.sleep(1.1)
    after = resend(client, page)
    assert "new code was sent" in " ".join(page_of(after).flashes)
    assert len(sms_outbox(app)) == 2
    new = last_sms_code(app, SARA.mobile, "register")
    if new != old:
        refused = submit_details(client, after, details_data(after, code=old))
        assert "code-error" in page_of(refused).errors
        after = refused
    assert_registered(app, submit_details(client, after, details_data(after, code=new)))


@pytest.mark.slow
def test_hourly_cap_per_mobile(app_with):
    # CAPTCHA is off here: every request for a code spends the strangers' budget of the number.
    app = app_with(otp={"per_mobile_anonymous": "2 per hour", "resend_interval": 1})
    put_in_registry(app, SARA)
    client = english(app)
    page = to_details(client)
    time.sleep(1.1)
    page = resend(client, page)
    assert len(sms_outbox(app)) == 2
    time.sleep(1.1)
    page = resend(client, page)
    assert "Too many codes" in " ".join(page_of(page).flashes)
    assert len(sms_outbox(app)) == 2
    # Starting over does not get round the cap either.
    time.sleep(1.1)
    again = start(client, SARA.typed_mobile)
    assert again.status_code == 200
    assert "Too many codes" in page_of(again).errors.get("mobile-error", "")
    assert len(sms_outbox(app)) == 2


def test_details_page_without_step_one_goes_back_to_step_one(client):
    response = client.get("/register/details")
    assert response.status_code in (302, 303)
    assert response.location.split("?")[0].endswith("/register")


# -- an account that exists already ----------------------------------------------------------------------------


def test_second_registration_of_a_national_code(app, en):
    existing = create_test_user(app)  # 0012345679, +989121234567, born 1990-03-21 (1369/01/01)
    add_registry_person(app, existing.national_code, "1990-03-21", ["+989121234567", "+989127654321"], "علی", "رضایی")
    page = to_details(en, typed_mobile="09127654321")
    code = last_sms_code(app, "+989127654321", "register")
    data = details_data(
        page, code=code, national_code=existing.national_code, birth_year="1369", birth_month="1", birth_day="1"
    )

    response = submit_details(en, page, data)

    assert response.status_code == 200
    message = page_of(response).errors.get("national_code-error", "")
    assert "Log in" in message and "recover" in message, message
    html = response.get_data(as_text=True)
    for leaked in ("9121234567", to_persian_digits("9121234567"), "+98 912 123", "0912 123"):
        assert leaked not in html
    assert user_count(app) == 1
    with app.app_context():
        assert find_user_by_national_code(existing.national_code).mobile == "+989121234567"


def test_two_registrations_racing(app, people):
    second_mobile = "+989139998877"
    put_in_registry(app, SARA, second_mobile)
    browsers = [english(app), english(app)]
    pages = [to_details(browsers[0]), to_details(browsers[1], typed_mobile="09139998877")]
    forms = [
        details_data(pages[0], code=last_sms_code(app, SARA.mobile, "register")),
        details_data(pages[1], code=last_sms_code(app, second_mobile, "register")),
    ]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]
    errors: list[BaseException] = []

    def finish(n: int) -> None:
        try:
            barrier.wait()
            results[n] = submit_details(browsers[n], pages[n], forms[n])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 303], statuses
    loser = next(r for r in results if r.status_code == 200)
    message = page_of(loser).errors.get("national_code-error", "")
    assert "Log in" in message and "recover" in message, loser.get_data(as_text=True)[:3000]
    assert user_count(app) == 1


# -- the registry or the SMS gateway down ----------------------------------------------------------------------


def test_registry_down_then_back(app_with, tmp_path):
    registry_file = tmp_path / "missing.json"
    app = app_with(registry={"path": str(registry_file)})
    client = english(app)
    page = to_details(client)
    code = last_sms_code(app, SARA.mobile, "register")
    data = details_data(page, code=code)

    down = submit_details(client, page, data)

    assert down.status_code == 200
    errors = page_of(down).errors
    assert any("try again" in message.lower() for message in errors.values()), errors
    assert user_count(app) == 0

    registry_file.write_text(
        json.dumps(
            [
                {
                    "national_code": SARA.national_code,
                    "birthdate": SARA.birthdate,
                    "given_name": SARA.given_name,
                    "family_name": SARA.family_name,
                    "mobiles": [SARA.mobile],
                }
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    back = submit_details(client, down, details_data(down, code=code))
    assert_registered(app, back)


def otp_records(app: Flask) -> list[str]:
    return [key for key in store_records(app) if re.search(r"(^|:)otp[:-]", key)]


def test_sms_gateway_down_then_back(app_with):
    port = unused_port()
    app = app_with(sms={"backend": "http", "http_url": f"http://127.0.0.1:{port}/sms", "timeout": 1})
    put_in_registry(app, SARA)
    client = english(app)

    down = start(client, SARA.typed_mobile)

    assert down.status_code == 200
    message = page_of(down).errors.get("mobile-error", "")
    assert "try again" in message.lower(), message
    assert otp_records(app) == []

    texts: list[dict[str, Any]] = []

    def gateway(request: Request) -> Response:
        texts.append(request.get_json())
        return Response("", status=204)

    with fake_servers() as serve:
        serve(gateway, port)  # the gateway is back, at the same address
        again = start(client, SARA.typed_mobile)  # at once: no "wait a minute"
        assert again.status_code == 303, page_of(again).errors
        [sent] = texts
        assert sent["to"] == SARA.mobile and sent["purpose"] == "register"
        code = re.search(r"[0-9]{6}", sent["text"]).group(0)
        page = client.get(again.location)
        assert_registered(app, submit_details(client, page, details_data(page, code=code)))


def test_sms_gateway_refusing_port_one(app_with):
    app = app_with(sms={"backend": "http", "http_url": "http://127.0.0.1:1/", "timeout": 1})
    client = english(app)
    response = start(client, SARA.typed_mobile)
    assert response.status_code == 200
    assert "try again" in page_of(response).errors.get("mobile-error", "").lower()
    assert otp_records(app) == []
    # Asking again at once is not "too soon": no code was sent.
    again = start(client, SARA.typed_mobile)
    assert "moment ago" not in page_of(again).errors.get("mobile-error", "")


# -- CAPTCHA ----------------------------------------------------------------------------------------------------


@pytest.fixture
def captcha_app(app_with) -> Flask:
    app = app_with(captcha={"enabled": True})
    put_in_registry(app, SARA)
    return app


def captcha_start(client: FlaskClient, answer_for: Any) -> Any:
    page = client.get("/register")
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    assert "captcha" in form.fields
    data = {**form.fields, "mobile": SARA.typed_mobile, "captcha": answer_for()}
    if data["captcha"] is None:
        del data["captcha"]
    return client.post("/register", data=data)


@pytest.mark.parametrize("given", ["absent", "empty", "wrong", "too-short", "too-long"])
def test_captcha_missing_or_wrong(captcha_app, given):
    client = english(captcha_app)

    def answer() -> str | None:
        right = captcha_answer(captcha_app, client)
        return {
            "absent": None,
            "empty": "",
            "wrong": wrong_code(right),
            "too-short": right[:-1],
            "too-long": right + "1",
        }[given]

    response = captcha_start(client, answer)
    assert response.status_code == 200
    assert "captcha-error" in page_of(response).errors
    assert sms_outbox(captcha_app) == []


@pytest.mark.parametrize("script", ["ascii", "persian"])
def test_captcha_right_answer_proceeds(captcha_app, script):
    client = english(captcha_app)
    convert = to_persian_digits if script == "persian" else str

    response = captcha_start(client, lambda: convert(captcha_answer(captcha_app, client)))

    assert response.status_code == 303, page_of(response).errors
    assert [m["to"] for m in sms_outbox(captcha_app)] == [SARA.mobile]


def test_captcha_answer_works_once(captcha_app):
    client = english(captcha_app)
    page = client.get("/register")
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    data = {**form.fields, "mobile": SARA.typed_mobile, "captcha": captcha_answer(captcha_app, client)}
    assert client.post("/register", data=data).status_code == 303

    replay = client.post("/register", data=data)

    assert replay.status_code == 200
    assert "captcha-error" in page_of(replay).errors
    assert len(sms_outbox(captcha_app)) == 1


def test_wrong_captcha_uses_up_the_challenge(captcha_app):
    client = english(captcha_app)
    page = client.get("/register")
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    right = captcha_answer(captcha_app, client)
    wrong = client.post("/register", data={**form.fields, "mobile": SARA.typed_mobile, "captcha": wrong_code(right)})
    assert "captcha-error" in page_of(wrong).errors
    form = find_form(wrong.get_data(as_text=True), field_name="mobile")
    new = captcha_answer(captcha_app, client)
    if new != right:
        stale = client.post("/register", data={**form.fields, "mobile": SARA.typed_mobile, "captcha": right})
        assert "captcha-error" in page_of(stale).errors
    assert sms_outbox(captcha_app) == []


def test_captcha_image_and_audio(captcha_app):
    client = english(captcha_app)
    page = client.get("/register")
    parsed = page_of(page)
    image_src = next(src for src in parsed.images if "/captcha.png" in src)
    audio_href = parse_page(page.get_data(as_text=True)).links["captcha-audio"]
    answer = captcha_answer(captcha_app, client)

    image = client.get(image_src)
    assert image.status_code == 200
    assert image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert "no-store" in image.headers.get("Cache-Control", "")

    audio = client.get(audio_href)
    assert audio.status_code == 200
    assert audio.mimetype in ("audio/wav", "audio/x-wav", "audio/wave")
    assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
    assert len(audio.data) > 1000

    # Fetching the picture and the sound does not change or use up the challenge.
    assert captcha_answer(captcha_app, client) == answer
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    response = client.post("/register", data={**form.fields, "mobile": SARA.typed_mobile, "captcha": answer})
    assert response.status_code == 303


def test_captcha_image_needs_a_challenge(captcha_app):
    client = captcha_app.test_client()
    assert client.get("/captcha.png").status_code == 404
    assert client.get("/captcha.wav").status_code == 404


def test_each_page_draws_a_new_challenge(captcha_app):
    client = english(captcha_app)
    answers = set()
    for _ in range(3):
        client.get("/register")
        answers.add(captcha_answer(captcha_app, client))
    assert len(answers) > 1


def test_no_captcha_field_when_disabled(client):
    form = find_form(client.get("/register").get_data(as_text=True), field_name="mobile")
    assert "captcha" not in form.fields
