"""The identity registry (idp/identity_registry): the JSON-file backend, the HTTP backend against a fake registry
service, the registration page on the HTTP backend, and the demo registry written at start."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from idp.identity_registry import Person, RegistryUnavailable
from idp.identity_registry.file import FileRegistry
from idp.identity_registry.http import HttpRegistry
from idp.rules.national_code import national_code_check_digit, normalize_national_code
from idp.store.users import find_user_by_national_code

from .helpers import find_form, last_sms_code, registry_path, valid_national_code

NATIONAL_CODE = valid_national_code("246813579")
BIRTHDATE = dt.date(1995, 6, 1)  # 1374/03/11 in the Solar Hijri calendar
MOBILE = "+989131112233"
OTHER_MOBILE = "+989139998877"


# -- test isolation ----------------------------------------------------------------------------------------


def clear_rate_limit_counters(request: pytest.FixtureRequest) -> None:
    """Drop the run's rate-limit counters in Redis (the hourly code caps among them).

    conftest empties each test's store prefix, but the ``limits`` package keeps its counters under "LIMITS:", so on
    the Redis backend they would carry over from test to test within a run.
    """
    if "backend" not in request.fixturenames:
        return
    backend = request.getfixturevalue("backend")
    if not backend.redis_url:
        return
    client = redis.Redis.from_url(backend.redis_url)
    try:
        for key in client.scan_iter(match=f"LIMITS:*{backend.key_prefix}*", count=500):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request: pytest.FixtureRequest) -> Iterator[None]:
    clear_rate_limit_counters(request)
    yield
    clear_rate_limit_counters(request)


# -- a fake HTTP service, started in the test ----------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # the fake's own access log is noise
        pass


class FakeServer:
    """A local HTTP server answering with ``handler(request)``; records every request it gets."""

    def __init__(self, handler: Callable[[Request], Response], port: int = 0) -> None:
        self.handler = handler
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", port, self._app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        body = request.get_data(cache=True)
        seen = Seen(
            method=request.method,
            path=request.path,
            args=dict(request.args),
            headers=dict(request.headers),
            body=body,
            form=dict(request.form),
        )
        with self._lock:
            self.seen.append(seen)
        return self.handler(request)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def fake_servers() -> Iterator[Callable[..., FakeServer]]:
    """Start fake servers with ``start(handler)``; all are stopped on leaving."""
    started: list[FakeServer] = []

    def start(handler: Callable[[Request], Response], port: int = 0) -> FakeServer:
        server = FakeServer(handler, port)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    with fake_servers() as start:
        yield start


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeRegistryService:
    """The registry API of idp/identity_registry/http.py over a list of people in the README's file format."""

    def __init__(self, people: list[dict[str, Any]], api_key: str) -> None:
        self.people = {p["national_code"]: p for p in people}
        self.api_key = api_key

    def __call__(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return json_response({"error": "unauthorized"}, 401)
        if request.path.endswith("/mobile-ownership"):
            person = self.people.get(request.args.get("national_code", ""))
            return json_response({"owned": bool(person) and request.args.get("mobile") in person["mobiles"]})
        if "/people/" in request.path:
            person = self.people.get(request.path.rsplit("/", 1)[1])
            if person is None or person["birthdate"] != request.args.get("birthdate"):
                return json_response({"error": "not found"}, 404)
            return json_response({"given_name": person["given_name"], "family_name": person["family_name"]})
        return json_response({"error": "no such endpoint"}, 404)


# -- the file registry ----------------------------------------------------------------------------------


def write_people(path: Path, people: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(people, ensure_ascii=False), encoding="utf-8")


def person_entry(**changes: Any) -> dict[str, Any]:
    entry = {
        "national_code": NATIONAL_CODE,
        "birthdate": BIRTHDATE.isoformat(),
        "given_name": "سارا",
        "family_name": "محمدی",
        "mobiles": [MOBILE, OTHER_MOBILE],
    }
    entry.update(changes)
    return entry


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.json"
    other = person_entry(national_code=valid_national_code("135792468"), mobiles=["+989351234567"])
    write_people(path, [person_entry(), other])
    return path


@pytest.mark.parametrize(
    ("national_code", "mobile", "owned"),
    [
        (NATIONAL_CODE, MOBILE, True),
        (NATIONAL_CODE, OTHER_MOBILE, True),
        (NATIONAL_CODE, "+989351234567", False),  # another person's mobile
        (NATIONAL_CODE, "+989120000000", False),  # nobody's mobile
        (valid_national_code("135792468"), MOBILE, False),  # the mobile is not in this person's name
        (valid_national_code("111222333"), MOBILE, False),  # nobody with this national code
    ],
)
def test_file_registry_mobile_ownership(registry_file, national_code, mobile, owned):
    assert FileRegistry(registry_file).mobile_belongs_to(national_code, mobile) is owned


def test_file_registry_finds_the_person_with_matching_birthdate(registry_file):
    person = FileRegistry(registry_file).find_person(NATIONAL_CODE, BIRTHDATE)
    assert person == Person(national_code=NATIONAL_CODE, birthdate=BIRTHDATE, given_name="سارا", family_name="محمدی")


@pytest.mark.parametrize(
    ("national_code", "birthdate"),
    [
        (NATIONAL_CODE, BIRTHDATE + dt.timedelta(days=1)),
        (NATIONAL_CODE, dt.date(1996, 6, 1)),
        (valid_national_code("111222333"), BIRTHDATE),
    ],
)
def test_file_registry_without_matching_person(registry_file, national_code, birthdate):
    assert FileRegistry(registry_file).find_person(national_code, birthdate) is None


def test_file_registry_rereads_the_file_when_it_changes(registry_file):
    registry = FileRegistry(registry_file)
    assert registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    assert registry.find_person(NATIONAL_CODE, BIRTHDATE).given_name == "سارا"

    write_people(registry_file, [person_entry(mobiles=[OTHER_MOBILE], given_name="سارا‌سادات")])
    stat = registry_file.stat()
    os.utime(registry_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))  # even on coarse clocks

    assert not registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    assert registry.mobile_belongs_to(NATIONAL_CODE, OTHER_MOBILE)
    assert registry.find_person(NATIONAL_CODE, BIRTHDATE).given_name == "سارا‌سادات"


