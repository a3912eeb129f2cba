"""Operations: /healthz and /readyz, /metrics (who may read it, and that its counters move), trusted proxies'
X-Forwarded-* headers, request ids, and JSON logs that carry a request id and never a credential."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import select

from idp.extensions import db
from idp.ops.logs import JSONFormatter, RequestIdFilter
from idp.store.models import AuditEvent

from .conftest import free_port, make_app
from .helpers import (
    Browser,
    authorization_params,
    browser_for,
    create_test_client,
    create_test_user,
    exchange_code,
    get_code,
    last_sms_code,
    pkce_pair,
    query_of,
)
from .instances_support import metric_value

TRUSTED = "10.0.0.1, 192.168.0.0/16"


def scrape(app: Flask) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def echo_app(app_with: Any, **overrides: dict) -> Flask:
    """An app with a test-only route that tells what the request looked like after the proxy middleware."""
    app = app_with(**overrides)

    @app.get("/_echo")
    def echo() -> Any:
        return jsonify(
            remote_addr=request.remote_addr,
            scheme=request.scheme,
            host=request.host,
            url_root=request.url_root,
        )

    return app


def echo(app: Flask, peer: str, **headers: str) -> dict[str, Any]:
    response = app.test_client().get("/_echo", environ_base={"REMOTE_ADDR": peer}, headers=headers)
    assert response.status_code == 200
    return response.get_json()


# -- probes -----------------------------------------------------------------------------------------------


def test_healthz_and_readyz(client):
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok"}
    assert health.headers["Cache-Control"] == "no-store"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == {"status": "ready", "checks": {"database": "ok", "store": "ok", "keys": "ok"}}
    assert ready.headers["Cache-Control"] == "no-store"


def test_readyz_says_which_service_is_down(backend, tmp_path):
    # Built without app_with, whose clean-up would empty the (unreachable) store.
    app = make_app(
        backend, tmp_path, redis={"url": f"redis://127.0.0.1:{free_port()}/0"}, observability={"retry_after": 7}
    )
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200  # the process answers ...
        ready = client.get("/readyz")  # ... but cannot serve
        assert ready.status_code == 503
        body = ready.get_json()
        assert body["status"] == "unavailable"
        assert body["checks"] == {"database": "ok", "store": "unreachable", "keys": "ok"}
        assert ready.headers["Retry-After"] == "7"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- /metrics: who may read it ------------------------------------------------------------------------------


def test_metrics_from_loopback_only_by_default(client):
    allowed = client.get("/metrics")
    assert allowed.status_code == 200
    assert "# TYPE hoviyat_http_requests_total counter" in allowed.get_data(as_text=True)
    for outsider in ("203.0.113.5", "10.0.0.7", "2001:db8::1"):
        refused = client.get("/metrics", environ_base={"REMOTE_ADDR": outsider})
        assert refused.status_code == 404, outsider
        assert b"hoviyat_" not in refused.data
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_metrics_allowed_networks_are_configurable(app_with):
    app = app_with(observability={"metrics_allowed": "10.1.0.0/16"}, server={"trusted_proxies": "10.0.0.1"})
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    # Through a trusted proxy the client's address counts, not the proxy's: an outsider stays outside ...
    forwarded = {"REMOTE_ADDR": "10.0.0.1"}
    outsider = client.get("/metrics", environ_base=forwarded, headers={"X-Forwarded-For": "203.0.113.9"})
    assert outsider.status_code == 404
    # ... and an outsider that writes an allowed address in front of its own gains nothing.
    spoofed = client.get("/metrics", environ_base=forwarded, headers={"X-Forwarded-For": "10.1.2.3, 203.0.113.9"})
    assert spoofed.status_code == 404
    inside = client.get("/metrics", environ_base=forwarded, headers={"X-Forwarded-For": "10.1.9.9"})
    assert inside.status_code == 200


# -- /metrics: the counters move -----------------------------------------------------------------------------


def test_login_and_token_counters(app, issuer, user, rp_client):
    before = scrape(app)
    browser = Browser(app.test_client(), issuer)
    _, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp_client, challenge))
    failed = browser.submit(
        page, {"national_code": user.national_code, "password": "not the password"}, field_name="password"
    )
    assert failed.status_code == 200 and b'name="password"' in failed.data
    middle = scrape(app)
    delta = metric_value(middle, "hoviyat_logins_total", method="pwd", result="failure") - metric_value(
        before, "hoviyat_logins_total", method="pwd", result="failure"
    )
    assert delta == 1
    assert metric_value(middle, "hoviyat_logins_total", result="success") == metric_value(
        before, "hoviyat_logins_total", result="success"
    )

    code, verifier, _ = get_code(browser, rp_client, user)
    assert exchange_code(browser.client, rp_client, code, verifier).status_code == 200
    after = scrape(app)
    for name, labels, expected in (
        ("hoviyat_logins_total", {"method": "pwd", "result": "success"}, 1),
        ("hoviyat_logins_total", {"method": "pwd", "result": "failure"}, 0),
        ("hoviyat_tokens_issued_total", {"grant_type": "authorization_code"}, 1),
        ("hoviyat_tokens_issued_total", {"grant_type": "refresh_token"}, 0),
        ("hoviyat_http_requests_total", {"endpoint": "/token", "method": "POST", "status": "200"}, 1),
        ("hoviyat_http_request_duration_seconds_count", {"endpoint": "/token"}, 1),
    ):
        moved = metric_value(after, name, **labels) - metric_value(middle, name, **labels)
        assert moved == expected, (name, labels, moved)


def test_rate_limit_counter(app_with):
    app = app_with(limits={"token_per_ip": "1 per minute"})
    client = app.test_client()
    before = scrape(app)
    assert client.post("/token", data={"grant_type": "client_credentials"}).status_code != 429
    refused = client.post("/token", data={"grant_type": "client_credentials"})
    assert refused.status_code == 429
    # The answer says when to come back: the length of the limit's window.
    assert refused.headers["Retry-After"] == "60"
    assert refused.get_json()["error"] == "temporarily_unavailable"
    after = scrape(app)
    moved = metric_value(after, "hoviyat_rate_limit_hits_total", limit="/token") - metric_value(
        before, "hoviyat_rate_limit_hits_total", limit="/token"
    )
    assert moved == 1
    status_429 = {"endpoint": "/token", "status": "429"}
    assert (
        metric_value(after, "hoviyat_http_requests_total", **status_429)
        - metric_value(before, "hoviyat_http_requests_total", **status_429)
        == 1
    )


def test_sms_code_counters(app, user):
    browser = browser_for(app, language="en")
    before = scrape(app)
    page = browser.get("/login/sms")
    page = browser.submit(page, {"national_code": user.national_code}, action_contains="/login/sms")
    assert page.status_code == 200
    sent = scrape(app)
    labels = {"channel": "sms", "purpose": "login"}
    assert (
        metric_value(sent, "hoviyat_codes_sent_total", **labels)
        - metric_value(before, "hoviyat_codes_sent_total", **labels)
        == 1
    )
    wrong = browser.submit(page, {"code": "000000"}, action_contains="/login/sms/verify")
    assert wrong.status_code == 200
    browser.submit(wrong, {"code": last_sms_code(app, user.mobile, "login")}, action_contains="/login/sms/verify")
    checked = scrape(app)
    for result, expected in (("wrong", 1), ("right", 1)):
        moved = metric_value(checked, "hoviyat_code_checks_total", purpose="login", result=result) - metric_value(
            sent, "hoviyat_code_checks_total", purpose="login", result=result
        )
        assert moved == expected, result
    assert (
        metric_value(checked, "hoviyat_logins_total", method="sms", result="success")
        - metric_value(sent, "hoviyat_logins_total", method="sms", result="success")
        == 1
    )


# -- trusted proxies -------------------------------------------------------------------------------------------


def test_forwarded_headers_are_ignored_from_an_untrusted_peer(app_with):
    app = echo_app(app_with, server={"trusted_proxies": TRUSTED})
    seen = echo(
        app,
        "203.0.113.50",
        **{"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
    )
    assert seen["remote_addr"] == "203.0.113.50"
    assert seen["scheme"] == "http"
    assert seen["host"] == "localhost"


def test_forwarded_headers_are_ignored_when_no_proxy_is_trusted(app_with):
    app = echo_app(app_with)  # server.trusted_proxies empty: nobody is believed, not even loopback
    seen = echo(app, "127.0.0.1", **{"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"})
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["scheme"] == "http"


def test_forwarded_headers_are_applied_from_a_trusted_proxy(app_with):
    app = echo_app(app_with, server={"trusted_proxies": TRUSTED})
    seen = echo(
        app,
        "10.0.0.1",
        **{"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example"},
    )
    assert seen == {
        "remote_addr": "198.51.100.1",
        "scheme": "https",
        "host": "id.example",
        "url_root": "https://id.example/",
    }
    # A network in the list trusts each of its addresses.
    assert echo(app, "192.168.7.7", **{"X-Forwarded-For": "198.51.100.2"})["remote_addr"] == "198.51.100.2"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        # The client wrote an address of its choice in front: the proxy appended the real one.
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),
        # Two trusted proxies in a row: the right-most untrusted hop is the client.
        ("6.6.6.6, 198.51.100.1, 192.168.1.5", "198.51.100.1"),
        # A client pretending to be a trusted proxy gains nothing: its own address is still the first untrusted.
        ("10.0.0.1, 198.51.100.1", "198.51.100.1"),
        # Garbage stops the walk: the hop to its right is the client.
        ("not-an-address, 198.51.100.3", "198.51.100.3"),
    ],
)
def test_spoofed_left_most_forwarded_for_entries_are_ignored(app_with, forwarded_for, client):
    app = echo_app(app_with, server={"trusted_proxies": TRUSTED})
    assert echo(app, "10.0.0.1", **{"X-Forwarded-For": forwarded_for})["remote_addr"] == client


def test_the_forwarded_client_address_is_what_the_audit_log_records(app_with):
    app = app_with(server={"trusted_proxies": TRUSTED})
    user = create_test_user(app)
    rp = create_test_client(app)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "6.6.6.6, 198.51.100.77"
    get_code(Browser(client, app.extensions["idp"].issuer), rp, user)
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.succeeded")).all()
        assert {event.ip_address for event in events} == {"198.51.100.77"}


# -- request ids -----------------------------------------------------------------------------------------------

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def test_every_response_has_a_new_request_id(client):
    ids = []
    for path in ("/healthz", "/jwks.json", "/no-such-page", "/healthz"):
        response = client.get(path)
        ids.append(response.headers.get("X-Request-Id"))
    assert all(value and REQUEST_ID.match(value) for value in ids), ids
    assert len(set(ids)) == len(ids)


def test_incoming_request_id_kept_only_from_a_trusted_proxy(app_with):
    app = app_with(server={"trusted_proxies": TRUSTED})
    client = app.test_client()
    offered = {"X-Request-Id": "proxy-assigned-0001"}
    untrusted = client.get("/healthz", headers=offered, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert untrusted.headers["X-Request-Id"] != "proxy-assigned-0001"
    assert REQUEST_ID.match(untrusted.headers["X-Request-Id"])
    trusted = client.get("/healthz", headers=offered, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert trusted.headers["X-Request-Id"] == "proxy-assigned-0001"
    # Even a trusted proxy's id must look like an id: nothing that could forge a log line passes.
    odd = client.get("/healthz", headers={"X-Request-Id": 'x" forged="1'}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert REQUEST_ID.match(odd.headers["X-Request-Id"])


# -- JSON logs --------------------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "INFO",
        "DEBUG",
    ]
)
def json_log(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every log record of the test at observability.log_level (INFO, the default, and DEBUG), formatted by the
    provider's JSON formatter with its request-id filter, one per line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(request.param)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_json_logs_carry_request_ids_and_no_credentials(app, issuer, user, rp_client, json_log):
    secrets_seen: dict[str, str] = {"password": user.password, "client_secret": rp_client.client_secret or ""}
    browser = Browser(app.test_client(), issuer)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp_client, challenge, scope="openid profile phone")
    page = browser.authorize(params)
    wrong = browser.submit(
        page, {"national_code": user.national_code, "password": "Wrong-Pass-123"}, field_name="password"
    )
    secrets_seen["wrong_password"] = "Wrong-Pass-123"
    page = browser.login(wrong, user)
    if b'name="decision"' in page.data:
        page = browser.consent(page)
    assert page.status_code == 302
    code = query_of(page.location)["code"]
    secrets_seen["authorization_code"] = code
    secrets_seen["code_verifier"] = verifier
    tokens = exchange_code(browser.client, rp_client, code, verifier).get_json()
    refreshed = browser.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp_client.client_id, rp_client.client_secret),
    ).get_json()
    for name in ("access_token", "refresh_token", "id_token"):
        secrets_seen[name] = tokens[name]
        secrets_seen["refreshed_" + name] = refreshed[name]
    assert (
        browser.client.get("/userinfo", headers={"Authorization": f"Bearer {refreshed['access_token']}"}).status_code
        == 200
    )
    # A replayed refresh token is logged as a warning (and revokes the family): the token must not be in it.
    replay = browser.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp_client.client_id, rp_client.client_secret),
    )
    assert replay.status_code == 400
    # An SMS code: its text and the code typed back.
    sms = browser_for(app, language="en")
    sms_page = sms.submit(sms.get("/login/sms"), {"national_code": user.national_code}, action_contains="/login/sms")
    sms_code = last_sms_code(app, user.mobile, "login")
    secrets_seen["sms_code"] = sms_code
    sms.submit(sms_page, {"code": sms_code}, action_contains="/login/sms/verify")
    # A logout with the ID token in the query string.
    logout = browser.client.get(
        "/logout?" + "&".join(f"{k}={v}" for k, v in {"id_token_hint": tokens["id_token"], "state": "s"}.items())
    )
    assert logout.status_code in (200, 302)

    lines = json_log.getvalue().splitlines()
    assert len(lines) > 20
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        entries.append(entry)
        assert entry["request_id"], line  # every line was written while serving a request, so it has an id
        for name, value in secrets_seen.items():
            assert value not in line, f"the {name} reached the log: {line}"
    access = [e for e in entries if e["logger"] == "idp.access"]
    paths = {e["path"] for e in access}
    assert {"/authorize", "/token", "/userinfo", "/logout", "/login/sms"} <= paths
    assert all("?" not in e["path"] and "?" not in e["message"] for e in access)
    assert {e["status"] for e in access if e["path"] == "/token"} == {200, 400}
    assert len({e["request_id"] for e in access}) == len(access)  # one id per request
    # Records of one request share its id: the token replay's warning and its access line.
    replay_id = replay.headers["X-Request-Id"]
    assert sum(1 for e in entries if e["request_id"] == replay_id) >= 2


def test_a_client_credentials_token_is_one_access_line_naming_the_client(app, json_log):
    """No audit row for a machine's own token; its access line says which client got one (and nothing secret)."""
    from .helpers import create_test_client

    rp_client = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    client = app.test_client()
    response = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(rp_client.client_id, rp_client.client_secret)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    # At INFO and above (DEBUG adds Authlib's own lines): the access line and nothing else.
    token_lines = [e for e in entries if e["level"] != "debug"]
    assert len(token_lines) == 1, token_lines
    line = token_lines[0]
    assert line["status"] == 200 and line["client_id"] == rp_client.client_id
    assert line["grant_type"] == "client_credentials"
    assert line["message"] == f"POST /token 200 client_id={rp_client.client_id} grant_type=client_credentials"
    text = json_log.getvalue()
    assert response.get_json()["access_token"] not in text and str(rp_client.client_secret) not in text


