"""Test helpers: seeding users and clients, reading forms out of pages, PKCE pairs, a user's browser."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from idp.cli.users import admin_import_evidence
from idp.passwords import hash_password
from idp.security import sha256_hex
from idp.store import commit
from idp.store.clients import Registration, create_client
from idp.store.users import create_user
from idp.web.captcha import drawable_answer

DEFAULT_PASSWORD = "correct horse battery"
REDIRECT_URI = "https://rp.example/callback"
POST_LOGOUT_URI = "https://rp.example/logged-out"


@dataclass(frozen=True)
class UserInfo:
    id: str
    national_code: str
    password: str
    mobile: str = "+989121234567"


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    client_secret: str | None
    redirect_uri: str = REDIRECT_URI


def valid_national_code(first_nine: str) -> str:
    from idp.rules.national_code import national_code_check_digit

    return first_nine + str(national_code_check_digit(first_nine))


def create_test_user(
    app: Flask,
    national_code: str = "0012345679",
    password: str = DEFAULT_PASSWORD,
    mobile: str = "+989121234567",
    given_name: str = "علی",
    family_name: str = "رضایی",
    birthdate: dt.date = dt.date(1990, 3, 21),
) -> UserInfo:
    with app.app_context():
        user = create_user(
            national_code=national_code,
            mobile=mobile,
            birthdate=birthdate,
            given_name=given_name,
            family_name=family_name,
            password_hash=hash_password(password),
            identity_evidence=admin_import_evidence("Hoviyat tests"),
        )
        commit()
        return UserInfo(user.id, national_code, password, mobile)


def create_test_client(app: Flask, **changes: Any) -> ClientInfo:
    values: dict[str, Any] = {
        "name": "Test Portal",
        "redirect_uris": [REDIRECT_URI],
        "post_logout_redirect_uris": [POST_LOGOUT_URI],
        "scope": "openid profile phone national_id",
    }
    values.update(changes)
    with app.app_context():
        client, secret = create_client(Registration(**values))
        commit()
        return ClientInfo(client.client_id, secret, values["redirect_uris"][0] if values["redirect_uris"] else "")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- reading pages -----------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: dict[str, str] = {}
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag == "a" and "id" in a:
            self.links[a["id"]] = a.get("href", "")
        elif self._current is not None and tag == "input" and a.get("name"):
            self._current.fields[a["name"]] = a.get("value", "")
        elif self._current is not None and tag == "button" and a.get("name"):
            self._current.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def parse_page(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


def find_form(html: str, *, action_contains: str | None = None, field_name: str | None = None) -> Form:
    for form in parse_page(html).forms:
        if action_contains is not None and action_contains not in form.action:
            continue
        if field_name is not None and field_name not in form.fields:
            continue
        return form
    raise AssertionError(f"no form with action~{action_contains!r} field {field_name!r} in page:\n{html[:2000]}")


# -- a user's browser on the Flask test client --------------------------------------------------------


class Browser:
    """Follows the provider's own redirects and stops at the first one that leaves the provider."""

    def __init__(self, client: FlaskClient, issuer: str) -> None:
        self.client = client
        self.issuer = issuer

    def _path(self, url: str) -> str:
        if url.startswith(self.issuer):
            url = url[len(self.issuer) :] or "/"
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def is_external(self, url: str) -> bool:
        return url.startswith("http") and not url.startswith(self.issuer) and not url.startswith("http://localhost")

    def get(self, url: str) -> Any:
        return self._follow(self.client.get(self._path(url)))

    def post(self, url: str, data: dict[str, str]) -> Any:
        return self._follow(self.client.post(self._path(url), data=data))

    def submit(self, response: Any, data: dict[str, str], **find: Any) -> Any:
        form = find_form(response.get_data(as_text=True), **find)
        values = dict(form.fields)
        values.update(data)
        return self.post(urljoin(response.request.path, form.action), values)

    def _follow(self, response: Any) -> Any:
        for _ in range(20):
            if response.status_code not in (301, 302, 303, 307) or self.is_external(response.location):
                return response
            response = self.client.get(self._path(urljoin(response.request.path, response.location)))
        raise AssertionError("too many redirects")

    def authorize(self, params: dict[str, str]) -> Any:
        return self.get("/authorize?" + urlencode(params))

    def login(self, response: Any, user: UserInfo) -> Any:
        return self.submit(
            response,
            {"national_code": user.national_code, "password": user.password},
            field_name="national_code",
        )

    def consent(self, response: Any, decision: str = "allow") -> Any:
        return self.submit(response, {"decision": decision}, action_contains="/consent")

    def confirm_it_is_me(self, next_page: str = "two-factor") -> Any:
        """A fresh two-factor login after a password login, as changing the account's second factors asks: a code
        by SMS on the step-up page, which then returns to ``next_page``."""
        page = self.get(f"/login/second-factor?method=sms&next={next_page}")
        page = self.submit(page, {}, action_contains="/login/second-factor/send")
        texted = [m for m in sms_outbox(self.client.application) if m["purpose"] == "step_up"]
        return self.submit(page, {"code": texted[-1]["code"]}, field_name="code")

    def second_factor_by_sms(self, response: Any, app: Flask, mobile: str) -> Any:
        """On the second-factor page: have a code texted, then type it."""
        assert "/login/second-factor" in response.request.path, response.request.path
        page = self.submit(response, {}, action_contains="/login/second-factor/send")
        return self.submit(page, {"code": last_sms_code(app, mobile, "step_up")}, field_name="code")


