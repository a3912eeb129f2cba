"""The CAPTCHA (idp/web/captcha.py): digits in a picture with a spoken alternative, the challenge kept in the
key-value store (never in the page, its answer never in clear) under an id the browser's session names, each
challenge answerable once, by one request even among parallel ones, and for 10 minutes at most.
``captcha.enabled = false`` removes it from every form.

The tests read a browser's current answer as its picture is drawn (tests/helpers.py ``captcha_answer``), as a
person would read the picture.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections import Counter
from typing import Any

import pytest
import requests
from flask import Flask

from idp import clock

from .helpers import (
    Browser,
    browser_for,
    browser_session,
    captcha_answer,
    create_test_user,
    english_browser,
    field_error,
    find_form,
    in_parallel,
    page_text,
    parse_page,
    serve,
    valid_national_code,
)

UNKNOWN_NATIONAL_CODE = valid_national_code("987654321")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FORMS_WITH_CAPTCHA = ["/register", "/login/sms", "/password/forgot", "/mobile/change"]


# -- helpers ----------------------------------------------------------------------------------------


@pytest.fixture
def captcha_app(app_with) -> Flask:
    return app_with(captcha={"enabled": True})


def captcha_image_src(response: Any) -> str | None:
    match = re.search(r'<img[^>]*src="([^"]*captcha\.png[^"]*)"', page_text(response))
    return html.unescape(match.group(1)) if match else None


def sms_start(browser: Browser, page: Any, captcha: str | None) -> Any:
    """Post the SMS-login start form (an unknown national code: no text message is sent)."""
    form = find_form(page_text(page), action_contains="/login/sms")
    values = {**form.fields, "national_code": UNKNOWN_NATIONAL_CODE}
    if captcha is None:
        values.pop("captcha", None)
    else:
        values["captcha"] = captcha
    return browser.post("/login/sms", values)


def passed(response: Any) -> bool:
    return response.status_code == 200 and response.request.path == "/login/sms/verify"


def refused_for_captcha(response: Any) -> bool:
    return (
        response.status_code == 200 and response.request.path == "/login/sms" and bool(field_error(response, "captcha"))
    )


# -- the picture and the sound ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", FORMS_WITH_CAPTCHA)
def test_forms_show_a_captcha_without_its_answer(captcha_app, path):
    browser = english_browser(captcha_app)
    page = browser.get(path)
    assert page.status_code == 200
    assert "captcha" in find_form(page_text(page), field_name="captcha").fields
    src = captcha_image_src(page)
    assert src and "/captcha.png" in src
    assert "captcha-audio" in parse_page(page_text(page)).links
    answer = captcha_answer(captcha_app, browser)
    assert len(answer) == captcha_app.extensions["idp"].config.captcha.length
    assert answer not in page_text(page)


def test_image_and_audio_serve_the_current_challenge(captcha_app):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    image = browser.client.get(captcha_image_src(page))
    assert image.status_code == 200
    assert image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert "no-store" in image.headers.get("Cache-Control", "")

    audio = browser.client.get(parse_page(page_text(page)).links["captcha-audio"])
    assert audio.status_code == 200
    assert audio.mimetype in ("audio/wav", "audio/x-wav", "audio/wave")
    assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
    assert "no-store" in audio.headers.get("Cache-Control", "")

    # Looking at the picture does not use up the challenge.
    assert passed(sms_start(browser, page, captcha_answer(captcha_app, browser)))


@pytest.mark.parametrize("path", ["/captcha.png", "/captcha.wav"])
def test_no_challenge_no_picture(captcha_app, path):
    assert english_browser(captcha_app).client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/captcha.png", "/captcha.wav"])
def test_captcha_off_serves_nothing(app, path):
    browser = english_browser(app)
    browser.get("/login/sms")
    assert browser.client.get(path).status_code == 404


# -- answering ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [lambda a: a, lambda a: a.translate(PERSIAN), lambda a: a.translate(ARABIC_INDIC), lambda a: f" {a} "],
    ids=["ascii", "persian", "arabic-indic", "spaces"],
)
def test_right_answer_passes(captcha_app, typed):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    response = sms_start(browser, page, typed(captcha_answer(captcha_app, browser)))
    assert passed(response), field_error(response, "captcha")


def test_an_answer_passes_only_once(captcha_app):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    answer = captcha_answer(captcha_app, browser)
    assert passed(sms_start(browser, page, answer))
    again = sms_start(browser, page, answer)  # the same form and answer, sent again
    assert refused_for_captcha(again)
    assert captcha_answer(captcha_app, browser)  # a new challenge is drawn with the error


@pytest.mark.parametrize(
    "make_wrong",
    [
        pytest.param(lambda a: str((int(a) + 1) % 10 ** len(a)).zfill(len(a)), id="off-by-one"),
        pytest.param(lambda a: a[:-1], id="too-short"),
        pytest.param(lambda a: "", id="empty"),
        pytest.param(None, id="missing"),
    ],
)
def test_wrong_answer_fails_and_a_new_challenge_is_drawn(captcha_app, make_wrong):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    answer = captcha_answer(captcha_app, browser)
    response = sms_start(browser, page, None if make_wrong is None else make_wrong(answer))
    assert refused_for_captcha(response)
    assert captcha_image_src(response) != captcha_image_src(page)


def test_wrong_answer_spends_the_challenge(captcha_app):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    answer = captcha_answer(captcha_app, browser)
    wrong = str((int(answer) + 1) % 10 ** len(answer)).zfill(len(answer))
    sms_start(browser, page, wrong)
    fresh = captcha_answer(captcha_app, browser)
    if fresh == answer:
        pytest.fail("the new challenge equals the old one (one in 100000); run again")
    assert refused_for_captcha(sms_start(browser, page, answer))


@pytest.mark.parametrize(("seconds", "ok"), [(599, True), (601, False)], ids=["fresh", "too-old"])
def test_challenge_expires_after_ten_minutes(captcha_app, seconds, ok):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    answer = captcha_answer(captcha_app, browser)
    clock.advance(seconds)
    response = sms_start(browser, page, answer)
    assert passed(response) if ok else refused_for_captcha(response)


def test_answer_belongs_to_the_browser_that_saw_it(captcha_app):
    seer, other = english_browser(captcha_app), english_browser(captcha_app)
    seer.get("/login/sms")
    page = other.get("/login/sms")
    answer = captcha_answer(captcha_app, seer)
    if answer == captcha_answer(captcha_app, other):
        pytest.fail("both browsers drew the same digits (one in 100000); run again")
    assert refused_for_captcha(sms_start(other, page, answer))


# -- captcha.enabled = false -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", *FORMS_WITH_CAPTCHA])
def test_captcha_off_forms_have_no_captcha(app, path):
    browser = english_browser(app)
    page = browser.get(path)
    assert page.status_code == 200
    assert 'name="captcha"' not in page_text(page)
    assert captcha_image_src(page) is None
    assert "captcha" not in browser_session(app, browser)


def test_captcha_off_forms_pass_without_an_answer(app, user):
    browser = english_browser(app)
    assert passed(sms_start(browser, browser.get("/login/sms"), None))
    forgot = browser.get("/password/forgot")
    done = browser.submit(forgot, {"national_code": user.national_code}, action_contains="/password/forgot")
    assert done.request.path == "/password/reset"


def test_captcha_off_login_never_asks_for_one_after_failures(app_with):
    """With CAPTCHA off no form can show one, so none may be demanded: after more failures than
    login.captcha_after_failures the right password still logs in (no waits in this configuration)."""
    app = app_with(login={"delay_after_failures": 50, "captcha_after_failures": 2, "ip_captcha_after_failures": 2})
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.get("/login")
    for _ in range(3):
        page = browser.submit(page, {"national_code": user.national_code, "password": "wrong!"}, field_name="password")
        assert page.request.path == "/login"
        assert 'name="captcha"' not in page_text(page)
    done = browser.submit(page, {"national_code": user.national_code, "password": user.password}, field_name="password")
    assert done.status_code == 200 and done.request.path == "/", field_error(done, "password")


# -- one answer, one request (the race) ------------------------------------------------------------------

PARALLEL = 8


def _start_values(app: Flask, browser: Browser) -> tuple[str, list[dict[str, str]]]:
    """The session cookie of ``browser`` and, for each parallel request, the SMS-login start form filled with the
    right answer. Each asks for another national code (none has an account), as an attacker texting many people
    with one solved CAPTCHA would: the per-code wait between two texts is not what stops them."""
    page = browser.get("/login/sms")
    form = find_form(page_text(page), action_contains="/login/sms")
    answer = captcha_answer(app, browser)
    forms = [
        {**form.fields, "national_code": valid_national_code(f"98765{index:04d}"), "captcha": answer}
        for index in range(PARALLEL)
    ]
    cookie = browser.client.get_cookie(app.extensions["idp"].config.session.cookie_name)
    assert cookie is not None
    return cookie.value, forms


def _outcome(status: int, location: str | None, body: str) -> str:
    if status in (302, 303) and "/login/sms/verify" in (location or ""):
        return "went on"
    if status == 200 and 'id="captcha-error"' in body:
        return "refused for the CAPTCHA"
    return f"{status} {location} {body[:2000]}"


ONE_WENT_ON = {"went on": 1, "refused for the CAPTCHA": PARALLEL - 1}


def test_one_answer_admits_one_of_parallel_requests(captcha_app):
    """The same browser session sends the right answer 8 times at once: one request goes on, 7 are refused."""
    cookie, forms = _start_values(captcha_app, english_browser(captcha_app))
    clients = []
    for _ in range(PARALLEL):
        client = captcha_app.test_client()
        client.set_cookie(captcha_app.extensions["idp"].config.session.cookie_name, cookie)
        clients.append(client)

    def attempt(index: int) -> str:
        response = clients[index].post("/login/sms", data=forms[index], headers={"Accept-Language": "en"})
        return _outcome(response.status_code, response.location, page_text(response))

    assert Counter(in_parallel(PARALLEL, attempt)) == ONE_WENT_ON


def test_one_answer_admits_one_of_parallel_requests_over_http(captcha_app):
    """The same, against a served instance (a thread per request, as a worker with several threads)."""
    cookie_name = captcha_app.extensions["idp"].config.session.cookie_name
    cookie, forms = _start_values(captcha_app, english_browser(captcha_app))
    with serve(captcha_app) as base_url:

        def attempt(index: int) -> str:
            response = requests.post(
                base_url + "/login/sms",
                data=forms[index],
                cookies={cookie_name: cookie},
                headers={"Accept-Language": "en"},
                allow_redirects=False,
                timeout=60,
            )
            return _outcome(response.status_code, response.headers.get("Location"), response.text)

        assert Counter(in_parallel(PARALLEL, attempt)) == ONE_WENT_ON


def test_the_answer_is_not_stored_in_clear(captcha_app):
    browser = english_browser(captcha_app)
    browser.get("/login/sms")
    answer = captcha_answer(captcha_app, browser)
    session_data = browser_session(captcha_app, browser)
    assert answer not in json.dumps(session_data)
    record = captcha_app.extensions["idp"].store.get("captcha:" + session_data["captcha"])
    assert record is not None
    assert answer not in json.dumps(record)


# -- legible to people ---------------------------------------------------------------------------------------


def test_the_digits_have_no_look_alikes(captcha_app):
    """0 (read as 8 or O), 1 and 7 (read as each other) are never drawn; the other seven digits all are."""
    drawn: set[str] = set()
    for _ in range(40):
        browser = english_browser(captcha_app)
        browser.get("/login/sms")
        drawn |= set(captcha_answer(captcha_app, browser))
    assert drawn == set("2345689")


@pytest.mark.parametrize(
    ("language", "listen"), [("en", "Listen to the digits"), ("fa", "شنیدن رقم‌ها")], ids=["en", "fa"]
)
def test_the_spoken_code_is_offered_with_a_labelled_link_and_a_player(captcha_app, language, listen):
    browser = browser_for(captcha_app, language=language)
    page = page_text(browser.get("/login/sms"))
    link = re.search(r'<a id="captcha-audio" href="([^"]+)" aria-label="([^"]+)">([^<]+)</a>', page)
    assert link, page
    href, label, text = (html.unescape(part) for part in link.groups())
    assert text.strip() == listen
    assert label.startswith(listen) and len(label) > len(listen)  # the accessible name holds the visible one
    player = re.search(r'<audio id="captcha-audio-player" controls[^>]* src="([^"]+)" aria-label="[^"]+">', page)
    assert player, page
    assert html.unescape(player.group(1)) == href
    sound = browser.client.get(href)
    assert sound.status_code == 200 and sound.data[:4] == b"RIFF"


# -- captcha.demo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "not-demo"])
def test_the_demo_writes_the_answer_to_the_log_only_when_asked(app_with, caplog, demo):
    app = app_with(captcha={"enabled": True, "demo": demo})
    browser = english_browser(app)
    with caplog.at_level(logging.DEBUG):
        page = browser.get("/login/sms")
        answer = captcha_answer(app, browser)
        browser.client.get(captcha_image_src(page))
        sms_start(browser, page, answer[::-1] if answer[::-1] != answer else "2" * len(answer))
        answered = captcha_answer(app, browser)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert (answer in logged and answered in logged) is demo
    assert (answer in logged or answered in logged) is demo


def test_only_the_newest_challenge_of_a_browser_is_kept(captcha_app):
    browser = english_browser(captcha_app)
    page = browser.get("/login/sms")
    first = captcha_answer(captcha_app, browser)
    first_id = browser_session(captcha_app, browser)["captcha"]
    browser.get("/login/sms")  # the form drawn again (a reload, another tab)
    assert captcha_app.extensions["idp"].store.get("captcha:" + first_id) is None
    if first != captcha_answer(captcha_app, browser):
        assert refused_for_captcha(sms_start(browser, page, first))
