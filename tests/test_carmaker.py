"""The carmaker's sales portal (clients/carmaker/): a person logs in with Hoviyat, completes a purchase file
(postal address and a Sheba number that cannot be changed), orders a car from a sale plan, cancels to choose
another, or withdraws from the plan. Everything goes over real HTTP: the provider is ``live_server``, the
site runs on its own port, and a ``PersonBrowser`` follows the redirects between them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import func, select

from clients.carmaker import LoginSession, Order, PurchaseFile, User, current_plans
from clients.carmaker import create_app as carmaker_app
from clients.carmaker import db as site_db
from idp.extensions import db as idp_db
from idp.store.models import User as ProviderUser

from .helpers import create_test_user, find_form, parse_page
from .relying_parties import (  # noqa: F401 - the fixture is used by name
    PersonBrowser,
    RunningSite,
    assert_site_icon,
    relying_party,
)
from .test_rp_validators import iranian_iban

SHEBA = iranian_iban("0170000000123456789012")
OTHER_SHEBA = iranian_iban("0550012345678901234567")
POSTAL_CODE = "1345678901"
ADDRESS = "تهران، خیابان آزادی، کوچه یاس، پلاک ۷"
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")

#: Today's plans: this season's immediate sale (``1405-fall``, say) and this year's pre-sale (``1405-presale``).
IMMEDIATE, PRESALE = (plan.id for plan in current_plans())

#: The statuses the orders table shows.
ACTIVE, CANCELLED, WITHDRAWN = "فعال", "لغو شده", "انصراف از طرح"

#: Fields a form of the site must never have: the verified identity comes from Hoviyat, not from the user.
IDENTITY_FIELDS = re.compile(
    r'name="(national_code|national_id|code_melli|given_name|family_name|name|first_name|last_name|'
    r'birthdate|birth_year|birth_month|birth_day|mobile|phone|phone_number)"'
)


def persian(text: str) -> str:
    return text.translate(PERSIAN)


# -- helpers shared with test_rp_kit -------------------------------------------------------------------


@contextmanager
def site_session(site: RunningSite) -> Iterator[Any]:
    """The site's own database session (the carmaker's SQLite file)."""
    with site.app.app_context():
        yield site_db.session
        site_db.session.rollback()


def log_in(browser: PersonBrowser, site: RunningSite, user: Any) -> requests.Response:
    """«ورود با هویت» from the landing page, then national code and password and consent at Hoviyat."""
    landing = browser.get(site.base_url + "/")
    links = parse_page(landing.text).links
    assert "login" in links, landing.text[:2000]
    page = browser.get(urljoin(landing.url, links["login"]))
    page = browser.log_in_at_provider(page, user)
    assert page.status_code == 200, page.text[:2000]
    assert page.url == site.base_url + "/", page.url
    assert 'id="national-id"' in page.text
    return page


def is_logged_in(browser: PersonBrowser, site: RunningSite) -> bool:
    page = browser.session.get(site.base_url + "/", timeout=15, allow_redirects=False)
    assert page.status_code == 200
    logged_in = 'id="national-id"' in page.text
    assert logged_in != ('id="login"' in page.text), "the home page is either the account or the landing page"
    return logged_in


def csrf_token(page: requests.Response) -> str:
    for form in parse_page(page.text).forms:
        if form.fields.get("csrf_token"):
            return form.fields["csrf_token"]
    raise AssertionError(f"no csrf_token on {page.url}")


def post(
    browser: PersonBrowser, site: RunningSite, path: str, data: dict[str, str], *, follow: bool = True
) -> requests.Response:
    return browser.session.post(site.base_url + path, data=data, timeout=15, allow_redirects=follow)


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no #{element_id}"
    return unescape(match.group(1)).strip()


def field_error(page: requests.Response, field: str) -> str | None:
    match = re.search(rf'id="{re.escape(field)}-error"[^>]*>(.*?)</p>', page.text, re.S)
    return unescape(match.group(1)).strip() if match else None


def order_statuses(page: requests.Response) -> list[str]:
    """The status column of #orders, newest first."""
    if 'id="orders"' not in page.text:
        return []
    return [s.strip() for s in re.findall(r'<td class="status"[^>]*>(.*?)</td>', page.text, re.S)]


