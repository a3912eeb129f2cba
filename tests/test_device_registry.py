"""The device registry (clients/device_registry, like Iran's «همتا»), a relying party of Hoviyat, over real HTTP:
login with Hoviyat, devices bound to the verified national ID, authenticity inquiry, support tickets with their
validation, paging and staff command, and logout (RP-initiated and back-channel).

The registry's pages are Persian only, so their Persian text is asserted as it is shown (Persian digits, Jalali
dates); the provider's pages are asserted by structure.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jdatetime
import pytest
import requests
from sqlalchemy import func, select

from clients.device_registry import SCOPE
from clients.device_registry import create_app as registry_app
from clients.device_registry.models import DEMO_DEVICES, Device, LoginSession, Ticket, db
from clients.rp_kit.dates import TEHRAN, jalali, persian_digits
from clients.rp_kit.settings import RpSettings
from clients.rp_kit.validators import luhn_ok

from .helpers import UserInfo, create_test_user, find_form, parse_page
from .relying_parties import (  # noqa: F401 - the fixture is used by name
    PersonBrowser,
    RunningSite,
    assert_site_icon,
    relying_party,
)

#: Demo devices (clients/device_registry/data/demo_devices.json).
A54 = ("352916114827349", "352916114827356")  # 0012345679, dual SIM
NOKIA = "356782103948215"  # 0012345679, single SIM
S21 = ("354018221956307", "354018221956315")  # 0012345679, dual SIM, blocked
REDMI = ("864123065571205", "864123065571213")  # 0499370899, dual SIM
IPHONE = ("353467118320450", "353467118320468")  # 0499370899, dual SIM
MINE = {*A54, NOKIA, *S21}
THEIRS = {*REDMI, *IPHONE}

OTHER_CODE = "0499370899"
OTHER_MOBILE = "+989351112233"

MISMATCH = "imei_mismatch"
MISMATCH_TITLE = "شناسه دستگاه (IMEI) من با شناسه دستگاه ثبت شده در همتا تطابق ندارد"
NOT_REGISTERED = "not_registered"
NOT_FOUND = "موردی یافت نشد"


def with_check_digit(body: str) -> str:
    return next(body + digit for digit in "0123456789" if luhn_ok(body + digit))


#: A valid IMEI registered to nobody, and the second IMEI the A54 really reports (the registered one is wrong).
UNREGISTERED = with_check_digit("35999901234567")
A54_REAL_SECOND = with_check_digit("35291611482736")
#: A54's first IMEI with a wrong check digit.
BAD_LUHN = A54[0][:-1] + str((int(A54[0][-1]) + 1) % 10)


# -- helpers ---------------------------------------------------------------------------------------------


@pytest.fixture
def site(relying_party) -> RunningSite:  # noqa: F811
    return relying_party("device_registry", registry_app)


def log_in(site: RunningSite, live_server: str, user: UserInfo) -> tuple[PersonBrowser, requests.Response]:
    browser = PersonBrowser(live_server)
    landing = browser.get(site.base_url + "/")
    assert 'id="login"' in landing.text
    page = browser.get(urljoin(landing.url, parse_page(landing.text).links["login"]))
    page = browser.log_in_at_provider(page, user)
    assert page.url == site.base_url + "/", page.url
    return browser, page


class _Controls(HTMLParser):
    """The attributes of each input and textarea, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("input", "textarea") and values.get("name"):
            self.controls[values["name"]] = values


def field_error(page: requests.Response, name: str) -> str | None:
    """The error shown for field ``name``, checked to be linked to the field by aria-describedby."""
    match = re.search(rf'<p class="error" id="{re.escape(name)}-error">(.*?)</p>', page.text, re.S)
    if match is None:
        return None
    parser = _Controls()
    parser.feed(page.text)
    control = parser.controls[name]
    assert f"{name}-error" in control.get("aria-describedby", "").split(), control
    assert control.get("aria-invalid") == "true", control
    return match.group(1).strip()


def all_errors(page: requests.Response) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([\w-]+)-error">(.*?)</p>', page.text, re.S))


