"""Faults of the backing services: Redis or PostgreSQL going away and coming back, and a worker killed (SIGKILL)
in the middle of a write.

Every outage is caused on a server these tests started themselves (a private ``redis-server``, a private
PostgreSQL cluster), never on the machine's shared ones, which other tests use at the same time. So the tests
do not take the suite's ``backend`` fixture and run once each; the SIGKILL tests run on SQLite and on
PostgreSQL by their own parameter.

What is checked: while a service is down, pages answer 503 with the error page and ``Retry-After`` and protocol
endpoints 503 JSON ``temporarily_unavailable``, never a 500; nothing is half-written; service resumes by itself
when the service is back, without restarting the app.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import requests
from flask import Flask
from flask_babel import force_locale, gettext
from sqlalchemy import create_engine, select, text

import idp.auth.flow
import idp.auth.password_login
from idp import clock
from idp.extensions import db
from idp.store.connections import TRUSTED_FOR
from idp.store.models import AuditEvent, Grant, RefreshToken, User

from .conftest import POSTGRES_ADMIN_URL, Backend, make_app
from .faults_support import (
    HttpBrowser,
    PostgresCluster,
    RedisServer,
    ServedProvider,
    code_exchange,
    dispose,
    http_code_flow,
    postgres_cluster_unavailable,
    row_counts,
    served_environment,
    token_request,
    wait_until,
)
from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    add_registry_person,
    authorization_params,
    browser_for,
    browser_session,
    create_test_client,
    create_test_user,
    english_browser,
    exchange_code,
    find_form,
    get_code,
    is_logged_in,
    last_sms_code,
    pkce_pair,
    valid_national_code,
)

UNAVAILABLE = "The service is unavailable at the moment. Please try again in a few minutes."
RETRY_AFTER = "30"  # observability.retry_after's default
PASSWORD = "saffron tea at noon 7"


@dataclass(frozen=True)
class Person:
    """Someone in the file registry who has no account yet."""

    national_code: str = valid_national_code("369258147")
    birthdate: str = "1995-06-01"
    jalali: tuple[str, str, str] = ("1374", "3", "11")
    mobile: str = "+989131112233"
    typed_mobile: str = "09131112233"


PERSON = Person()


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    reason = postgres_cluster_unavailable()
    if reason:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fault_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Make an app on the given database and Redis (empty for the in-process store)."""
    made: list[Flask] = []

    def factory(database_url: str, redis_url: str) -> Flask:
        backend = Backend("faults", database_url, redis_url, f"idp-faults-{secrets.token_hex(4)}:")
        app = make_app(backend, tmp_path / f"app{len(made)}", otp={"resend_interval": 1})
        # As in production: an error raised while the browser session is saved reaches the error handlers
        # (under TESTING Flask would re-raise it into the test instead).
        app.config["TESTING"] = False
        made.append(app)
        return app

    clock.reset()
    try:
        yield factory
    finally:
        clock.reset()
        for app in made:
            dispose(app)


# -- what an outage must look like -----------------------------------------------------------------------------


def persian_unavailable(app: Flask) -> str:
    with app.test_request_context(), force_locale("fa"):
        message = gettext(UNAVAILABLE)
    assert message != UNAVAILABLE, "the message has a Persian translation"
    return message


def assert_retry_after(response: Any, rate_limited_route: bool) -> None:
    """``Retry-After`` is observability.retry_after. On routes with a rate limit Flask-Limiter's after_request
    raises it to the end of the limit's window (it keeps the larger of the two), so there it is at least that."""
    value = response.headers.get("Retry-After")
    if rate_limited_route:
        assert value is not None and value.isdigit() and int(value) >= int(RETRY_AFTER), value
    else:
        assert value == RETRY_AFTER


def assert_unavailable_page(response: Any, message: str = UNAVAILABLE, rate_limited_route: bool = False) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 503, (response.status_code, body[:2000])
    assert response.mimetype == "text/html"
    assert_retry_after(response, rate_limited_route)
    assert "no-store" in response.headers.get("Cache-Control", "")
    assert message in body, body[:2000]
    assert "Traceback" not in body