def browser_for(
    app: Flask, *, language: str | None = None, ip: str | None = None, user_agent: str | None = None
) -> Browser:
    """A Browser on a fresh test client of ``app``, sending this Accept-Language, address and User-Agent if given."""
    client = app.test_client()
    if language:
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    if ip is not None:
        client.environ_base["REMOTE_ADDR"] = ip
    if user_agent is not None:
        client.environ_base["HTTP_USER_AGENT"] = user_agent
    return Browser(client, app.extensions["idp"].issuer)


def english_browser(app: Flask, ip: str | None = None, user_agent: str | None = None) -> Browser:
    """A Browser that asks for English pages, so messages can be compared as text."""
    return browser_for(app, language="en", ip=ip, user_agent=user_agent)


def is_logged_in(browser: Browser) -> bool:
    """Whether the account home answers this browser (it sends a browser that is not logged in to log in)."""
    return browser.client.get("/").status_code == 200


def page_text(response: Any) -> str:
    """The body of a response as text (the page's HTML)."""
    return response.get_data(as_text=True)


def field_error(response: Any, name: str, *, raw: bool = False) -> str | None:
    """The unescaped text of a field's ``<p id="NAME-error">``, or None; ``raw``: as sent, up to the first ``</``."""
    if raw:
        match = re.search(rf'id="{re.escape(name)}-error"[^>]*>(.*?)</', page_text(response), re.S)
        return match.group(1).strip() if match else None
    match = re.search(rf'id="{re.escape(name)}-error"[^>]*>(.*?)</p>', page_text(response), re.S)
    return unescape(match.group(1)).strip() if match else None


def _client_of(client_or_browser: FlaskClient | Browser) -> FlaskClient:
    return client_or_browser.client if isinstance(client_or_browser, Browser) else client_or_browser


def browser_session(app: Flask, client_or_browser: FlaskClient | Browser) -> dict[str, Any]:
    """The server-side session of this browser (or test client), ``{}`` when it has none."""
    provider = app.extensions["idp"]
    cookie = _client_of(client_or_browser).get_cookie(provider.config.session.cookie_name)
    if cookie is None:
        return {}
    return provider.store.get("browser-session:" + sha256_hex(cookie.value)) or {}


def captcha_answer(app: Flask, client_or_browser: FlaskClient | Browser) -> str:
    """The answer to the CAPTCHA last drawn for this browser (or test client), as its picture shows it: the
    challenge its server-side session names, unsealed as the picture is drawn."""
    cookie_name = app.extensions["idp"].config.session.cookie_name
    cookie = _client_of(client_or_browser).get_cookie(cookie_name)
    assert cookie is not None, "the page with the CAPTCHA set a session cookie"
    data = browser_session(app, client_or_browser)
    assert "captcha" in data, "no CAPTCHA was drawn for this browser"
    with app.app_context():
        answer = drawable_answer(data["captcha"])
    assert answer is not None, "the CAPTCHA of this browser was spent or has expired"
    return answer