def test_request_ids_of_two_forked_workers_differ():
    """Request ids come from Python's generator, not uuid4: each forked worker must get a generator of its own,
    or two workers would give their requests the same ids."""
    import os

    from idp.ops.logs import new_request_id

    new_request_id()  # the parent's generator is in use before the fork, as in gunicorn's master
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(write_end, "".join(new_request_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read()
    ours = [new_request_id() for _ in range(4)]
    assert len(theirs) == 128 and all(len(i) == 32 and int(i, 16) >= 0 for i in ours)
    assert not {theirs[i : i + 32] for i in range(0, 128, 32)} & set(ours)


def _batched(interval: float = 0.05):
    from idp.ops.logs import BatchedStreamHandler, JSONFormatter

    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, interval=interval)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"idp.test-batched-{id(handler)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler, stream


def _wait_for_lines(stream: io.StringIO, count: int, seconds: float = 3.0) -> list[dict]:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = stream.getvalue().splitlines()
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.01)
    raise AssertionError(f"{count} lines expected, got: {stream.getvalue()!r}")


def test_batched_log_lines_are_written_in_order_with_the_message_of_their_moment():
    logger, _, stream = _batched()
    detail = {"grant": "g1"}
    for n in range(50):
        logger.info("line %s %s", n, detail)
    detail["grant"] = "changed after logging"  # the line keeps what was true when it was logged
    lines = _wait_for_lines(stream, 50)
    assert [line["message"] for line in lines] == [f"line {n} {{'grant': 'g1'}}" for n in range(50)]