@pytest.mark.parametrize("method", ["mobile_belongs_to", "find_person"])
def test_file_registry_missing_file_is_unavailable(tmp_path, method):
    registry = FileRegistry(tmp_path / "missing.json")
    args = (NATIONAL_CODE, MOBILE) if method == "mobile_belongs_to" else (NATIONAL_CODE, BIRTHDATE)
    with pytest.raises(RegistryUnavailable):
        getattr(registry, method)(*args)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b'[{"national_code": "0012345679"',
        b"[1, 2]",
        b'{"national_code": "0012345679"}',
        b'[{"birthdate": "1990-03-21"}]',
        b"\xff\xfe[not utf-8",
    ],
    ids=["empty", "text", "truncated", "numbers", "object", "no-national-code", "not-utf8"],
)
def test_file_registry_invalid_file_is_unavailable(tmp_path, content):
    path = tmp_path / "registry.json"
    path.write_bytes(content)
    registry = FileRegistry(path)
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    with pytest.raises(RegistryUnavailable):
        registry.find_person(NATIONAL_CODE, BIRTHDATE)


def test_file_registry_recovers_when_the_file_is_fixed(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text("[{broken", encoding="utf-8")
    registry = FileRegistry(path)
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    write_people(path, [person_entry()])
    assert registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)


# -- the HTTP registry ----------------------------------------------------------------------------------


def test_http_registry_ownership_request(fake_server):
    server = fake_server(lambda request: json_response({"owned": True}))
    registry = HttpRegistry(server.url + "/api/v1/", "registry-key-123", timeout=2, retries=0)

    assert registry.mobile_belongs_to(NATIONAL_CODE, MOBILE) is True

    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.path == "/api/v1/mobile-ownership"
    assert seen.args == {"national_code": NATIONAL_CODE, "mobile": MOBILE}
    assert seen.headers["Authorization"] == "Bearer registry-key-123"


def test_http_registry_person_request(fake_server):
    server = fake_server(lambda request: json_response({"given_name": "سارا", "family_name": "محمدی"}))
    registry = HttpRegistry(server.url + "/api/v1", "registry-key-123", timeout=2, retries=0)

    person = registry.find_person(NATIONAL_CODE, BIRTHDATE)

    assert person == Person(national_code=NATIONAL_CODE, birthdate=BIRTHDATE, given_name="سارا", family_name="محمدی")
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.path == f"/api/v1/people/{NATIONAL_CODE}"
    assert seen.args == {"birthdate": "1995-06-01"}
    assert seen.headers["Authorization"] == "Bearer registry-key-123"


