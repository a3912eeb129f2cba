"""The whole single-sign-on story of the example sites, in a real browser held as a Persian phone.

A person registers at Hoviyat from the carmaker's sales portal, completes a purchase file and orders a car;
then, in the same browser, logs in to the device registry (Hamta) without typing a password, files an
"IMEI mismatch" ticket and sees it in the tickets table; logs out of the registry, and is logged out of the
carmaker too (Back-Channel Logout) and of Hoviyat itself. Both sites are the real apps of clients/, served
over HTTP against the live provider. Every page is photographed into test-artifacts/browser/<test>/ and
checked: Persian, right to left, no sideways scrolling at 360 CSS pixels.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jdatetime
import pytest
from flask import Flask
from sqlalchemy import select

import clients.carmaker
import clients.device_registry
from clients.device_registry.models import User as RegistryUser
from clients.device_registry.models import db as registry_db
from clients.rp_kit.dates import TEHRAN
from idp.identity_registry.demo import DEMO_PEOPLE
from idp.rules.birthdate import gregorian_to_jalali
from idp.rules.digits import to_persian_digits
from tests.helpers import last_sms_code

from ..relying_parties import relying_party  # noqa: F401

pytestmark = pytest.mark.browser

PHONE_WIDTH = 360
#: The names the sites are registered under at Hoviyat (tests/relying_parties.py), shown on the consent page.
CARMAKER_NAME = "سامانه فروش خودرو"
REGISTRY_NAME = "سامانه همتا"
DEVICES_FILE = Path(clients.device_registry.__file__).parent / "data" / "demo_devices.json"

#: The demo registry's زهرا کریمی (idp/identity_registry/demo.py), who has no Hoviyat account yet.
NATIONAL_CODE = "1234567891"
BIRTHDATE = dt.date(1995, 6, 1)
MOBILE = "+989131234567"
MOBILE_TYPED = "۰۹۱۳۱۲۳۴۵۶۷"  # as typed on a Persian keyboard
PASSWORD = "a-good-long-passphrase"

POSTAL_ADDRESS = "اصفهان، خیابان چهارباغ عباسی، کوچه شهید رجایی، پلاک ۱۲، واحد ۳"
POSTAL_CODE = "8174673111"
CAR_ID = "dena-plus"
MISMATCH_SUBJECT = "شناسه دستگاه (IMEI) من با شناسه دستگاه ثبت شده در همتا تطابق ندارد"
SUBMITTED = "ثبت شده"


def iranian_iban(bban: str) -> str:
    """IR, the ISO 13616 check digits (mod 97), and the 22-digit BBAN."""
    assert len(bban) == 22 and bban.isdigit()
    rearranged = bban + "1827" + "00"  # I=18, R=27, check digits 00
    return f"IR{98 - int(rearranged) % 97:02d}{bban}"


def luhn_complete(body: str) -> str:
    """A 14-digit IMEI body with its Luhn check digit."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


SHEBA = iranian_iban("0120000000003553071001")
#: What *#06# shows on the person's phone: two valid IMEIs, neither of them the registered pair.
DEVICE_IMEIS = (luhn_complete("86745304921879"), luhn_complete("86745304921881"))


def registered_device(national_code: str) -> dict[str, Any]:
    devices = [d for d in json.loads(DEVICES_FILE.read_text(encoding="utf-8")) if d["national_id"] == national_code]
    dual = [d for d in devices if d["dual_sim"] and d["status"] == "active"]
    assert dual, f"no active dual-SIM device registered to {national_code} in {DEVICES_FILE}"
    return dual[0]


def jalali_today() -> str:
    """Today's date in Iran, Jalali, with Persian digits: 1404/07/12 -> ۱۴۰۴/۰۷/۱۲."""
    today = dt.datetime.now(TEHRAN).date()
    return to_persian_digits(jdatetime.date.fromgregorian(date=today).strftime("%Y/%m/%d"))