def assert_unavailable_json(response: Any, rate_limited_route: bool = False) -> None:
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True)[:2000])
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert_retry_after(response, rate_limited_route)
    assert "no-store" in response.headers.get("Cache-Control", "")


def assert_not_ready(client: Any, failing: str) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.get_data(as_text=True)
    assert ready.headers.get("Retry-After") == RETRY_AFTER
    body = ready.get_json()
    assert body["checks"][failing] != "ok", body
    assert all(value == "ok" for name, value in body["checks"].items() if name not in (failing, "keys")), body
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.get_json() == {"status": "ok"}


def assert_ready(client: Any) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_data(as_text=True)
    assert ready.get_json() == {"status": "ready", "checks": {"database": "ok", "store": "ok", "keys": "ok"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_events(app: Flask, event: str) -> int:
    with app.app_context():
        try:
            return len(list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event))))
        finally:
            db.session.remove()


# -- registration through the Flask test client ----------------------------------------------------------------


def registration_details_page(browser: Browser, person: Person = PERSON) -> Any:
    """Step one (the mobile number, a code is texted); returns the details page of step two."""
    page = browser.get("/register")
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    details = browser.submit(page, {"mobile": person.typed_mobile}, field_name="mobile")
    assert details.status_code == 200 and details.request.path == "/register/details", details.data[:2000]
    return details


def submit_registration(app: Flask, browser: Browser, page: Any, person: Person = PERSON) -> Any:
    """Step two: national code, birth date, password and the texted code. Not following the redirect."""
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
        "code": last_sms_code(app, person.mobile, "register"),
    }
    return browser.client.post(form.action or "/register/details", data=data)


def put_in_registry(app: Flask, person: Person = PERSON) -> None:
    add_registry_person(app, person.national_code, person.birthdate, [person.mobile])


# -- 1. Redis stopped and started again --------------------------------------------------------------------------


def signed_in(app: Flask) -> tuple[UserInfo, ClientInfo, Browser, str]:
    """A user, a relying party and an English browser that went through the code flow; with the access token."""
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = english_browser(app)
    code, verifier, _ = get_code(browser, rp, user)
    tokens = exchange_code(browser.client, rp, code, verifier)
    assert tokens.status_code == 200, tokens.get_json()
    return user, rp, browser, tokens.get_json()["access_token"]


def test_redis_outage_gives_503_and_service_resumes_when_redis_is_back(fault_app, redis_server, tmp_path):
    app = fault_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}", redis_server.url)
    user, rp, browser, access_token = signed_in(app)
    pending_code, pending_verifier, _ = get_code(browser, rp, user)  # consent is remembered: straight back
    assert_ready(browser.client)

    redis_server.kill()

    # Pages: the account of a logged-in browser, the login page of a new visitor (English and, by default,
    # Persian), and a relying party's authorization request.
    assert_unavailable_page(browser.client.get("/"))
    assert_unavailable_page(english_browser(app).client.get("/login"))
    assert_unavailable_page(browser_for(app).client.get("/login"), persian_unavailable(app))
    _, challenge = pkce_pair()
    assert_unavailable_page(
        english_browser(app).client.get("/authorize?" + urlencode(authorization_params(rp, challenge)))
    )
    # Protocol endpoints: JSON.
    assert_unavailable_json(exchange_code(browser.client, rp, pending_code, pending_verifier))
    # Userinfo and introspection need nothing from Redis (revocations are in the database): they keep answering.
    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 200
    introspected = browser.client.post(
        "/token/introspect", data={"token": access_token}, auth=(rp.client_id, rp.client_secret)
    )
    assert introspected.status_code == 200 and introspected.get_json()["active"] is True
    assert_not_ready(browser.client, "store")

    redis_server.start()  # same port, empty (no persistence): every browser session is gone, as after a crash

    assert_ready(browser.client)
    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 200
    fresh = english_browser(app)
    code, verifier, _ = get_code(fresh, rp, user)
    tokens = exchange_code(fresh.client, rp, code, verifier)
    assert tokens.status_code == 200, tokens.get_json()
    info = fresh.client.get("/userinfo", headers=bearer(tokens.get_json()["access_token"]))
    assert info.status_code == 200, info.get_json()
    assert is_logged_in(fresh)