@pytest.mark.parametrize("owned", [True, False])
def test_http_registry_ownership_answer(fake_server, owned):
    service = FakeRegistryService([person_entry(mobiles=[MOBILE])], api_key="k")
    server = fake_server(service)
    registry = HttpRegistry(server.url, "k", timeout=2, retries=0)
    assert registry.mobile_belongs_to(NATIONAL_CODE, MOBILE if owned else OTHER_MOBILE) is owned


def test_http_registry_unknown_person_is_none(fake_server):
    server = fake_server(lambda request: json_response({"error": "not found"}, 404))
    registry = HttpRegistry(server.url, "k", timeout=2, retries=2)
    assert registry.find_person(NATIONAL_CODE, BIRTHDATE) is None
    assert len(server.seen) == 1  # a 404 is an answer, not a failure to retry


def failing_then(failures: int, then: Response, status: int = 500) -> Callable[[Request], Response]:
    count = {"n": 0}
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        with lock:
            count["n"] += 1
            n = count["n"]
        return json_response({"error": "busy"}, status) if n <= failures else then

    return handler


@pytest.mark.parametrize("status", [500, 503])
def test_http_registry_retries_server_errors_then_succeeds(fake_server, status):
    server = fake_server(failing_then(2, json_response({"owned": True}), status))
    registry = HttpRegistry(server.url, "k", timeout=2, retries=2)
    assert registry.mobile_belongs_to(NATIONAL_CODE, MOBILE) is True
    assert len(server.seen) == 3


@pytest.mark.parametrize("retries", [0, 2])
def test_http_registry_gives_up_after_retries(fake_server, retries):
    server = fake_server(failing_then(100, json_response({"owned": True})))
    registry = HttpRegistry(server.url, "k", timeout=2, retries=retries)
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    assert len(server.seen) == retries + 1
    with pytest.raises(RegistryUnavailable):
        registry.find_person(NATIONAL_CODE, BIRTHDATE)
    assert len(server.seen) == 2 * (retries + 1)


@pytest.mark.slow
def test_http_registry_timeout_is_unavailable(fake_server):
    def slow(request: Request) -> Response:
        time.sleep(1.6)
        return json_response({"owned": True})

    server = fake_server(slow)
    registry = HttpRegistry(server.url, "k", timeout=1, retries=0)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    assert time.monotonic() - started < 1.5


def test_http_registry_connection_refused_is_unavailable():
    registry = HttpRegistry(f"http://127.0.0.1:{unused_port()}", "k", timeout=1, retries=1)
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)
    with pytest.raises(RegistryUnavailable):
        registry.find_person(NATIONAL_CODE, BIRTHDATE)


def text_response(body: str, status: int = 200, mimetype: str = "text/html") -> Response:
    return Response(body, status=status, mimetype=mimetype)


@pytest.mark.parametrize(
    "answer",
    [
        text_response("<html>maintenance</html>"),
        text_response("", mimetype="application/json"),
        text_response('{"owned": tr', mimetype="application/json"),
        json_response([True]),
        json_response("owned"),
        json_response({}),
        json_response({"owned": "yes"}),
        json_response({"owned": 1}),
        json_response({"owned": None}),
        json_response({"error": "forbidden"}, 403),
        json_response({"error": "unauthorized"}, 401),
        json_response({"owned": True}, 404),
    ],
    ids=[
        "html",
        "empty",
        "truncated",
        "list",
        "string",
        "no-owned",
        "owned-string",
        "owned-int",
        "owned-null",
        "403",
        "401",
        "404",
    ],
)
def test_http_registry_malformed_ownership_answer_is_unavailable(fake_server, answer):
    server = fake_server(lambda request: answer)
    registry = HttpRegistry(server.url, "k", timeout=2, retries=0)
    with pytest.raises(RegistryUnavailable):
        registry.mobile_belongs_to(NATIONAL_CODE, MOBILE)


@pytest.mark.parametrize(
    "answer",
    [
        text_response("<html>maintenance</html>"),
        text_response("not json", mimetype="application/json"),
        json_response(["سارا", "محمدی"]),
        json_response({}),
        json_response({"given_name": "سارا"}),
        json_response({"given_name": "", "family_name": "محمدی"}),
        json_response({"given_name": 7, "family_name": "محمدی"}),
        json_response({"error": "forbidden"}, 403),
    ],
    ids=["html", "not-json", "list", "empty", "no-family-name", "empty-name", "number", "403"],
)
def test_http_registry_malformed_person_answer_is_unavailable(fake_server, answer):
    server = fake_server(lambda request: answer)
    registry = HttpRegistry(server.url, "k", timeout=2, retries=0)
    with pytest.raises(RegistryUnavailable):
        registry.find_person(NATIONAL_CODE, BIRTHDATE)