def assert_apart(page: Any, first: str, second: str, gap: float = 8) -> None:
    """Two buttons side by side or one above the other, with room between them for a finger."""
    a, b = page.locator(first).bounding_box(), page.locator(second).bounding_box()
    assert a and b, (first, second)
    apart = max(b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]),
                b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]))  # fmt: skip
    assert apart >= gap, f"{first} and {second} are {apart:.0f} px apart"


class Phone:
    """The page of a phone's browser, with a screenshot and the same checks at every step."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.shots = 0
        self.layout_problems: list[str] = []

    def open(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None and response.ok, f"{url} -> {response.status if response else None}"

    def tap(self, selector: str) -> None:
        """Tap a link or button and wait for the page it leads to (after every redirect)."""
        target = self.page.locator(selector)
        assert target.count() == 1, f"{selector}: {target.count()} elements on {self.page.url}"
        with self.page.expect_navigation():
            target.tap()
        self.page.wait_for_load_state("load")

    def fill(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            field = self.page.locator(f'[name="{name}"]:not([type="hidden"])')
            assert field.count() == 1, f"no field {name} on {self.page.url}"
            field.fill(value)

    def step(self, name: str, base: str, path: str) -> None:
        """Photograph the page as <nn>-<name>.png, then check where it is and how it sits on a phone."""
        page = self.page
        page.wait_for_load_state("load")
        self.shots += 1
        page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)
        url = urlsplit(page.url)
        assert f"{url.scheme}://{url.netloc}" == base and url.path == path, (
            f"{name}: expected {base}{path}, at {page.url}"
        )
        html = page.locator("html")
        assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("fa", "rtl"), name
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl", name
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > PHONE_WIDTH + 1:  # checked at the end, so that one wide page does not hide the rest
            self.layout_problems.append(f"{name}: the page scrolls sideways ({scroll_width}px wide)")

    def text(self, selector: str) -> str:
        return re.sub(r"\s+", " ", self.page.locator(selector).inner_text()).strip()


def test_single_sign_on_story(
    app: Flask,
    live_server: str,
    relying_party,  # noqa: F811
    phone_page: Any,
    artifacts_dir: Path,
) -> None:
    issuer = live_server
    carmaker = relying_party("carmaker", clients.carmaker.create_app)
    registry = relying_party("device_registry", clients.device_registry.create_app)
    phone = Phone(phone_page, artifacts_dir)
    page = phone.page
    person = next(p for p in DEMO_PEOPLE if p[0] == NATIONAL_CODE)
    assert (person[1], person[4]) == (BIRTHDATE.isoformat(), [MOBILE]), "the demo registry changed"
    device = registered_device(NATIONAL_CODE)

    # 1. At the carmaker: "log in with Hoviyat", register at Hoviyat, allow, back at the carmaker.
    phone.open(carmaker.base_url + "/")
    phone.step("carmaker-landing", carmaker.base_url, "/")
    phone.tap("#login")
    phone.step("provider-login", issuer, "/login")
    phone.tap("#link-register")
    phone.step("provider-register-mobile", issuer, "/register")
    mobile = page.locator('input[name="mobile"]')
    mobile.press_sequentially(MOBILE_TYPED)
    assert mobile.input_value() == MOBILE_TYPED
    phone.tap('form[action*="/register"] button[type="submit"].primary')
    phone.step("provider-register-details", issuer, "/register/details")

    year, month, day = gregorian_to_jalali(BIRTHDATE)
    phone.fill(
        {
            "national_code": to_persian_digits(NATIONAL_CODE),
            "birth_day": to_persian_digits(str(day)),
            "birth_month": to_persian_digits(str(month)),
            "birth_year": to_persian_digits(str(year)),
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "code": last_sms_code(app, MOBILE, "register"),
        }
    )
    phone.step("provider-register-details-filled", issuer, "/register/details")
    phone.tap('form[action*="/register/details"] button[type="submit"].primary')
    phone.step("provider-consent-carmaker", issuer, "/consent")
    assert CARMAKER_NAME in page.locator("main").inner_text()
    phone.tap('button[name="decision"][value="allow"]')
    phone.step("carmaker-home", carmaker.base_url, "/")
    assert phone.text("#national-id") == to_persian_digits(NATIONAL_CODE)
    assert page.locator("#logout").count() == 1

    # 2. The purchase file: address, postal code in Persian digits, a valid Sheba; then the Sheba is fixed.
    phone.tap("#complete-purchase-file")
    phone.step("carmaker-purchase-file", carmaker.base_url, "/purchase-file")
    phone.fill(
        {"postal_address": POSTAL_ADDRESS, "postal_code": to_persian_digits(POSTAL_CODE), "sheba": SHEBA},
    )
    phone.step("carmaker-purchase-file-filled", carmaker.base_url, "/purchase-file")
    phone.tap("#save-purchase-file")
    phone.step("carmaker-plans", carmaker.base_url, "/plans")
    assert page.locator(".flash-info").count() == 1, "no «saved» message after saving the purchase file"
    phone.open(carmaker.base_url + "/purchase-file")
    phone.step("carmaker-purchase-file-saved", carmaker.base_url, "/purchase-file")
    assert phone.text("#sheba-fixed") == to_persian_digits(SHEBA)
    assert page.locator('[name="sheba"]').count() == 0, "the saved Sheba number can still be edited"
    assert page.locator('[name="postal_code"]').input_value() == POSTAL_CODE

    # 3. Order a car: the home page lists the order as active.
    phone.open(carmaker.base_url + "/plans")
    phone.step("carmaker-plans-again", carmaker.base_url, "/plans")
    phone.tap(f"#order-{CAR_ID}")
    phone.step("carmaker-home-ordered", carmaker.base_url, "/")
    statuses = [s.strip() for s in page.locator("#orders td.status").all_inner_texts()]
    assert statuses == ["فعال"], statuses
    car_name = next(c.name for plan in clients.carmaker.current_plans() for c in plan.cars if c.id == CAR_ID)
    assert car_name in phone.text("#orders")
    assert to_persian_digits(SHEBA) in phone.text("#purchase-file-done")
    assert_apart(page, "#cancel-order", "#withdraw")

    # Cancelling and withdrawing each ask first; "back" leaves the order as it was.
    for action, confirm in (("cancel-order", "#confirm-cancel"), ("withdraw", "#confirm-withdraw")):
        phone.tap(f"#{action}")
        path = urlsplit(page.url).path
        assert re.fullmatch(r"/orders/\d+/(cancel|withdraw)", path), page.url
        phone.step(f"carmaker-{action}-confirm", carmaker.base_url, path)
        assert_apart(page, confirm, "#back")
        phone.tap("#back")
        phone.step(f"carmaker-{action}-back", carmaker.base_url, "/")
        assert [s.strip() for s in page.locator("#orders td.status").all_inner_texts()] == ["فعال"]

    # 4. The device registry, same browser: Hoviyat asks only for consent, never for the password again.
    phone.open(registry.base_url + "/")
    phone.step("registry-landing", registry.base_url, "/")
    phone.tap("#login")
    phone.step("provider-consent-registry", issuer, "/consent")
    assert page.locator('input[name="password"]').count() == 0, "Hoviyat asked for the password again"
    assert page.locator('button[name="decision"][value="allow"]').count() == 1
    assert REGISTRY_NAME in page.locator("main").inner_text()
    phone.tap('button[name="decision"][value="allow"]')
    phone.step("registry-home", registry.base_url, "/")
    assert page.locator("nav.menu #menu-tickets").count() == 1
    assert to_persian_digits(NATIONAL_CODE) in phone.text("#welcome")

    # Same person, same verified national ID, a different (pairwise) subject at each site.
    with carmaker.app.app_context():
        at_carmaker = clients.carmaker.db.session.scalars(select(clients.carmaker.User)).all()
        carmaker_people = [(u.sub, u.national_id) for u in at_carmaker]
    with registry.app.app_context():
        registry_people = [(u.sub, u.national_id) for u in registry_db.session.scalars(select(RegistryUser)).all()]
    assert len(carmaker_people) == len(registry_people) == 1
    assert carmaker_people[0][1] == registry_people[0][1] == NATIONAL_CODE
    assert carmaker_people[0][0] != registry_people[0][0]

    # 5. Register a problem and track it.
    phone.tap("#menu-tickets")
    phone.step("registry-tickets-empty", registry.base_url, "/tickets")
    phone.tap("#create-ticket")
    phone.step("registry-ticket-subjects", registry.base_url, "/tickets/new")
    subject = page.get_by_label(MISMATCH_SUBJECT, exact=True)
    subject.check()
    assert subject.is_checked()
    phone.tap("#next-step")
    phone.step("registry-ticket-form", registry.base_url, "/tickets/new/imei_mismatch")
    assert phone.text("#subject-title") == MISMATCH_SUBJECT
    phone.fill(
        {
            "device_imei1": DEVICE_IMEIS[0],
            "device_imei2": DEVICE_IMEIS[1],
            "registered_imei1": device["imei1"],
            "registered_imei2": device["imei2"],
            "description": "با شماره‌گیری ‎*#06#‎ دو شناسهٔ دیگر نمایش داده می‌شود؛ لطفاً شناسه‌ها را اصلاح کنید.",
        }
    )
    phone.step("registry-ticket-form-filled", registry.base_url, "/tickets/new/imei_mismatch")
    dates = {jalali_today()}
    phone.tap("#submit-ticket")
    dates.add(jalali_today())  # the ticket was filed between the two readings (midnight in Tehran)
    phone.step("registry-tickets", registry.base_url, "/tickets")
    errors = page.locator(".error").all_inner_texts()
    assert not errors, errors
    rows = page.locator("#tickets tr.ticket-row")
    assert rows.count() == 1
    row = rows.first
    number = re.sub(r"\s+", "", row.locator(".ticket-number").inner_text())
    assert re.fullmatch(r"[۰-۹]{6}-[۰-۹]{6}", number), number
    assert any(number.startswith(d[:4] + d[5:7]) for d in dates), (number, dates)  # Jalali year and month
    assert number in phone.text(".flash-info"), "the confirmation does not give the ticket number"
    assert to_persian_digits(device["imei1"]) in row.inner_text()
    assert row.locator(".ticket-date").inner_text().strip() in dates
    assert row.locator(".ticket-subject").inner_text().strip() == MISMATCH_SUBJECT
    assert row.locator(".ticket-status").inner_text().strip() == SUBMITTED

    # 6. Log out of the registry: RP-initiated logout at Hoviyat, back at the registry's landing page.
    phone.tap("#logout")
    phone.step("registry-logged-out", registry.base_url, "/")
    assert page.locator("#login").count() == 1
    assert page.locator("nav.menu").count() == 0
    assert page.locator(".flash-info").count() == 1, "the registry did not confirm the logout (state round trip)"

    # 7. The carmaker was told (Back-Channel Logout): its landing page, not the home page. Hoviyat too.
    phone.open(carmaker.base_url + "/")
    phone.step("carmaker-logged-out", carmaker.base_url, "/")
    assert page.locator("#login").count() == 1
    assert page.locator("#national-id").count() == 0
    phone.open(issuer + "/")
    phone.step("provider-account-logged-out", issuer, "/login")
    assert page.locator('input[name="password"]').count() == 1

    # Every page of the story fits a phone's width.
    assert not phone.layout_problems, phone.layout_problems