def fill_purchase_file(
    browser: PersonBrowser, site: RunningSite, **values: str
) -> tuple[requests.Response, requests.Response]:
    """Open the purchase file, submit it with ``values`` over the defaults; returns (form page, answer)."""
    page = browser.get(site.base_url + "/purchase-file")
    assert page.status_code == 200
    data = {"postal_address": ADDRESS, "postal_code": POSTAL_CODE, "sheba": SHEBA, **values}
    return page, browser.submit(page, data, action_contains="/purchase-file")


def complete_purchase_file(browser: PersonBrowser, site: RunningSite) -> None:
    _, answer = fill_purchase_file(browser, site)
    assert answer.url == site.base_url + "/plans", answer.text[:2000]


def order_car(browser: PersonBrowser, site: RunningSite, plan_id: str, car_id: str) -> requests.Response:
    """Press «سفارش» for this car on the plans page, or POST the order with the session's CSRF token when
    the page shows no such button (to check the server refuses it too)."""
    plans = browser.get(site.base_url + "/plans")
    action = f"/plans/{plan_id}/cars/{car_id}/order"
    if action in plans.text:
        return browser.submit(plans, {}, action_contains=action)
    return post(browser, site, action, {"csrf_token": csrf_token(plans)})


def orders_in_db(site: RunningSite) -> list[tuple[str, str, str]]:
    with site_session(site) as session:
        return [(o.plan_id, o.car_id, o.status) for o in session.scalars(select(Order).order_by(Order.id))]


def give_provider_address(app: Any, user_id: str, address: str, postal_code: str) -> None:
    with app.app_context():
        person = idp_db.session.get(ProviderUser, user_id)
        person.postal_address, person.postal_code = address, postal_code
        idp_db.session.commit()


@pytest.fixture
def carmaker(relying_party) -> RunningSite:  # noqa: F811
    return relying_party("carmaker", carmaker_app)


@pytest.fixture
def browser(live_server) -> PersonBrowser:
    return PersonBrowser(live_server)


# -- logging in ---------------------------------------------------------------------------------------


def test_visitors_see_the_landing_page_with_log_in_with_hoviyat(carmaker, browser):
    page = browser.get(carmaker.base_url + "/")
    assert page.status_code == 200
    assert '<html lang="fa" dir="rtl">' in page.text
    assert re.search(r'<a[^>]*id="login"[^>]*>ورود با هویت</a>', page.text)
    assert parse_page(page.text).links["login"] == "/auth/login"
    assert 'id="national-id"' not in page.text
    assert 'id="logout"' not in page.text
    assert not IDENTITY_FIELDS.search(page.text)


def test_the_site_has_its_icon(carmaker):
    assert_site_icon(carmaker.base_url)