def test_a_batched_warning_is_written_at_once_and_secrets_are_still_redacted():
    import time

    logger, _, stream = _batched(interval=30)  # only the warning can wake the writer
    started = time.monotonic()
    logger.warning("refresh_token=abc.def replayed")
    lines = _wait_for_lines(stream, 1)
    assert time.monotonic() - started < 2
    assert lines[0]["level"] == "warning" and "abc.def" not in lines[0]["message"]


def test_a_forked_worker_does_not_write_its_parent_s_pending_lines_again():
    import os

    logger, handler, stream = _batched(interval=30)
    logger.info("pending in the parent at the fork")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        handler.flush()  # what its exit would do
        os._exit(1 if stream.getvalue() else 0)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 0
    handler.flush()
    assert [line["message"] for line in _wait_for_lines(stream, 1)] == ["pending in the parent at the fork"]


def test_a_forked_worker_writes_the_lines_it_logs_itself():
    """gunicorn's workers are forked from a master whose handler is set up: each writes its own lines (from a
    writer thread of its own, without waiting for its exit)."""
    import os
    import time

    from idp.ops.logs import BatchedStreamHandler, JSONFormatter

    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    handler = BatchedStreamHandler(stream, interval=0.05)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"idp.test-forked-{id(handler)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        logger.info("logged in the child")
        time.sleep(1)
        os._exit(0)  # no flush at exit: only the writer thread can have written the line
    os.waitpid(child, 0)
    stream.close()
    with os.fdopen(read_end) as pipe:
        lines = pipe.read().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["logged in the child"]