# -- the registration page on the HTTP registry ------------------------------------------------------------


def register_through_pages(app, client, mobile: str, jalali: tuple[str, str, str], password: str):
    """Step 1 and step 2 of the wizard; returns the final response (not followed)."""
    page = client.get("/register")
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    step1 = client.post("/register", data={**form.fields, "mobile": mobile})
    assert step1.status_code in (302, 303), step1.get_data(as_text=True)[:2000]
    page = client.get(step1.location)
    form = find_form(page.get_data(as_text=True), field_name="birth_year")
    year, month, day = jalali
    data = {
        **form.fields,
        "national_code": NATIONAL_CODE,
        "birth_year": year,
        "birth_month": month,
        "birth_day": day,
        "password": password,
        "password_confirm": password,
        "code": last_sms_code(app, mobile, "register"),
    }
    return client.post(form.action, data=data)


def test_registration_page_on_http_registry(app_with, fake_server):
    service = FakeRegistryService(
        [person_entry(given_name="پریسا", family_name="کاظمی", mobiles=[MOBILE])], api_key="reg-key"
    )
    server = fake_server(service)
    app = app_with(registry={"backend": "http", "url": server.url, "api_key": "reg-key", "retries": 0})
    client = app.test_client()

    done = register_through_pages(app, client, MOBILE, ("1374", "3", "11"), "a long passphrase 42")

    assert done.status_code in (302, 303), done.get_data(as_text=True)[:3000]
    with app.app_context():
        user = find_user_by_national_code(NATIONAL_CODE)
        assert user is not None
        assert (user.given_name, user.family_name, user.birthdate, user.mobile) == ("پریسا", "کاظمی", BIRTHDATE, MOBILE)
    paths = {seen.path for seen in server.seen}
    assert paths == {"/mobile-ownership", f"/people/{NATIONAL_CODE}"}
    assert all(seen.headers.get("Authorization") == "Bearer reg-key" for seen in server.seen)


def test_registration_page_when_http_registry_is_down(app_with, fake_server):
    server = fake_server(lambda request: json_response({"error": "down"}, 503))
    app = app_with(registry={"backend": "http", "url": server.url, "api_key": "reg-key", "retries": 1})
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"

    page = register_through_pages(app, client, MOBILE, ("1374", "3", "11"), "a long passphrase 42")

    assert page.status_code == 200
    assert "try again" in page.get_data(as_text=True).lower()
    assert len(server.seen) == 2  # one retry
    with app.app_context():
        assert find_user_by_national_code(NATIONAL_CODE) is None


def test_registration_page_when_http_registry_does_not_answer(app_with):
    app = app_with(registry={"backend": "http", "url": f"http://127.0.0.1:{unused_port()}", "retries": 0})
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"

    page = register_through_pages(app, client, MOBILE, ("1374", "3", "11"), "a long passphrase 42")

    assert page.status_code == 200
    assert "try again" in page.get_data(as_text=True).lower()
    with app.app_context():
        assert find_user_by_national_code(NATIONAL_CODE) is None


# -- the demo registry ------------------------------------------------------------------------------------


def test_demo_registry_national_codes_pass_the_check_digit(app):
    path = registry_path(app)
    assert path.exists(), "the app writes a demo registry at start when none is configured"
    people = json.loads(path.read_text(encoding="utf-8"))
    assert len(people) >= 2
    for person in people:
        code = person["national_code"]
        assert normalize_national_code(code) == code
        assert national_code_check_digit(code[:9]) == int(code[9]), code
        assert dt.date.fromisoformat(person["birthdate"]) < dt.date.today()
        assert person["given_name"] and person["family_name"]
        assert person["mobiles"] and all(m.startswith("+989") and len(m) == 13 for m in person["mobiles"])


def test_demo_registry_is_read_by_the_app(app):
    """Every demo person is known to the app's own registry with their mobiles and birth date."""
    people = json.loads(registry_path(app).read_text(encoding="utf-8"))
    registry = app.extensions["idp"].registry
    for person in people:
        born = dt.date.fromisoformat(person["birthdate"])
        assert registry.find_person(person["national_code"], born).family_name == person["family_name"]
        for mobile in person["mobiles"]:
            assert registry.mobile_belongs_to(person["national_code"], mobile)