@pytest.mark.parametrize("path", ["/purchase-file", "/plans", "/orders/1/withdraw"])
def test_pages_of_the_purchase_need_a_login(carmaker, browser, path):
    response = browser.session.get(carmaker.base_url + path, timeout=15, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_login_with_hoviyat_shows_the_verified_identity(carmaker, browser, user):
    page = log_in(browser, carmaker, user)
    assert text_of(page.text, "national-id") == persian("0012345679") == "۰۰۱۲۳۴۵۶۷۹"
    assert "<h1>علی رضایی</h1>" in page.text
    assert "۱۳۶۹/۰۱/۰۱" in page.text  # 1990-03-21 is 1 Farvardin 1369
    assert persian("+989121234567") in page.text
    assert 'id="logout"' in page.text
    with site_session(carmaker) as session:
        person = session.scalars(select(User)).one()
        assert person.national_id == "0012345679"
        assert (person.given_name, person.family_name) == ("علی", "رضایی")
        assert person.birthdate == "1990-03-21"
        assert person.phone_number == "+989121234567"
        assert person.sub and person.sub not in ("0012345679", user.id)  # a pairwise subject


def test_the_site_never_asks_for_the_national_code_or_name(carmaker, browser, user):
    pages = [log_in(browser, carmaker, user)]
    pages.append(browser.get(carmaker.base_url + "/purchase-file"))
    complete_purchase_file(browser, carmaker)
    pages.append(browser.get(carmaker.base_url + "/plans"))
    order_car(browser, carmaker, IMMEDIATE, "dena-plus")
    home = browser.get(carmaker.base_url + "/")
    pages.append(home)
    pages.append(browser.get(urljoin(home.url, parse_page(home.text).links["withdraw"])))
    for page in pages:
        assert page.status_code == 200, page.url
        assert not IDENTITY_FIELDS.search(page.text), page.url


# -- the purchase file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"postal_code": "134567890"}, "postal_code", id="postal-code-9-digits"),
        pytest.param({"postal_code": "13456789012"}, "postal_code", id="postal-code-11-digits"),
        pytest.param({"postal_code": "1205678901"}, "postal_code", id="postal-code-0-and-2-in-first-five"),
        pytest.param({"postal_code": ""}, "postal_code", id="postal-code-empty"),
        pytest.param(
            {"sheba": SHEBA[:2] + f"{(int(SHEBA[2:4]) + 1) % 100:02d}" + SHEBA[4:]}, "sheba", id="sheba-check"
        ),
        pytest.param({"sheba": SHEBA[:-1]}, "sheba", id="sheba-25-characters"),
        pytest.param({"sheba": "DE89370400440532013000"}, "sheba", id="sheba-german"),
        pytest.param({"sheba": ""}, "sheba", id="sheba-empty"),
        pytest.param({"postal_address": ""}, "postal_address", id="address-empty"),
    ],
)
def test_purchase_file_fields_are_validated(carmaker, browser, user, changes, field):
    log_in(browser, carmaker, user)
    _, answer = fill_purchase_file(browser, carmaker, **changes)
    assert answer.status_code == 200
    assert answer.url == carmaker.base_url + "/purchase-file"
    assert field_error(answer, field), answer.text[:3000]
    assert re.search(
        rf'<[^>]*name="{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*name="{field}"', answer.text
    )
    others = {"postal_address", "postal_code", "sheba"} - {field}
    assert not any(field_error(answer, other) for other in others)
    with site_session(carmaker) as session:
        assert session.scalar(select(func.count()).select_from(PurchaseFile)) == 0


def test_purchase_file_accepts_persian_digits(carmaker, browser, user):
    log_in(browser, carmaker, user)
    page, answer = fill_purchase_file(
        browser,
        carmaker,
        postal_code=persian("13456-78901"),
        sheba=" ".join(persian(SHEBA)[i : i + 4] for i in range(0, 26, 4)),
    )
    # Hoviyat has no address for this person: nothing to fill in.
    assert re.search(r"<textarea[^>]*name=\"postal_address\"[^>]*>\s*</textarea>", page.text)
    assert answer.url == carmaker.base_url + "/plans", answer.text[:3000]
    with site_session(carmaker) as session:
        saved = session.scalars(select(PurchaseFile)).one()
        assert (saved.postal_address, saved.postal_code, saved.sheba) == (ADDRESS, POSTAL_CODE, SHEBA)
    home = browser.get(carmaker.base_url + "/")
    assert 'id="purchase-file-done"' in home.text
    assert persian(SHEBA) in home.text


