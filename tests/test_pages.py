"""The hosted pages: the login form, security headers, the session cookie, CSRF, errors that do not tell
which half of the credentials was wrong, languages, the language switcher, the audit log and error pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from idp.rules.digits import to_persian_digits

from .helpers import DEFAULT_PASSWORD, create_test_user, find_form, valid_national_code

EN = {"Accept-Language": "en"}
REDIRECTS = {302, 303}
# Policies that never send the path and query (state, codes) of our pages to another site.
STRICT_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in {"script", "style", "title"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "title"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(" ".join(data.split()))


def parse(response: Any) -> _PageParser:
    parser = _PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser


def element(response: Any, tag: str, **attrs: str) -> dict[str, str] | None:
    for name, found in parse(response).tags:
        if name == tag and all(found.get(k) == v for k, v in attrs.items()):
            return found
    return None


def html_attrs(response: Any) -> dict[str, str]:
    found = element(response, "html")
    assert found is not None
    return found


def cookie_name(app: Flask) -> str:
    return app.extensions["idp"].config.session.cookie_name


def session_set_cookie(app: Flask, response: Any) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(cookie_name(app) + "="):
            return header
    return None


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def login_form_data(client: Any, national_code: str, password: str, **get_kwargs: Any) -> dict[str, str]:
    page = client.get("/login", **get_kwargs)
    assert page.status_code == 200
    form = find_form(page.get_data(as_text=True), field_name="national_code")
    return {**form.fields, "national_code": national_code, "password": password}


def post_login(client: Any, national_code: str, password: str, headers: dict[str, str] | None = None) -> Any:
    data = login_form_data(client, national_code, password, headers=headers or {})
    return client.post("/login", data=data, headers=headers or {})


def is_logged_in(client: Any) -> bool:
    response = client.get("/")
    if response.status_code in REDIRECTS:
        assert urlsplit(response.location).path == "/login"
        return False
    assert response.status_code == 200
    return True


def audit_events(runner: Any) -> list[dict[str, Any]]:
    result = runner.invoke(args=["audit", "list", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the login page --------------------------------------------------------------------------------------


def test_login_page_form(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    form = find_form(response.get_data(as_text=True), field_name="national_code")
    assert form.method == "post"
    assert form.fields["csrf_token"]
    assert "password" in form.fields
    national_code = element(response, "input", name="national_code")
    assert national_code is not None
    assert national_code["inputmode"] == "numeric"
    password = element(response, "input", name="password")
    assert password is not None and password["type"] == "password"
    assert element(response, "input", name="csrf_token")["type"] == "hidden"


@pytest.mark.parametrize(
    ("path", "statuses"),
    [("/login", {200}), ("/no-such-page", {404}), ("/authorize", {400}), ("/language/en", REDIRECTS)],
)
def test_security_headers_on_html_pages(client, path, statuses):
    response = client.get(path)
    assert response.status_code in statuses
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in STRICT_REFERRER_POLICIES
    if response.mimetype != "text/html":
        return
    csp = response.headers["Content-Security-Policy"]
    directives = {d.strip().split()[0]: d.strip().split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives.get("script-src", directives.get("default-src", []))
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in response.headers["Cache-Control"]


def test_security_headers_on_logged_in_pages(client, user):
    post_login(client, user.national_code, user.password)
    response = client.get("/")
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_protocol_answers_get_the_headers_for_every_response_once_and_keep_their_own(client):
    response = client.post("/token", data={"grant_type": "client_credentials"})  # no client: a JSON error
    assert response.status_code == 401 and response.mimetype == "application/json"
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert response.headers["Referrer-Policy"] in STRICT_REFERRER_POLICIES
    assert response.headers.getlist("Cache-Control") == ["no-store"]  # the token endpoint's own, not doubled
    assert "Content-Security-Policy" not in response.headers and "Strict-Transport-Security" not in response.headers


def test_under_https_every_answer_says_https_only_once(https_app):
    client = https_app.test_client()
    for response in (
        client.get("/login", base_url="https://localhost"),
        client.post("/token", base_url="https://localhost"),
    ):
        assert response.headers.getlist("Strict-Transport-Security") == ["max-age=31536000"]
        assert len(response.headers.getlist("Cache-Control")) == 1


# -- the session cookie ----------------------------------------------------------------------------------


def test_session_cookie_attributes_on_http(app, client, user):
    header = session_set_cookie(app, client.get("/login"))
    assert header is not None
    attributes = cookie_attributes(header)
    assert "httponly" in attributes
    assert "samesite=lax" in header.lower().replace(" ", "")
    assert "secure" not in attributes
    assert "path" in attributes

    after = post_login(client, user.national_code, user.password)
    header = session_set_cookie(app, after)
    assert header is not None
    attributes = cookie_attributes(header)
    assert "httponly" in attributes and "secure" not in attributes
    assert "samesite=lax" in header.lower().replace(" ", "")


@pytest.fixture
def https_app(app_with) -> Flask:
    return app_with(server={"issuer": "https://id.example"})


def test_session_cookie_is_secure_under_https(https_app):
    create_test_user(https_app)
    client = https_app.test_client()
    base = {"base_url": "https://localhost"}
    page = client.get("/login", **base)
    header = session_set_cookie(https_app, page)
    assert header is not None
    attributes = cookie_attributes(header)
    assert {"secure", "httponly"} <= attributes
    assert "samesite=lax" in header.lower().replace(" ", "")

    form = find_form(page.get_data(as_text=True), field_name="national_code")
    data = {**form.fields, "national_code": "0012345679", "password": DEFAULT_PASSWORD}
    after = client.post("/login", data=data, headers={"Referer": "https://localhost/login"}, **base)
    assert after.status_code in REDIRECTS, after.get_data(as_text=True)[:500]
    header = session_set_cookie(https_app, after)
    assert header is not None
    assert {"secure", "httponly"} <= cookie_attributes(header)


def test_session_id_changes_at_login(app, client, user):
    client.get("/login")
    before = client.get_cookie(cookie_name(app)).value
    response = post_login(client, user.national_code, user.password)
    assert response.status_code in REDIRECTS
    after = client.get_cookie(cookie_name(app)).value
    assert after != before
    assert is_logged_in(client)

    planted = app.test_client()  # an attacker who knew the pre-login cookie
    planted.set_cookie(cookie_name(app), before)
    assert not is_logged_in(planted)

    thief = app.test_client()
    thief.set_cookie(cookie_name(app), after)
    assert is_logged_in(thief)  # the new value is the one that carries the login


def test_login_without_csrf_token_is_refused(client, user):
    data = login_form_data(client, user.national_code, user.password)
    del data["csrf_token"]
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert not is_logged_in(client)
    forged = {**data, "csrf_token": "forged"}
    assert client.post("/login", data=forged).status_code == 400
    assert not is_logged_in(client)


def test_csrf_token_of_another_session_is_refused(app, client, user):
    other = app.test_client()
    token = find_form(other.get("/login").get_data(as_text=True), field_name="national_code").fields["csrf_token"]
    data = login_form_data(client, user.national_code, user.password)
    data["csrf_token"] = token
    assert client.post("/login", data=data).status_code == 400
    assert not is_logged_in(client)


# -- failed logins ---------------------------------------------------------------------------------------


def test_wrong_password_and_unknown_account_look_the_same(app, user):
    wrong_password = app.test_client()
    first = post_login(wrong_password, user.national_code, "not the password at all", headers=EN)
    unknown = app.test_client()
    second = post_login(unknown, valid_national_code("123456789"), user.password, headers=EN)

    assert first.status_code == second.status_code
    assert first.status_code in {200, 400, 401}
    assert parse(first).text == parse(second).text
    assert html_attrs(first)["lang"] == "en"
    assert element(first, "input", name="national_code") is not None  # the form is shown again
    assert element(first, "input", name="password").get("value", "") == ""  # the password is not echoed
    assert not is_logged_in(wrong_password)
    assert not is_logged_in(unknown)


def test_wrong_check_digit_gets_a_field_error(client, user):
    response = post_login(client, "0012345678", user.password, headers=EN)
    assert response.status_code in {200, 400}
    field = element(response, "input", name="national_code")
    assert field is not None
    assert field.get("aria-invalid") == "true"
    assert field["id"] + "-error" in field.get("aria-describedby", "").split()
    assert element(response, "p", id=field["id"] + "-error") is not None
    assert not is_logged_in(client)


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "طول فیلد حداکثر باید 256 حرف باشد."), (EN, "Field cannot be longer than 256 characters.")],
)
def test_wtforms_own_messages_are_in_the_readers_language_and_loaded_once(client, user, monkeypatch, headers, message):
    # WTForms' own validators' messages (here Length's, on a 300-character password) come from its catalogue,
    # read from disk once per language and process, not on each request that builds a form.
    from babel.support import Translations

    from idp.web import forms

    loads: list[str] = []
    real_load = Translations.load

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs.get("domain", ""))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(Translations, "load", counted_load)
    monkeypatch.setattr(forms, "_WTFORMS_CATALOGUES", {})
    for _ in range(3):
        response = post_login(client, user.national_code, "x" * 300, headers=headers)
        assert message in response.get_data(as_text=True)
        assert not is_logged_in(client)
    assert loads.count("wtforms") == 1


def test_persian_digits_in_national_code_log_in(client, user):
    response = post_login(client, to_persian_digits(user.national_code), user.password)
    assert response.status_code in REDIRECTS
    assert is_logged_in(client)


def test_arabic_indic_digits_in_national_code_log_in(client, user):
    arabic = user.national_code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert post_login(client, arabic, user.password).status_code in REDIRECTS
    assert is_logged_in(client)


def test_logins_are_audited_without_password(app, client, runner, user):
    wrong = "a wrong password 123"
    post_login(client, user.national_code, wrong)
    post_login(client, valid_national_code("123456789"), wrong)
    post_login(client, user.national_code, user.password)
    events = audit_events(runner)
    names = [e["event"] for e in events]
    assert names.count("login.failed") == 2
    assert names.count("login.succeeded") == 1
    succeeded = next(e for e in events if e["event"] == "login.succeeded")
    assert succeeded["user_id"] == user.id
    failed_for_user = [e for e in events if e["event"] == "login.failed" and e["user_id"] == user.id]
    assert len(failed_for_user) == 1
    dump = json.dumps(events, ensure_ascii=False)
    assert wrong not in dump
    assert user.password not in dump


# -- languages -------------------------------------------------------------------------------------------


def test_default_language_is_persian_rtl(client):
    attrs = html_attrs(client.get("/login"))
    assert attrs["lang"] == "fa"
    assert attrs["dir"] == "rtl"


@pytest.mark.parametrize(
    ("accept", "lang", "direction"),
    [("en", "en", "ltr"), ("en-US,en;q=0.9", "en", "ltr"), ("fa-IR", "fa", "rtl"), ("de", "fa", "rtl")],
)
def test_accept_language(client, accept, lang, direction):
    attrs = html_attrs(client.get("/login", headers={"Accept-Language": accept}))
    assert (attrs["lang"], attrs["dir"]) == (lang, direction)


def test_english_page_is_english(client):
    response = client.get("/login", headers=EN)
    text = " ".join(parse(response).text)
    assert "Log in" in text
    assert "Password" in text


def test_language_switcher(client):
    response = client.get("/language/en?next=/login")
    assert response.status_code in REDIRECTS
    assert urlsplit(response.location).path == "/login"
    attrs = html_attrs(client.get("/login"))
    assert (attrs["lang"], attrs["dir"]) == ("en", "ltr")
    # The choice wins over the browser's Accept-Language.
    assert html_attrs(client.get("/login", headers={"Accept-Language": "fa"}))["lang"] == "en"
    switch = element(client.get("/login"), "a", id="lang-fa")
    assert switch is not None and switch["href"].startswith("/language/fa")

    client.get("/language/fa?next=/login")
    attrs = html_attrs(client.get("/login", headers=EN))
    assert (attrs["lang"], attrs["dir"]) == ("fa", "rtl")


def test_language_choice_survives_login(client, user):
    client.get("/language/en?next=/login")
    post_login(client, user.national_code, user.password)
    assert html_attrs(client.get("/"))["lang"] == "en"


def test_unknown_language_is_ignored(client):
    response = client.get("/language/xx?next=/login")
    assert response.status_code in REDIRECTS
    assert html_attrs(client.get("/login"))["lang"] == "fa"


@pytest.mark.parametrize(
    "target",
    ["//evil.com", "https://evil.com", "/\\evil.com", "\\\\evil.com", "http:evil.com", "evil.com", "///evil.com"],
)
def test_language_switcher_refuses_external_next(client, target):
    response = client.get("/language/en", query_string={"next": target})
    assert response.status_code in REDIRECTS
    parts = urlsplit(response.location)
    assert parts.netloc in {"", "localhost"}
    assert parts.path == "/"
    assert "evil" not in response.location


# -- the site's icon -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/no/such/page"])
def test_pages_link_the_site_icon_and_favicon_ico_leads_to_it(client, path):
    """No 404 for the icon, whether the browser follows the page's link or asks for /favicon.ico itself."""
    link = element(client.get(path), "link", rel="icon")
    assert link is not None and link["type"] == "image/svg+xml"
    with client.get(link["href"]) as icon:  # a static file is streamed: closed when read
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
        assert icon.get_data(as_text=True).lstrip().startswith("<svg")
    unprompted = client.get("/favicon.ico")
    assert unprompted.status_code == 301
    assert urlsplit(unprompted.location).path == link["href"]


# -- error pages -----------------------------------------------------------------------------------------


def test_not_found_page_is_html_without_stack_trace(client):
    response = client.get("/no/such/page", headers=EN)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert html_attrs(response)["lang"] == "en"
    for leak in ("Traceback", 'File "', "werkzeug", "site-packages", "NotFound"):
        assert leak not in body


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "error"),
    [
        ("post", "/token", {}, 400, None),
        ("post", "/token", {"grant_type": "password", "username": "u", "password": "p"}, 400, None),
        ("post", "/token", {"grant_type": "authorization_code", "code": "x"}, 401, "invalid_client"),
        ("get", "/token", None, 405, None),
    ],
)
def test_token_endpoint_errors_are_json(client, method, path, data, status, error):
    response = getattr(client, method)(path, data=data) if data is not None else getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    if error:
        assert body["error"] == error
    if method == "post":
        assert "no-store" in response.headers["Cache-Control"]
    assert "Traceback" not in response.get_data(as_text=True)