def test_a_redis_restart_brings_no_revoked_access_token_back(fault_app, redis_server, tmp_path):
    """Issue 19 item 8 with a real restart: a relying party revokes an access token that a resource server has
    been introspecting (so the worker remembers it active), then Redis restarts empty. The token stays revoked:
    the revocation is in the database, and the worker's memory went with its subscription."""
    app = fault_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}", redis_server.url)
    _user, rp, browser, access_token = signed_in(app)

    def introspect() -> dict[str, Any]:
        answer = browser.client.post(
            "/token/introspect", data={"token": access_token}, auth=(rp.client_id, rp.client_secret)
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()

    assert introspect()["active"] is True and introspect()["active"] is True
    revoked = browser.client.post("/token/revoke", data={"token": access_token}, auth=(rp.client_id, rp.client_secret))
    assert revoked.status_code == 200

    redis_server.kill()
    redis_server.start()  # same port, empty (no persistence)

    assert_ready(browser.client)
    assert introspect() == {"active": False}
    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 401


# -- 2. PostgreSQL stopped and started again -----------------------------------------------------------------------


def test_postgres_outage_gives_503_and_service_resumes_when_postgres_is_back(fault_app, pg_cluster, redis_server):
    app = fault_app(pg_cluster.create_database("hoviyat"), redis_server.url)
    user, rp, browser, access_token = signed_in(app)
    pending_code, pending_verifier, _ = get_code(browser, rp, user)
    visitor = english_browser(app)
    login_page = visitor.get("/login")
    assert login_page.status_code == 200
    assert_ready(browser.client)

    pg_cluster.stop("fast")

    assert_unavailable_page(browser.client.get("/"))  # the login session is a row in PostgreSQL
    assert_unavailable_page(browser.client.get("/login"))
    _, challenge = pkce_pair()
    assert_unavailable_page(browser.client.get("/authorize?" + urlencode(authorization_params(rp, challenge))))
    persian = browser_for(app)
    assert_unavailable_page(
        persian.login(persian.get("/login"), user), persian_unavailable(app), rate_limited_route=True
    )
    assert_unavailable_page(visitor.login(login_page, user), rate_limited_route=True)
    assert "sid" not in browser_session(app, visitor)  # Redis is up: it must not have been told of a login
    assert_unavailable_json(exchange_code(browser.client, rp, pending_code, pending_verifier), rate_limited_route=True)
    assert_unavailable_json(browser.client.get("/userinfo", headers=bearer(access_token)))
    assert_not_ready(browser.client, "database")

    pg_cluster.start()

    assert_ready(browser.client)
    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 200
    assert browser.client.get("/").status_code == 200
    assert not is_logged_in(visitor)
    fresh = english_browser(app)
    code, verifier, _ = get_code(fresh, rp, user)
    assert exchange_code(fresh.client, rp, code, verifier).status_code == 200


def test_a_postgres_restart_during_a_quiet_spell_is_not_seen_by_the_next_request(fault_app, pg_cluster, redis_server):
    # The pool's connections all died with the restart; one idle for longer than TRUSTED_FOR is tested before
    # use and replaced, so the first request after the quiet spell is served, not refused.
    app = fault_app(pg_cluster.create_database("hoviyat"), redis_server.url)
    _, _, browser, access_token = signed_in(app)
    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 200

    pg_cluster.stop("fast")
    pg_cluster.start()
    time.sleep(TRUSTED_FOR + 0.2)

    assert browser.client.get("/userinfo", headers=bearer(access_token)).status_code == 200
    assert browser.client.get("/").status_code == 200


def test_a_code_exchange_refused_for_a_postgres_outage_can_be_retried(fault_app, pg_cluster, redis_server):
    app = fault_app(pg_cluster.create_database("hoviyat"), redis_server.url)
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = english_browser(app)
    code, verifier, _ = get_code(browser, rp, user)
    pg_cluster.stop("fast")
    assert_unavailable_json(exchange_code(browser.client, rp, code, verifier), rate_limited_route=True)
    pg_cluster.start()
    tokens = exchange_code(browser.client, rp, code, verifier)
    assert tokens.status_code == 200, tokens.get_json()


def test_a_refresh_on_a_dropped_connection_gives_503_and_its_retry_works(fault_app, pg_cluster, redis_server):
    """The refresh's statements run on a pooled connection, outside a transaction. PostgreSQL drops it (a restart,
    a proxy's idle timeout) and the next refresh comes within the second in which a pooled connection is trusted
    without a ping: that refresh gets 503 with nothing written, the dead connection is thrown away, and the retry
    succeeds on a new one with the same token. While PostgreSQL is down, a refresh gets 503 too, and the same
    token works once it is back."""
    app = fault_app(pg_cluster.create_database("hoviyat"), redis_server.url)
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = english_browser(app)
    code, verifier, _ = get_code(browser, rp, user)
    tokens = exchange_code(browser.client, rp, code, verifier).get_json()

    def refresh(token: str) -> Any:
        data = {"grant_type": "refresh_token", "refresh_token": token}
        return browser.client.post("/token", data=data, auth=(rp.client_id, rp.client_secret))

    first = refresh(tokens["refresh_token"])
    assert first.status_code == 200, first.get_json()
    with app.app_context():
        admin = create_engine(db.engine.url)  # not the app's pool: its one connection is the one to drop
    with admin.connect() as connection:
        dropped = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    admin.dispose()
    assert dropped >= 1  # the connection the refresh used, back in the pool

    assert_unavailable_json(refresh(first.get_json()["refresh_token"]), rate_limited_route=True)
    second = refresh(first.get_json()["refresh_token"])
    assert second.status_code == 200, second.get_json()

    pg_cluster.stop("fast")
    # The first finds its pooled connection dead; the second, after it was thrown away, cannot connect.
    assert_unavailable_json(refresh(second.get_json()["refresh_token"]), rate_limited_route=True)
    time.sleep(TRUSTED_FOR + 0.2)
    assert_unavailable_json(refresh(second.get_json()["refresh_token"]), rate_limited_route=True)
    pg_cluster.start()
    third = refresh(second.get_json()["refresh_token"])
    assert third.status_code == 200, third.get_json()
    assert refresh(third.get_json()["refresh_token"]).status_code == 200


# -- 5. Outages in the middle of registration and login ---------------------------------------------------------


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis that keeps its records across SIGKILL (append-only file, fsync always), as production would."""
    server = RedisServer(tmp_path / "redis-aof", persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_redis_outage_during_the_sms_code_step_of_registration_leaves_no_account(
    fault_app, persistent_redis, tmp_path, monkeypatch
):
    app = fault_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}", persistent_redis.url)
    put_in_registry(app)
    before = row_counts(app)
    browser = english_browser(app)
    page = registration_details_page(browser)

    # Redis goes away in the middle of step two: after the code was checked, before it is used up.
    registry = app.extensions["idp"].registry
    find_person = registry.find_person

    def redis_dies_during_the_registry_lookup(*args: Any, **kwargs: Any) -> Any:
        persistent_redis.kill()
        return find_person(*args, **kwargs)

    monkeypatch.setattr(registry, "find_person", redis_dies_during_the_registry_lookup)
    assert_unavailable_page(submit_registration(app, browser, page))
    monkeypatch.setattr(registry, "find_person", find_person)
    assert row_counts(app) == before  # no account, no audit event, nothing

    # Redis is back with its records: the same page, sent again, registers the person completely.
    persistent_redis.start()
    done = submit_registration(app, browser, page)
    assert done.status_code == 303, done.get_data(as_text=True)[:2000]
    assert is_logged_in(browser)
    assert audit_events(app, "user.registered") == 1
    assert row_counts(app)["users"] == 1


def test_a_form_sent_while_redis_is_down_gets_the_unavailable_page(fault_app, persistent_redis, tmp_path):
    app = fault_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}", persistent_redis.url)
    put_in_registry(app)
    before = row_counts(app)
    browser = english_browser(app)
    page = registration_details_page(browser)
    persistent_redis.kill()
    response = submit_registration(app, browser, page)
    assert response.status_code != 500 and row_counts(app) == before  # whatever the page, no account
    assert_unavailable_page(response)


def test_redis_outage_during_the_sms_code_step_of_login_lets_nobody_in(
    fault_app, persistent_redis, tmp_path, monkeypatch
):
    app = fault_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}", persistent_redis.url)
    user = create_test_user(app)
    browser = english_browser(app)
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code}, field_name="national_code")
    assert page.status_code == 200 and page.request.path == "/login/sms/verify", page.data[:2000]
    code = last_sms_code(app, user.mobile, "login")

    # Redis goes away once the code was used up, before the browser session learns of the login.
    claim_code = idp.auth.flow.claim_code

    def redis_dies_after_the_code_is_used(*args: Any) -> int | None:
        used = claim_code(*args)
        persistent_redis.kill()
        return used

    monkeypatch.setattr(idp.auth.flow, "claim_code", redis_dies_after_the_code_is_used)
    assert_unavailable_page(browser.submit(page, {"code": code}, field_name="code"))
    monkeypatch.setattr(idp.auth.flow, "claim_code", claim_code)

    persistent_redis.start()
    assert not is_logged_in(browser)  # the browser's session, kept by Redis, never got the login
    assert "sid" not in browser_session(app, browser)
    # A new code logs in.
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code}, field_name="national_code")
    time.sleep(1)  # otp.resend_interval
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code}, field_name="national_code")
    done = browser.submit(page, {"code": last_sms_code(app, user.mobile, "login")}, field_name="code")
    assert done.status_code == 200 and is_logged_in(browser), done.data[:2000]


def test_postgres_outage_at_login_leaves_no_session_that_lets_anyone_in(
    fault_app, pg_cluster, redis_server, monkeypatch
):
    app = fault_app(pg_cluster.create_database("hoviyat"), redis_server.url)
    user = create_test_user(app)
    before = row_counts(app)

    # PostgreSQL is gone when the password is sent.
    browser = english_browser(app)
    page = browser.get("/login")
    pg_cluster.stop("fast")
    assert_unavailable_page(browser.login(page, user), rate_limited_route=True)
    assert "sid" not in browser_session(app, browser)
    pg_cluster.start()
    assert not is_logged_in(browser)

    # PostgreSQL goes away in the middle: the password was right, the login was not saved yet.
    browser = english_browser(app)
    page = browser.get("/login")
    verify_password = idp.auth.password_login.verify_password

    def postgres_stops_after_the_password_check(*args: Any) -> bool:
        right = verify_password(*args)
        pg_cluster.stop("fast")
        return right

    monkeypatch.setattr(idp.auth.password_login, "verify_password", postgres_stops_after_the_password_check)
    assert_unavailable_page(browser.login(page, user), rate_limited_route=True)
    monkeypatch.setattr(idp.auth.password_login, "verify_password", verify_password)
    assert "sid" not in browser_session(app, browser)
    pg_cluster.start()
    assert not is_logged_in(browser)
    assert row_counts(app) == before  # no login session row, no login.succeeded

    # The same password logs in now.
    assert browser.login(browser.get("/login"), user).status_code == 200
    assert is_logged_in(browser)
    assert row_counts(app)["user_sessions"] == 1


# -- 3 and 4. A worker killed with SIGKILL in the middle of a write ------------------------------------------------


@dataclass
class ServedStack:
    kind: str
    app: Flask
    provider: ServedProvider
    database_url: str
    sqlite_path: Path | None = None

    @property
    def issuer(self) -> str:
        return self.app.extensions["idp"].issuer

    @contextlib.contextmanager
    def table_locked(self, table: str) -> Iterator[Callable[[], None]]:
        """Hold a lock that makes the provider's write to ``table`` wait; yields ``release``.

        PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE`` lets the provider read the table but not write it, so its
        request runs up to the INSERT and waits there, inside its transaction. SQLite locks the whole file: a
        ``BEGIN IMMEDIATE`` lets readers in and makes the first write wait (for the driver's 5 s busy timeout).
        """
        if self.kind == "postgres":
            connection = psycopg.connect(self.database_url.replace("postgresql+psycopg", "postgresql"))
            connection.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            release = connection.rollback
        else:
            connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")

            def release() -> None:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")

        try:
            yield release
        finally:
            release()
            connection.close()

    def wait_until_blocked(self, table: str, answered: Callable[[], bool]) -> int | None:
        """Wait until the provider's request waits for the lock; returns its PostgreSQL backend's pid."""
        if self.kind == "postgres":
            with psycopg.connect(self.database_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:

                def waiting() -> int | None:
                    row = c.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query ILIKE %s",
                        (f"%INSERT INTO {table}%",),  # alone, or inside a statement (WITH ... AS (INSERT ...))
                    ).fetchone()
                    return row[0] if row else None

                return wait_until(waiting, 15, f"the provider's INSERT INTO {table} to wait for the lock")
        # SQLite cannot say who waits for its lock. The request takes well under a second otherwise, and the driver
        # waits 5 s for a lock before it gives up: still unanswered after 1.5 s, it is waiting in its write.
        time.sleep(1.5)
        assert not answered(), "the request was answered before the worker was killed: it did not wait for the lock"
        return None

    def wait_for_backend_to_end(self, pid: int | None) -> None:
        """After the worker died, its PostgreSQL backend rolls back and ends once it can run again."""
        if pid is None:
            return
        with psycopg.connect(self.database_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            wait_until(
                lambda: c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 0,
                15,
                "the killed worker's database backend to end",
            )


def _postgres_unreachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error.__class__.__name__}"
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, fault_app, tmp_path: Path) -> Iterator[ServedStack]:
    """``idp serve --workers 1`` on SQLite with the in-process store, or on a database of its own in the shared
    PostgreSQL cluster with a private Redis."""
    redis_server: RedisServer | None = None
    admin = None
    database = f"idp_faults_{secrets.token_hex(4)}"
    provider: ServedProvider | None = None
    try:
        if request.param == "postgres":
            reason = _postgres_unreachable()
            if reason:
                pytest.skip(reason)
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{database}"'))
            database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
            redis_server = RedisServer(tmp_path / "redis")
            redis_server.start()
            app = fault_app(database_url, redis_server.url)
            sqlite_path = None
        else:
            sqlite_path = tmp_path / "served.sqlite3"
            database_url = f"sqlite:///{sqlite_path}"
            app = fault_app(database_url, "")
        dispose(app)  # the test reads the database through its own app; no connection of it stays open
        workdir = tmp_path / "served"
        workdir.mkdir()
        provider = ServedProvider(served_environment(app), workdir, app.extensions["idp"].issuer)
        provider.start()
        yield ServedStack(request.param, app, provider, database_url, sqlite_path)
    finally:
        if provider is not None:
            provider.stop()
        if redis_server is not None:
            redis_server.close()
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()


def test_worker_killed_during_registration_leaves_no_partial_account(served: ServedStack):
    app = served.app
    put_in_registry(app)
    browser = HttpBrowser(served.issuer)
    page = browser.get("/register")
    page = browser.submit(page, {"mobile": PERSON.typed_mobile}, field_name="mobile")
    assert page.status_code == 200 and page.url.endswith("/register/details"), page.text[:2000]
    year, month, day = PERSON.jalali
    details = {
        "national_code": PERSON.national_code,
        "birth_year": year,
        "birth_month": month,
        "birth_day": day,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "code": last_sms_code(app, PERSON.mobile, "register"),
    }
    code_sent_at = time.monotonic()
    url, values = browser.form_post(page, details, field_name="birth_year")
    before = row_counts(app)
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = browser.session.post(url, data=values, allow_redirects=False, timeout=30)
        except requests.RequestException as error:
            outcome["error"] = error

    sender = threading.Thread(target=send, daemon=True)
    with served.table_locked("users") as release:
        sender.start()
        backend = served.wait_until_blocked("users", lambda: bool(outcome))
        killed = served.provider.kill_worker()
        release()
    sender.join(timeout=15)
    assert "error" in outcome, f"the killed request was answered: {outcome.get('response')}"
    served.wait_for_backend_to_end(backend)

    assert row_counts(app) == before  # no user, no audit event, no session: nothing of the registration
    with app.app_context():
        assert db.session.scalar(select(User).where(User.national_code == PERSON.national_code)) is None
        db.session.remove()
    assert audit_events(app, "user.registered") == 0

    # gunicorn starts a new worker, and the same person registers, completely (no unique index is in the way).
    served.provider.wait_for_new_worker(killed)
    time.sleep(max(0.0, code_sent_at + 1.2 - time.monotonic()))  # otp.resend_interval is 1 s
    again = HttpBrowser(served.issuer)
    page = again.submit(again.get("/register"), {"mobile": PERSON.typed_mobile}, field_name="mobile")
    assert page.status_code == 200 and page.url.endswith("/register/details"), page.text[:2000]
    details["code"] = last_sms_code(app, PERSON.mobile, "register")
    done = again.submit(page, details, field_name="birth_year")
    assert done.status_code == 200 and done.url == served.issuer + "/", (done.status_code, done.url, done.text[:2000])
    assert 'name="password"' not in done.text  # logged in, on the account page
    assert audit_events(app, "user.registered") == 1
    assert row_counts(app)["users"] == 1
    browser.session.close()
    again.session.close()


def test_worker_killed_during_a_token_exchange_leaves_no_token_and_no_grant(served: ServedStack):
    app = served.app
    user = create_test_user(app)
    rp = create_test_client(app)
    browser = HttpBrowser(served.issuer)
    code, verifier = http_code_flow(browser, rp, user)
    before = row_counts(app)
    assert before["grants"] == 0 and before["refresh_tokens"] == 0
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = token_request(served.issuer, rp, code_exchange(rp, code, verifier), timeout=30)
        except requests.RequestException as error:
            outcome["error"] = error

    sender = threading.Thread(target=send, daemon=True)
    with served.table_locked("refresh_tokens") as release:
        sender.start()
        backend = served.wait_until_blocked("refresh_tokens", lambda: bool(outcome))
        killed = served.provider.kill_worker()
        release()
    sender.join(timeout=15)
    assert "error" in outcome, f"the client received an answer: {outcome.get('response')}"
    served.wait_for_backend_to_end(backend)

    assert row_counts(app) == before  # no grant, no refresh token, no token.issued
    assert audit_events(app, "token.issued") == 0

    served.provider.wait_for_new_worker(killed)
    # The code was used up (or lost with the in-process store): presenting it again is refused, not a 500.
    replay = token_request(served.issuer, rp, code_exchange(rp, code, verifier))
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    # A new flow gives tokens, and the refresh token works: its grant exists.
    code, verifier = http_code_flow(browser, rp, user)
    tokens = token_request(served.issuer, rp, code_exchange(rp, code, verifier))
    assert tokens.status_code == 200, tokens.text
    refreshed = token_request(
        served.issuer, rp, {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    with app.app_context():
        grants = list(db.session.scalars(select(Grant)))
        tokens_of = list(db.session.scalars(select(RefreshToken)))
        assert len(grants) == 1
        assert all(token.grant_id == grants[0].id for token in tokens_of) and len(tokens_of) == 2
        db.session.remove()
    browser.session.close()