def test_address_is_prefilled_from_hoviyat(app, carmaker, browser, user):
    address = "اصفهان، خیابان چهارباغ عباسی، کوچه گلستان، پلاک ۱۲"
    give_provider_address(app, user.id, address, "8174673111")
    log_in(browser, carmaker, user)
    page = browser.get(carmaker.base_url + "/purchase-file")
    textarea = re.search(r'<textarea[^>]*name="postal_address"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert textarea and unescape(textarea.group(1)).strip() == address
    assert find_form(page.text, action_contains="/purchase-file").fields["postal_code"] == "8174673111"
    assert find_form(page.text, action_contains="/purchase-file").fields["sheba"] == ""  # never prefilled
    answer = browser.submit(page, {"postal_address": address, "sheba": SHEBA}, action_contains="/purchase-file")
    assert answer.url == carmaker.base_url + "/plans"
    with site_session(carmaker) as session:
        assert session.scalars(select(PurchaseFile)).one().postal_code == "8174673111"


def test_sheba_cannot_be_changed_after_saving(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    page = browser.get(carmaker.base_url + "/purchase-file")
    assert text_of(page.text, "sheba-fixed") == persian(SHEBA)
    assert "قابل تغییر نیست" in page.text
    assert 'name="sheba"' not in page.text  # shown, not editable
    form = find_form(page.text, action_contains="/purchase-file")
    assert form.fields["postal_code"] == POSTAL_CODE

    # A forged POST with another Sheba: the address may change, the Sheba stays.
    new_address = "تهران، خیابان انقلاب، پلاک ۳"
    answer = browser.session.post(
        urljoin(page.url, form.action),
        data={**form.fields, "postal_address": new_address, "postal_code": "9876543210", "sheba": OTHER_SHEBA},
        timeout=15,
    )
    assert answer.status_code == 200
    with site_session(carmaker) as session:
        saved = session.scalars(select(PurchaseFile)).one()
        assert saved.sheba == SHEBA
        assert (saved.postal_address, saved.postal_code) == (new_address, "9876543210")
    page = browser.get(carmaker.base_url + "/purchase-file")
    assert text_of(page.text, "sheba-fixed") == persian(SHEBA)
    assert persian(OTHER_SHEBA) not in browser.get(carmaker.base_url + "/").text


# -- ordering --------------------------------------------------------------------------------------------


def test_ordering_needs_a_purchase_file(carmaker, browser, user):
    log_in(browser, carmaker, user)
    plans = browser.get(carmaker.base_url + "/plans")
    assert f'id="plan-{IMMEDIATE}"' in plans.text
    assert 'id="order-' not in plans.text  # no order buttons yet
    response = post(
        browser, carmaker, f"/plans/{IMMEDIATE}/cars/dena-plus/order", {"csrf_token": csrf_token(plans)}, follow=False
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/purchase-file")
    assert orders_in_db(carmaker) == []


def test_order_cancel_and_choose_another_car(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    plans = browser.get(carmaker.base_url + "/plans")
    assert 'id="order-dena-plus"' in plans.text

    home = order_car(browser, carmaker, IMMEDIATE, "dena-plus")
    assert home.url == carmaker.base_url + "/"
    assert order_statuses(home) == [ACTIVE]
    assert "دنا پلاس" in home.text

    # One active order at a time: a second one is refused, and the plans page offers none.
    assert 'id="order-' not in browser.get(carmaker.base_url + "/plans").text
    refused = order_car(browser, carmaker, IMMEDIATE, "tara-v4")
    assert order_statuses(refused) == [ACTIVE]
    refused = order_car(browser, carmaker, PRESALE, "runna-plus")
    assert order_statuses(refused) == [ACTIVE]
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "active")]

    home = browser.get(carmaker.base_url + "/")
    assert re.search(r'id="cancel-order"[^>]*>لغو سفارش و انتخاب خودروی دیگر<', home.text)
    confirmation = browser.get(urljoin(home.url, parse_page(home.text).links["cancel-order"]))
    answer = browser.submit(confirmation, {}, action_contains="/cancel")
    assert answer.url == carmaker.base_url + "/plans"
    assert 'id="order-tara-v4"' in answer.text
    assert order_statuses(browser.get(carmaker.base_url + "/")) == [CANCELLED]

    home = order_car(browser, carmaker, IMMEDIATE, "tara-v4")
    assert order_statuses(home) == [ACTIVE, CANCELLED]
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "cancelled"), (IMMEDIATE, "tara-v4", "active")]