def ticket_rows(page: requests.Response) -> list[dict[str, str]]:
    """The rows of the tickets table: number and status from data attributes, and the cells' text."""
    rows = []
    for attrs, body in re.findall(r'<tr class="ticket-row"([^>]*)>(.*?)</tr>', page.text, re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
        rows.append({**dict(re.findall(r'data-(\w+)="([^"]*)"', attrs)), "cells": cells})
    return rows


def answer_of(page: requests.Response, number: str) -> str | None:
    match = re.search(
        rf'<tr class="ticket-answer" data-number="{re.escape(number)}">.*?<span class="answer-text">(.*?)</span>',
        page.text,
        re.S,
    )
    return match.group(1) if match else None


def ticket_form(browser: PersonBrowser, site: RunningSite, subject: str) -> requests.Response:
    page = browser.get(f"{site.base_url}/tickets/new/{subject}")
    assert page.status_code == 200
    return page


def mismatch_data(**changes: str) -> dict[str, str]:
    data = {
        "device_imei1": A54[0],
        "device_imei2": A54_REAL_SECOND,
        "registered_imei1": A54[0],
        "registered_imei2": A54[1],
        "description": "شناسه دوم گوشی با شناسه ثبت شده فرق دارد.",
    }
    data.update(changes)
    return data


def file_ticket(browser: PersonBrowser, site: RunningSite, subject: str, data: dict[str, str]) -> requests.Response:
    return browser.submit(ticket_form(browser, site, subject), data, action_contains=f"/tickets/new/{subject}")


def tickets_page(browser: PersonBrowser, site: RunningSite, page: int = 1) -> requests.Response:
    response = browser.get(f"{site.base_url}/tickets?page={page}")
    assert response.status_code == 200
    return response


def jalali_now_candidates(before: dt.datetime) -> set[str]:
    """Today's Jalali date in Tehran, both as of ``before`` and now (a test may cross midnight)."""
    return {jalali(before), jalali(dt.datetime.now(dt.UTC))}


def jalali_year_months(before: dt.datetime) -> set[str]:
    """``140409``: the Jalali year and month in Tehran, as of ``before`` and now."""
    months = set()
    for moment in (before, dt.datetime.now(dt.UTC)):
        day = jdatetime.date.fromgregorian(date=moment.astimezone(TEHRAN).date())
        months.add(f"{day.year:04d}{day.month:02d}")
    return months


def cli(site: RunningSite, *args: str) -> Any:
    return site.app.test_cli_runner().invoke(args=["tickets", *args])


def session_count(site: RunningSite) -> int:
    with site.app.app_context():
        return db.session.scalar(select(func.count()).select_from(LoginSession)) or 0


def ticket_count(site: RunningSite) -> int:
    with site.app.app_context():
        return db.session.scalar(select(func.count()).select_from(Ticket)) or 0


# -- login and the menu ----------------------------------------------------------------------------------

MENU = {
    "menu-devices": ("/devices", "مدیریت دستگاه ها"),
    "menu-sim-cards": ("/sim-cards", "مدیریت سیم کارت ها"),
    "menu-inquiry": ("/inquiry", "استعلام اصالت دستگاه"),
    "menu-imei-status": ("/imei-status", "وضعیت شناسه دستگاه (IMEI)"),
    "menu-transfers": ("/transfers", "سوابق انتقال مالکیت"),
    "menu-tickets": ("/tickets", "ثبت و پیگیری مشکلات"),
    "menu-account": ("/account", "حساب کاربری"),
}


def test_the_site_has_its_icon(site):
    assert_site_icon(site.base_url)


def test_login_with_hoviyat_lands_on_the_menu(app, live_server, user, site):
    browser, page = log_in(site, live_server, user)
    links = parse_page(page.text).links
    for link_id, (path, title) in MENU.items():
        assert links[link_id] == path
        assert title in page.text
        assert browser.get(site.base_url + path).status_code == 200
    logout = find_form(page.text, action_contains="/auth/logout")
    assert logout.method == "post" and "csrf_token" in logout.fields
    assert 'id="logout"' in page.text and "خروج" in page.text
    assert 'id="login"' not in page.text


def test_the_registry_asks_hoviyat_for_its_own_scopes_only_never_the_address(app, live_server, site):
    response = requests.get(site.base_url + "/auth/login", allow_redirects=False, timeout=15)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(live_server + "/authorize")
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    assert query["scope"].split() == SCOPE.split() == ["openid", "profile", "phone", "national_id"]
    assert "address" not in query["scope"]
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["state"] and query["nonce"]
    assert query["redirect_uri"] == site.base_url + "/auth/callback"


@pytest.mark.parametrize(
    "path",
    [
        "/devices",
        "/sim-cards",
        "/inquiry",
        "/imei-status",
        "/transfers",
        "/tickets",
        "/tickets?page=2",
        "/tickets/new",
        f"/tickets/new/{MISMATCH}",
        "/account",
    ],
)
def test_pages_send_a_logged_out_visitor_to_login(app, live_server, site, path):
    response = requests.get(site.base_url + path, allow_redirects=False, timeout=15)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/auth/login"
    assert parse_qs(location.query)["next"][0].startswith(urlsplit(path).path)


def test_after_login_the_visitor_is_back_on_the_page_they_asked_for(app, live_server, user, site):
    browser = PersonBrowser(live_server)
    page = browser.get(site.base_url + "/tickets")
    assert page.url.startswith(live_server) and 'name="password"' in page.text  # Hoviyat's login page
    page = browser.log_in_at_provider(page, user)
    assert urlsplit(page.url).path == "/tickets"
    assert NOT_FOUND in page.text


# -- devices, SIM cards, IMEI status, transfers, account ---------------------------------------------------


def test_each_person_sees_only_the_devices_of_their_own_national_id(app, live_server, user, site):
    first, _ = log_in(site, live_server, user)
    page = first.get(site.base_url + "/devices")
    shown = set(re.findall(r'class="device-row" data-imei="(\d+)"', page.text))
    assert shown == {A54[0], NOKIA, S21[0]}
    for imei in MINE:
        assert persian_digits(imei) in page.text
    for imei in THEIRS:
        assert imei not in page.text and persian_digits(imei) not in page.text
    assert "Samsung Galaxy A54 5G" in page.text and "Apple iPhone 14 Pro" not in page.text
    assert "دوسیم‌کارته" in page.text and "تک‌سیم‌کارته" in page.text

    other = create_test_user(app, national_code=OTHER_CODE, mobile=OTHER_MOBILE)
    second, _ = log_in(site, live_server, other)
    page = second.get(site.base_url + "/devices")
    assert set(re.findall(r'class="device-row" data-imei="(\d+)"', page.text)) == {REDMI[0], IPHONE[0]}
    for imei in MINE:
        assert imei not in page.text and persian_digits(imei) not in page.text
    assert persian_digits(OTHER_CODE) in page.text

    # The first person's page is unchanged by the second login.
    assert set(re.findall(r'class="device-row" data-imei="(\d+)"', first.get(site.base_url + "/devices").text)) == {
        A54[0],
        NOKIA,
        S21[0],
    }


def test_imei_status_lists_each_imei_of_the_persons_devices_with_its_status(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/imei-status")
    rows = dict(re.findall(r'class="imei-row" data-imei="(\d+)" data-status="(\w+)"', page.text))
    assert rows == {A54[0]: "active", A54[1]: "active", NOKIA: "active", S21[0]: "blocked", S21[1]: "blocked"}
    assert "مسدود (گزارش سرقت)" in page.text and "فعال" in page.text


def test_sim_cards_show_the_mobile_from_hoviyat_in_national_format(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/sim-cards")
    assert re.search(r'id="sim-number">۰۹۱۲۱۲۳۴۵۶۷<', page.text)
    assert "همراه اول" in page.text
    assert "+98" not in page.text

    other = create_test_user(app, national_code=OTHER_CODE, mobile=OTHER_MOBILE)
    second, _ = log_in(site, live_server, other)
    page = second.get(site.base_url + "/sim-cards")
    assert re.search(r'id="sim-number">۰۹۳۵۱۱۱۲۲۳۳<', page.text)
    assert "ایرانسل" in page.text


def test_ownership_transfers_show_an_empty_table(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/transfers")
    assert 'id="transfers"' in page.text
    assert NOT_FOUND in page.text


def test_account_shows_the_claims_received_from_hoviyat(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/account")
    assert re.search(r'id="claim-name">علی رضایی<', page.text)
    assert re.search(r'id="claim-national-id">۰۰۱۲۳۴۵۶۷۹<', page.text)
    assert re.search(r'id="claim-birthdate">۱۳۶۹/۰۱/۰۱<', page.text)  # 1990-03-21
    assert re.search(r'id="claim-mobile">۰۹۱۲۱۲۳۴۵۶۷<', page.text)
    assert "تأییدشده" in page.text  # the national ID came with verified_claims
    source = re.search(r'id="claims-source">(.*?)</p>', page.text, re.S)
    assert source is not None and "«هویت»" in source.group(1)
    # The registry by its name, not the trust framework's identifier.
    assert "سازمان ثبت احوال کشور" in source.group(1)
    assert "ir_sabt_ahval" not in page.text


# -- authenticity inquiry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "model"),
    [
        (A54[0], "Samsung Galaxy A54 5G"),
        (persian_digits(A54[1]), "Samsung Galaxy A54 5G"),  # the second IMEI, in Persian digits
        (REDMI[0].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")), "Xiaomi Redmi Note 13"),  # Arabic-Indic
        (f"{NOKIA[:2]}-{NOKIA[2:8]} {NOKIA[8:]}", "Nokia 106"),
    ],
)
def test_inquiry_finds_a_registered_imei_and_names_its_model(app, live_server, user, site, typed, model):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/inquiry")
    page = browser.submit(page, {"imei": typed}, action_contains="/inquiry")
    assert page.status_code == 200
    assert 'data-found="yes"' in page.text
    assert re.search(rf'id="inquiry-model">{re.escape(model)}<', page.text)
    assert field_error(page, "imei") is None
    assert persian_digits(OTHER_CODE) not in page.text and OTHER_CODE not in page.text  # never the owner


@pytest.mark.parametrize("typed", [UNREGISTERED, persian_digits(UNREGISTERED)])
def test_inquiry_says_when_a_valid_imei_is_not_registered(app, live_server, user, site, typed):
    browser, _ = log_in(site, live_server, user)
    page = browser.submit(browser.get(site.base_url + "/inquiry"), {"imei": typed}, action_contains="/inquiry")
    assert 'data-found="no"' in page.text
    assert "یافت نشد" in page.text
    assert persian_digits(UNREGISTERED) in page.text


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        (BAD_LUHN, "معتبر نیست"),
        (persian_digits(BAD_LUHN), "معتبر نیست"),
        (A54[0][:14], "۱۵ رقم"),
        (A54[0] + "1", "۱۵ رقم"),
        ("35291611482734x", "۱۵ رقم"),
        ("", "وارد کنید"),
    ],
)
def test_inquiry_rejects_an_invalid_imei_with_a_field_error(app, live_server, user, site, typed, fragment):
    browser, _ = log_in(site, live_server, user)
    page = browser.submit(browser.get(site.base_url + "/inquiry"), {"imei": typed}, action_contains="/inquiry")
    assert page.status_code == 200
    error = field_error(page, "imei")
    assert error is not None and fragment in error
    assert 'id="inquiry-result"' not in page.text


# -- tickets -----------------------------------------------------------------------------------------------


def test_a_new_person_has_no_tickets(app, live_server, user, site):
    browser, page = log_in(site, live_server, user)
    page = browser.get(urljoin(page.url, parse_page(page.text).links["menu-tickets"]))
    for column in ("ردیف", "شماره تیکت", "شناسه دستگاه", "تاریخ ایجاد", "موضوع", "وضعیت"):
        assert f"<th>{column}</th>" in page.text
    assert NOT_FOUND in page.text
    assert ticket_rows(page) == []
    assert "نمایش محتویات ۱۰" in page.text
    assert "قبلی" in page.text and "بعدی" in page.text
    links = parse_page(page.text).links
    assert "next-page" not in links and "prev-page" not in links
    assert links["create-ticket"] == "/tickets/new"


def test_create_offers_each_subject_with_its_guidance(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    page = browser.get(site.base_url + "/tickets/new")
    subjects = re.findall(r'name="subject" value="(\w+)"', page.text)
    assert MISMATCH in subjects and len(subjects) >= 3
    assert MISMATCH_TITLE in page.text
    assert page.text.count("راهنمای ثبت") >= len(subjects)
    assert "ورود هر دو شناسه دستگاه صحیح و هر دو شناسه ثبت شده در سامانه همتا الزامی است" in page.text
    chosen = browser.session.get(site.base_url + "/tickets/new", params={"subject": MISMATCH}, timeout=15)
    assert urlsplit(chosen.url).path == f"/tickets/new/{MISMATCH}"
    fields = find_form(chosen.text, action_contains=f"/tickets/new/{MISMATCH}").fields
    assert {"device_imei1", "device_imei2", "registered_imei1", "registered_imei2", "csrf_token"} <= set(fields)
    assert 'name="description"' in chosen.text
    assert "راهنما" in chosen.text and MISMATCH_TITLE in chosen.text


def test_an_imei_mismatch_ticket_for_the_dual_sim_device_is_listed_as_submitted(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    before = dt.datetime.now(dt.UTC)
    page = file_ticket(browser, site, MISMATCH, mismatch_data())
    assert urlsplit(page.url).path == "/tickets"
    [row] = ticket_rows(page)
    number = row["number"]
    assert re.fullmatch(r"\d{6}-\d{6}", number)
    assert number[:6] in jalali_year_months(before)
    assert row["status"] == "submitted"
    rank, shown_number, imei, created, subject, status = row["cells"]
    assert rank == "۱"
    assert shown_number == persian_digits(number)
    assert imei == persian_digits(A54[0])
    assert created in jalali_now_candidates(before)
    assert re.fullmatch(r"[۰-۹]{4}/[۰-۹]{2}/[۰-۹]{2}", created)
    assert subject == MISMATCH_TITLE
    assert status == "ثبت شده"
    assert persian_digits(number) in page.text  # the confirmation names the number
    assert NOT_FOUND not in page.text
    with site.app.app_context():
        ticket = db.session.scalar(select(Ticket))
        assert (ticket.device_imei1, ticket.device_imei2) == (A54[0], A54_REAL_SECOND)
        assert (ticket.registered_imei1, ticket.registered_imei2) == A54


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(mismatch_data(registered_imei1=A54[1], registered_imei2=A54[0]), id="registered-reversed"),
        pytest.param(
            mismatch_data(**{k: persian_digits(v) for k, v in mismatch_data().items() if "imei" in k}),
            id="persian-digits",
        ),
        pytest.param(
            mismatch_data(device_imei1=UNREGISTERED, device_imei2="", registered_imei1=NOKIA, registered_imei2=""),
            id="single-sim",
        ),
    ],
)
def test_imei_mismatch_tickets_accept_either_order_persian_digits_and_single_sim(app, live_server, user, site, data):
    browser, _ = log_in(site, live_server, user)
    page = file_ticket(browser, site, MISMATCH, data)
    assert all_errors(page) == {}
    assert [row["status"] for row in ticket_rows(page)] == ["submitted"]


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        pytest.param({"device_imei1": BAD_LUHN}, "device_imei1", "معتبر نیست", id="bad-luhn"),
        pytest.param(
            {"registered_imei2": persian_digits(BAD_LUHN)}, "registered_imei2", "معتبر نیست", id="bad-luhn-fa"
        ),
        pytest.param({"device_imei2": A54_REAL_SECOND[:14]}, "device_imei2", "۱۵ رقم", id="14-digits"),
        pytest.param(
            {"registered_imei1": REDMI[0], "registered_imei2": REDMI[1]},
            "registered_imei1",
            "به نام شما",
            id="another-persons-device",
        ),
        pytest.param({"registered_imei1": UNREGISTERED}, "registered_imei1", "به نام شما", id="unregistered-device"),
        pytest.param(
            {"registered_imei2": S21[1]}, "registered_imei2", "یکی از دستگاه", id="pair-from-two-of-my-devices"
        ),
        pytest.param({"registered_imei2": ""}, "registered_imei2", "هر دو", id="dual-sim-one-registered-imei"),
        pytest.param({"device_imei2": ""}, "device_imei2", "دوسیم‌کارته", id="dual-sim-one-device-imei"),
        pytest.param(
            {"device_imei1": UNREGISTERED, "registered_imei1": NOKIA, "registered_imei2": A54_REAL_SECOND},
            "registered_imei2",
            "تک‌سیم‌کارته",
            id="two-imeis-for-single-sim",
        ),
        pytest.param(
            {
                "device_imei1": UNREGISTERED,
                "device_imei2": A54_REAL_SECOND,
                "registered_imei1": NOKIA,
                "registered_imei2": "",
            },
            "device_imei2",
            "تک‌سیم‌کارته",
            id="two-device-imeis-for-single-sim",
        ),
        pytest.param({"device_imei2": A54[0]}, "device_imei2", "یکسان", id="same-imei-twice"),
        pytest.param({"device_imei2": A54[1]}, "device_imei1", "مغایرتی وجود ندارد", id="no-mismatch-at-all"),
        pytest.param({"description": "   "}, "description", "شرح درخواست", id="missing-description"),
        pytest.param({"description": "ب" * 1001}, "description", "۱٬۰۰۰", id="description-too-long"),
    ],
)
def test_invalid_imei_mismatch_tickets_are_refused_with_a_field_error(
    app, live_server, user, site, changes, field, fragment
):
    browser, _ = log_in(site, live_server, user)
    page = file_ticket(browser, site, MISMATCH, mismatch_data(**changes))
    assert page.status_code == 200
    assert urlsplit(page.url).path == f"/tickets/new/{MISMATCH}"
    error = field_error(page, field)
    assert error is not None and fragment in error, all_errors(page)
    assert ticket_count(site) == 0
    assert NOT_FOUND in tickets_page(browser, site).text


def test_other_subjects_take_one_imei_and_a_description(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    form = find_form(ticket_form(browser, site, NOT_REGISTERED).text, action_contains=NOT_REGISTERED)
    assert {"imei", "csrf_token"} <= set(form.fields) and "device_imei1" not in form.fields
    page = file_ticket(browser, site, NOT_REGISTERED, {"imei": persian_digits(BAD_LUHN), "description": "x"})
    assert "معتبر نیست" in (field_error(page, "imei") or "")
    page = file_ticket(browser, site, NOT_REGISTERED, {"imei": UNREGISTERED, "description": ""})
    assert field_error(page, "description") is not None
    assert ticket_count(site) == 0
    page = file_ticket(
        browser, site, NOT_REGISTERED, {"imei": persian_digits(UNREGISTERED), "description": "از فروشگاه خریدم."}
    )
    [row] = ticket_rows(page)
    assert row["cells"][2] == persian_digits(UNREGISTERED)
    assert row["cells"][4] == "دستگاه من در سامانه همتا ثبت نشده است"
    assert row["status"] == "submitted"


def test_an_unknown_subject_is_not_found(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    assert browser.get(site.base_url + "/tickets/new/nothing").status_code == 404
    page = browser.session.get(site.base_url + "/tickets/new", params={"subject": "nothing"}, timeout=15)
    assert urlsplit(page.url).path == "/tickets/new"


def test_a_ticket_without_the_csrf_token_is_refused(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    response = browser.session.post(
        f"{site.base_url}/tickets/new/{NOT_REGISTERED}", data={"imei": UNREGISTERED, "description": "x"}, timeout=15
    )
    assert response.status_code == 400
    assert ticket_count(site) == 0


def test_tickets_are_private_to_the_person_who_filed_them(app, live_server, user, site):
    first, _ = log_in(site, live_server, user)
    file_ticket(first, site, MISMATCH, mismatch_data())
    other = create_test_user(app, national_code=OTHER_CODE, mobile=OTHER_MOBILE)
    second, _ = log_in(site, live_server, other)
    page = tickets_page(second, site)
    assert ticket_rows(page) == [] and NOT_FOUND in page.text
    # Nor can they file a mismatch for the first person's device.
    page = file_ticket(second, site, MISMATCH, mismatch_data())
    assert "به نام شما" in (field_error(page, "registered_imei1") or "")


def test_tickets_are_paged_ten_at_a_time(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    for index in range(12):
        page = file_ticket(browser, site, NOT_REGISTERED, {"imei": UNREGISTERED, "description": f"درخواست {index}"})
        assert page.status_code == 200 and urlsplit(page.url).path == "/tickets"
    first = tickets_page(browser, site)
    rows = ticket_rows(first)
    assert len(rows) == 10
    assert [row["cells"][0] for row in rows] == [persian_digits(n) for n in range(1, 11)]
    links = parse_page(first.text).links
    assert "prev-page" not in links and links["next-page"] == "/tickets?page=2"
    second = browser.get(urljoin(first.url, links["next-page"]))
    rest = ticket_rows(second)
    assert len(rest) == 2
    assert [row["cells"][0] for row in rest] == ["۱۱", "۱۲"]
    links = parse_page(second.text).links
    assert "next-page" not in links and links["prev-page"] == "/tickets?page=1"
    numbers = [row["number"] for row in rows + rest]
    assert len(set(numbers)) == 12
    assert numbers == sorted(numbers, key=lambda n: int(n.split("-")[1]), reverse=True)  # newest first
    # Out-of-range and malformed pages show a real page, never an error.
    assert len(ticket_rows(tickets_page(browser, site, 99))) == 2
    assert len(ticket_rows(browser.get(site.base_url + "/tickets?page=abc"))) == 10


def test_staff_move_a_ticket_under_review_then_resolve_it_and_the_person_sees_it(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    [row] = ticket_rows(file_ticket(browser, site, MISMATCH, mismatch_data()))
    number = row["number"]

    listed = cli(site, "list")
    assert listed.exit_code == 0 and number in listed.output and "submitted" in listed.output

    result = cli(site, "set-status", number, "under_review")
    assert result.exit_code == 0, result.output
    page = tickets_page(browser, site)
    [row] = ticket_rows(page)
    assert row["status"] == "under_review" and row["cells"][5] == "در حال بررسی"
    assert answer_of(page, number) is None

    answer = "شناسه دوم دستگاه شما اصلاح شد."
    result = cli(site, "set-status", persian_digits(number), "resolved", "--answer", answer)
    assert result.exit_code == 0, result.output
    page = tickets_page(browser, site)
    [row] = ticket_rows(page)
    assert row["status"] == "resolved" and row["cells"][5] == "حل شده"
    assert answer_of(page, number) == answer
    assert "resolved" in cli(site, "list", "--status", "resolved").output


def test_staff_can_reject_a_ticket_under_review_with_an_answer(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    [row] = ticket_rows(file_ticket(browser, site, MISMATCH, mismatch_data()))
    assert cli(site, "set-status", row["number"], "under_review").exit_code == 0
    answer = "دستگاه با شناسه دوم روی شبکه دیده نشده است."
    assert cli(site, "set-status", row["number"], "rejected", "--answer", answer).exit_code == 0
    page = tickets_page(browser, site)
    assert ticket_rows(page)[0]["cells"][5] == "رد شده"
    assert answer_of(page, row["number"]) == answer


@pytest.mark.parametrize(
    ("path", "attempt", "message"),
    [
        pytest.param([], ["resolved", "--answer", "done"], "cannot become resolved", id="submitted-to-resolved"),
        pytest.param([], ["rejected", "--answer", "no"], "cannot become rejected", id="submitted-to-rejected"),
        pytest.param([], ["submitted"], "cannot become submitted", id="submitted-to-submitted"),
        pytest.param(["under_review"], ["submitted"], "cannot become submitted", id="under-review-to-submitted"),
        pytest.param(["under_review"], ["resolved"], "answer", id="resolved-without-answer"),
        pytest.param(
            ["under_review", "resolved"], ["submitted"], "cannot become submitted", id="resolved-to-submitted"
        ),
        pytest.param(["under_review", "resolved"], ["rejected", "--answer", "no"], "closed", id="resolved-to-rejected"),
        pytest.param(["under_review", "rejected"], ["under_review"], "closed", id="rejected-to-under-review"),
    ],
)
def test_staff_cannot_make_an_invalid_transition(app, live_server, user, site, path, attempt, message):
    browser, _ = log_in(site, live_server, user)
    [row] = ticket_rows(file_ticket(browser, site, MISMATCH, mismatch_data()))
    for status in path:
        extra = ["--answer", "answered"] if status in ("resolved", "rejected") else []
        assert cli(site, "set-status", row["number"], status, *extra).exit_code == 0
    expected = (path or ["submitted"])[-1]
    result = cli(site, "set-status", row["number"], *attempt)
    assert result.exit_code != 0
    assert message in result.output
    assert ticket_rows(tickets_page(browser, site))[0]["status"] == expected


def test_staff_command_on_an_unknown_ticket_fails(app, live_server, site):
    result = cli(site, "set-status", "140409-999999", "under_review")
    assert result.exit_code != 0 and "no ticket" in result.output
    assert cli(site, "set-status", "140409-999999", "closed").exit_code != 0  # not a status


# -- logout --------------------------------------------------------------------------------------------------


def test_the_logout_button_ends_the_sites_session_and_the_providers(app, live_server, user, site):
    browser, page = log_in(site, live_server, user)
    assert session_count(site) == 1
    page = browser.submit(page, {}, action_contains="/auth/logout")
    assert page.url == site.base_url + "/"
    assert 'id="login"' in page.text and 'id="menu-devices"' not in page.text
    assert "از حساب خود خارج شدید" in page.text  # the state came back from the provider
    assert session_count(site) == 0
    # The provider's session ended too (RP-initiated logout): its account page asks for a login again,
    # and the site's next login goes through the provider's login form.
    account = browser.get(live_server + "/")
    assert 'name="password"' in account.text
    page = browser.get(site.base_url + "/devices")
    assert page.url.startswith(live_server) and 'name="password"' in page.text


def test_logging_out_at_the_provider_ends_the_sites_session_by_back_channel(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    assert session_count(site) == 1
    account = browser.get(live_server + "/")
    page = browser.submit(account, {"confirm": "yes"}, action_contains="/logout")
    assert page.status_code == 200
    assert session_count(site) == 0
    page = browser.get(site.base_url + "/")
    assert 'id="login"' in page.text and 'id="menu-devices"' not in page.text
    response = browser.session.get(site.base_url + "/devices", allow_redirects=False, timeout=15)
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/auth/login"


def test_a_forged_back_channel_logout_token_ends_nothing(app, live_server, user, site):
    browser, _ = log_in(site, live_server, user)
    response = requests.post(
        site.base_url + "/auth/backchannel-logout", data={"logout_token": "e30.e30.AAAA"}, timeout=15
    )
    assert response.status_code == 400
    assert session_count(site) == 1
    assert 'id="menu-devices"' in browser.get(site.base_url + "/").text


# -- demo data -----------------------------------------------------------------------------------------------


def test_demo_devices_are_valid_and_seeded_once(tmp_path):
    entries = json.loads(DEMO_DEVICES.read_text(encoding="utf-8"))
    for entry in entries:
        imeis = [entry["imei1"], *([entry["imei2"]] if entry["imei2"] else [])]
        assert all(len(i) == 15 and luhn_ok(i) for i in imeis), entry
        assert entry["dual_sim"] == (entry["imei2"] is not None), entry
    mine = [e for e in entries if e["national_id"] == "0012345679"]
    assert any(e["dual_sim"] for e in mine) and any(not e["dual_sim"] for e in mine)
    assert {e["national_id"] for e in entries} >= {"0012345679", OTHER_CODE, "1234567891"}

    settings = RpSettings(
        issuer="http://127.0.0.1:9",
        client_id="registry",
        client_secret="secret",
        base_url="http://127.0.0.1:5002",
        database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        secret_key="test",
    )
    for _ in range(2):  # a restart must not add the devices again
        application = registry_app(settings)
        with application.app_context():
            assert db.session.scalar(select(func.count()).select_from(Device)) == len(entries)
            db.session.remove()
            db.engine.dispose()