def authorization_params(client: ClientInfo, challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def get_code(browser: Browser, client: ClientInfo, user: UserInfo, **extra: str) -> tuple[str, str, dict[str, str]]:
    """Run the browser part of the code flow (login and consent as needed); returns (code, verifier, query)."""
    verifier, challenge = pkce_pair()
    params = authorization_params(client, challenge, **extra)
    response = browser.authorize(params)
    if response.status_code == 200 and b'name="national_code"' in response.data:
        response = browser.login(response, user)
    if response.status_code == 200 and b'name="decision"' in response.data:
        response = browser.consent(response)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert response.location.startswith(client.redirect_uri), response.location
    query = query_of(response.location)
    assert query.get("state") == params["state"]
    return query["code"], verifier, query


def exchange_code(client: FlaskClient, rp: ClientInfo, code: str, verifier: str, **extra: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    data.update(extra)
    auth = (rp.client_id, rp.client_secret) if rp.client_secret else None
    if auth is None:
        data.setdefault("client_id", rp.client_id)
    return client.post("/token", data=data, auth=auth)


def code_flow_tokens(browser: Browser, rp: ClientInfo, user: UserInfo, scope: str = "openid profile") -> dict[str, Any]:
    """A whole code flow in ``browser`` (login and consent as asked), then the code exchanged: the token response."""
    code, verifier, _ = get_code(browser, rp, user, scope=scope)
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh_grant(client: FlaskClient, rp: ClientInfo, refresh_token: str, **extra: str) -> Any:
    """A refresh at the token endpoint, ``rp`` authenticating by its secret (or by its client_id if public)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if rp.client_secret:
        return client.post("/token", data=data, auth=(rp.client_id, rp.client_secret))
    return client.post("/token", data={**data, "client_id": rp.client_id})


# -- text messages and the identity registry ------------------------------------------------------------


def sms_outbox(app: Flask) -> list[dict[str, Any]]:
    """Every text message the outbox backend wrote, oldest first."""
    import json

    config = app.extensions["idp"].config
    path = config.var_file(config.sms.outbox_path, "sms-outbox.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_sms_code(app: Flask, to: str, purpose: str) -> str:
    """The code of the newest message for ``purpose`` sent to ``to`` (E.164)."""
    for message in reversed(sms_outbox(app)):
        if message["to"] == to and message["purpose"] == purpose:
            return message["code"]
    raise AssertionError(f"no {purpose} code was texted to {to}; outbox: {sms_outbox(app)}")


def registry_path(app: Flask) -> Any:
    config = app.extensions["idp"].config
    return config.var_file(config.registry.path, "registry.json")


def add_registry_person(
    app: Flask,
    national_code: str,
    birthdate: str,
    mobiles: list[str],
    given_name: str = "سارا",
    family_name: str = "محمدی",
) -> None:
    """Add (or replace) a person in the file registry the app reads."""
    import json

    path = registry_path(app)
    people = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    people = [p for p in people if p["national_code"] != national_code]
    people.append(
        {
            "national_code": national_code,
            "birthdate": birthdate,
            "given_name": given_name,
            "family_name": family_name,
            "mobiles": mobiles,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(people, ensure_ascii=False), encoding="utf-8")


# -- what the database saw ---------------------------------------------------------------------------


@dataclass
class StatementLog:
    """The SQL the app's engine ran, in order: each statement's first keyword with whether its connection was in
    autocommit, and ("COMMIT", False) for each commit."""

    dialect: str
    entries: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        """Statements and commits, in order."""
        return [kind for kind, _ in self.entries]

    @property
    def statements(self) -> list[str]:
        return [kind for kind in self.kinds if kind != "COMMIT"]

    @property
    def autocommit(self) -> list[bool]:
        """For each statement (commits left out), whether it ran outside a transaction."""
        return [outside for kind, outside in self.entries if kind != "COMMIT"]


@contextmanager
def statements_run(app: Flask) -> Iterator[StatementLog]:
    """Record what the app's database engine runs inside the block (statements, not time: tests of round trips)."""
    from sqlalchemy import event

    from idp.extensions import db

    with app.app_context():
        engine = db.engine
    log = StatementLog(engine.dialect.name)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        autocommit = getattr(cursor.connection, "autocommit", None) is True
        log.entries.append((statement.split(None, 1)[0].upper(), autocommit))

    def committed(conn: Any) -> None:
        log.entries.append(("COMMIT", False))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", committed)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "commit", committed)


def seen_within(check: Callable[[], bool], seconds: float = 1.0) -> bool:
    """True once ``check()`` is true, within ``seconds``. For what a worker learns from an announcement on Redis
    (idp.store.absences): it reaches a subscriber in the same pass of Redis's event loop as the writer's answer,
    which a starved machine can stretch to milliseconds. Far shorter than any remembered time (5 s or more), so
    only the announcement can make it true."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def deafen_announcements(store: Any) -> None:
    """Make a RedisStore's subscription deliver nothing from now on (its own announcements included), as when
    Redis writes an announcement to it only after the writer's answer: what the worker forgets then, it forgot
    without hearing it (idp.store.absences)."""
    assert store.remembered("warm-up")[1] is not None, "not subscribed: nothing would be remembered"
    store.absences._pubsub.get_message = lambda timeout=0.0: None


def grant_id_of(client: FlaskClient, access_token: str) -> str:
    """The ``gid`` claim of one of the provider's access tokens (its signature checked against the JWKS)."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return jwt.decode(access_token, keys, algorithms=["RS256", "ES256"]).claims["gid"]


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP at its issuer URL (werkzeug, a thread per request) while the block runs."""
    config = app.extensions["idp"].config
    server = make_server("127.0.0.1", config.server.port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield config.server.issuer
    finally:
        server.shutdown()
        thread.join(timeout=5)


def in_parallel(count: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run ``attempt(0)`` … ``attempt(count - 1)`` in ``count`` threads released together; their results in order.
    An exception in a thread is raised here."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=30)
            results[index] = attempt(index)
        except BaseException as error:  # reported to the caller below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results