def test_cancelling_an_order_asks_for_confirmation_first(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    home = order_car(browser, carmaker, IMMEDIATE, "dena-plus")
    # On the home page cancelling is a link to a page of its own, not a button that acts at once.
    assert not any("/cancel" in form.action for form in parse_page(home.text).forms)
    assert re.search(r'<a [^>]*class="button secondary"[^>]*id="cancel-order"', home.text)
    assert re.search(r'<a [^>]*class="button secondary warn"[^>]*id="withdraw"', home.text)

    confirmation = browser.get(urljoin(home.url, parse_page(home.text).links["cancel-order"]))
    assert confirmation.status_code == 200
    assert "دنا پلاس دنده‌ای" in confirmation.text and current_plans()[0].name in confirmation.text
    assert re.search(r'<button type="submit" class="danger" id="confirm-cancel">', confirmation.text)
    assert re.search(r'<a href="/" class="button secondary" id="back">بازگشت</a>', confirmation.text)
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "active")]  # looking is not cancelling

    back = browser.get(urljoin(confirmation.url, parse_page(confirmation.text).links["back"]))
    assert order_statuses(back) == [ACTIVE]
    answer = browser.submit(confirmation, {}, action_contains="/cancel")
    assert answer.url == carmaker.base_url + "/plans"
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "cancelled")]


def test_plans_are_named_by_the_jalali_year_the_orders_are_dated_in(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    home = order_car(browser, carmaker, PRESALE, "runna-plus")
    plan_cell, date_cell = re.search(
        r'<td data-label="طرح">(.*?)</td>.*?<td data-label="تاریخ">(.*?)</td>', home.text, re.S
    ).groups()
    year = date_cell.strip()[:4]  # ۱۴۰۵/۰۹/۱۵
    assert re.fullmatch("[۰-۹]{4}", year), date_cell
    assert plan_cell.strip() == f"پیش‌فروش یک‌ساله {year}"
    plans = browser.get(carmaker.base_url + "/plans").text
    names = re.findall(r"<h2>(.*?)</h2>", plans)
    assert len(names) == 2 and all(name.endswith(year) for name in names), names


@pytest.mark.parametrize(
    ("today", "plans"),
    [
        (dt.date(2026, 3, 20), ["1404-winter", "1404-presale"]),  # 29 Esfand 1404
        (dt.date(2026, 3, 21), ["1405-spring", "1405-presale"]),  # 1 Farvardin 1405
        (dt.date(2026, 12, 6), ["1405-fall", "1405-presale"]),  # 15 Azar 1405
    ],
)
def test_the_plans_on_offer_follow_the_jalali_calendar(today, plans):
    offered = current_plans(today)
    assert [plan.id for plan in offered] == plans
    assert offered[0].name.startswith("طرح فروش فوری ") and offered[0].name.endswith(persian(plans[0][:4]))


def test_withdrawing_warns_needs_confirmation_and_closes_the_plan(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    home = order_car(browser, carmaker, IMMEDIATE, "dena-plus")
    links = parse_page(home.text).links
    assert "withdraw" in links

    warning = browser.get(urljoin(home.url, links["withdraw"]))
    assert warning.status_code == 200
    assert "به طور کامل خارج می‌شوید" in warning.text
    assert current_plans()[0].name in warning.text
    form = find_form(warning.text, action_contains="/withdraw")
    assert "understood" in form.fields

    # Without ticking the box: an error, and the order stays active.
    unticked = {name: value for name, value in form.fields.items() if name != "understood"}
    answer = browser.session.post(urljoin(warning.url, form.action), data=unticked, timeout=15)
    assert answer.status_code == 200
    assert 'class="error"' in answer.text
    assert "به طور کامل خارج می‌شوید" in answer.text
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "active")]

    answer = browser.submit(answer, {"understood": "y"}, action_contains="/withdraw")
    assert answer.url == carmaker.base_url + "/"
    assert order_statuses(answer) == [WITHDRAWN]
    assert 'id="withdraw"' not in answer.text and 'id="cancel-order"' not in answer.text

    # That plan is closed for this person, by the page and by the server.
    plans = browser.get(carmaker.base_url + "/plans")
    fall = re.search(rf'id="plan-{IMMEDIATE}"(.*?)</div>', plans.text, re.S).group(1)
    assert "انصراف داده‌اید" in fall
    assert "/order" not in fall
    for car in ("dena-plus", "tara-v4"):
        refused = order_car(browser, carmaker, IMMEDIATE, car)
        assert refused.url == carmaker.base_url + "/plans"
    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "withdrawn")]

    # The other plan still takes orders.
    home = order_car(browser, carmaker, PRESALE, "runna-plus")
    assert order_statuses(home) == [ACTIVE, WITHDRAWN]
    assert orders_in_db(carmaker)[-1] == (PRESALE, "runna-plus", "active")


def test_unknown_car_or_plan_is_not_found(carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    token = csrf_token(browser.get(carmaker.base_url + "/plans"))
    past = "1399-fall"  # a plan of an earlier year: its orders are shown, new ones are not taken
    for path in (
        f"/plans/{IMMEDIATE}/cars/runna-plus/order",
        "/plans/1399/cars/dena-plus/order",
        f"/plans/{past}/cars/dena-plus/order",
        f"/plans/{IMMEDIATE}x/cars/dena-plus/order",
    ):
        assert post(browser, carmaker, path, {"csrf_token": token}).status_code == 404
    assert orders_in_db(carmaker) == []


def test_another_users_order_cannot_be_cancelled_or_withdrawn(app, live_server, carmaker, browser, user):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    home = order_car(browser, carmaker, IMMEDIATE, "dena-plus")
    order_id = int(re.search(r"/orders/(\d+)/cancel", home.text).group(1))

    other = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    intruder = PersonBrowser(live_server)
    own_home = log_in(intruder, carmaker, other)
    assert text_of(own_home.text, "national-id") == persian("0499370899")
    assert order_statuses(own_home) == []
    token = csrf_token(own_home)

    cancel = f"/orders/{order_id}/cancel"
    assert intruder.session.get(carmaker.base_url + cancel, timeout=15).status_code == 404
    assert post(intruder, carmaker, cancel, {"csrf_token": token}).status_code == 404
    withdraw = f"/orders/{order_id}/withdraw"
    assert intruder.session.get(carmaker.base_url + withdraw, timeout=15).status_code == 404
    assert post(intruder, carmaker, withdraw, {"csrf_token": token, "understood": "y"}).status_code == 404

    assert orders_in_db(carmaker) == [(IMMEDIATE, "dena-plus", "active")]
    assert order_statuses(browser.get(carmaker.base_url + "/")) == [ACTIVE]


@pytest.mark.parametrize(
    "action",
    ["/auth/logout", "/purchase-file", f"/plans/{IMMEDIATE}/cars/tara-v4/order", "cancel", "withdraw"],
)
def test_every_post_needs_the_csrf_token(carmaker, browser, user, action):
    log_in(browser, carmaker, user)
    complete_purchase_file(browser, carmaker)
    if action in ("cancel", "withdraw"):
        home = order_car(browser, carmaker, IMMEDIATE, "dena-plus")
        order_id = re.search(r"/orders/(\d+)/cancel", home.text).group(1)
        action = f"/orders/{order_id}/{action}"
    before = orders_in_db(carmaker)
    data = {
        "postal_address": "جای دیگر",
        "postal_code": "9876543210",
        "sheba": OTHER_SHEBA,
        "understood": "y",
    }
    response = post(browser, carmaker, action, data, follow=False)
    assert response.status_code == 400
    # A wrong token is no better than none.
    response = post(browser, carmaker, action, {**data, "csrf_token": "forged." + "x" * 40}, follow=False)
    assert response.status_code == 400

    assert orders_in_db(carmaker) == before
    assert is_logged_in(browser, carmaker)
    with site_session(carmaker) as session:
        saved = session.scalars(select(PurchaseFile)).one()
        assert (saved.postal_address, saved.postal_code, saved.sheba) == (ADDRESS, POSTAL_CODE, SHEBA)
        assert session.scalar(select(func.count()).select_from(LoginSession)) == 1
