"""One-time codes (idp/otp.py): length, storage as an HMAC only, expiry, binding to purpose and number,
the try limit, single use under racing requests, the resend interval and the hourly caps."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from idp import clock
from idp.otp import CodeNotSent, check_code, consume_code, issue_code
from idp.store.kv import MemoryStore

from .helpers import find_form, sms_outbox
from .test_registry import clear_rate_limit_counters

MOBILE = "+989121234567"
OTHER_MOBILE = "+989351112233"
IP = "203.0.113.7"


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request: pytest.FixtureRequest) -> Iterator[None]:
    clear_rate_limit_counters(request)
    yield
    clear_rate_limit_counters(request)


@pytest.fixture
def ctx(app) -> Iterator[None]:
    with app.app_context():
        yield


def store_records(app) -> dict[str, str]:
    """Every record in the app's key-value store (key -> raw payload), whichever backend it is."""
    store = app.extensions["idp"].store
    if isinstance(store, MemoryStore):
        with store._lock:
            return {key: payload for key, (_, payload) in store._records.items()}
    client = store._redis
    records = {}
    for key in client.scan_iter(match=f"*{store.prefix}*", count=500):
        if client.type(key) == b"string":
            records[key.decode()] = (client.get(key) or b"").decode()
    return records


def issue(purpose: str = "register", target: str = MOBILE, ip: str | None = IP, verified: bool = True) -> str:
    """A code as the owner asks for one (a solved CAPTCHA, or logged in); ``verified=False``: as anyone else."""
    code, sent = issue_code(purpose, target, ip, verified=verified)
    assert sent.target == target
    return code


# -- the code -------------------------------------------------------------------------------------------


def test_code_has_six_digits_by_default(app, ctx):
    codes = [issue("register", f"+98912000{n:04d}") for n in range(15)]
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes), codes
    assert len(set(codes)) > 1  # random, not a constant


def test_code_length_follows_config(app_with):
    app = app_with(otp={"length": 8})
    with app.app_context():
        code = issue()
        assert re.fullmatch(r"[0-9]{8}", code), code
        assert check_code("register", MOBILE, code)


def test_code_sent_through_the_page_has_configured_length(client, app):
    page = client.get("/register")
    form = find_form(page.get_data(as_text=True), field_name="mobile")
    client.post("/register", data={**form.fields, "mobile": "09121234567"})
    [message] = sms_outbox(app)
    assert re.fullmatch(r"[0-9]{6}", message["code"])
    assert message["code"] in message["text"]


def test_code_is_stored_only_as_an_hmac(app, ctx):
    codes = {purpose: issue(purpose) for purpose in ("register", "login", "reset")}
    records = store_records(app)
    assert records, "the codes are kept in the key-value store"
    for code in codes.values():
        for key, payload in records.items():
            assert code not in key
            assert f'"{code}"' not in payload, (key, payload)
            if ":otp" in key or key.startswith("otp"):
                assert code not in payload, (key, payload)
    # And what is kept is a keyed hash: it differs from a plain SHA-256 of the code.
    import hashlib

    plain = {hashlib.sha256(code.encode()).hexdigest() for code in codes.values()}
    assert not any(digest in payload for digest in plain for payload in records.values())


def test_code_expires(app, ctx):
    code = issue()
    clock.advance(119)
    assert check_code("register", MOBILE, code)
    clock.advance(2)
    assert not check_code("register", MOBILE, code)
    assert not consume_code("register", MOBILE, code)


@pytest.mark.parametrize(
    ("purpose", "target"),
    [
        ("login", MOBILE),
        ("reset", MOBILE),
        ("step_up", MOBILE),
        ("register", OTHER_MOBILE),
        ("register", "09121234567"),
    ],
)
def test_code_is_bound_to_purpose_and_target(app, ctx, purpose, target):
    code = issue("register", MOBILE)
    assert not check_code(purpose, target, code)
    assert not consume_code(purpose, target, code)
    assert consume_code("register", MOBILE, code)  # still good where it belongs


def test_check_does_not_use_up_the_code_but_consume_does(app, ctx):
    code = issue()
    assert check_code("register", MOBILE, code)
    assert check_code("register", MOBILE, code)
    assert consume_code("register", MOBILE, code)
    assert not check_code("register", MOBILE, code)
    assert not consume_code("register", MOBILE, code)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_right_code_on_the_last_allowed_try(app, ctx):
    code = issue()
    for _ in range(4):
        assert not check_code("register", MOBILE, wrong(code))
    assert consume_code("register", MOBILE, code)


def test_code_is_gone_after_max_tries(app, ctx):
    code = issue()
    for _ in range(5):
        assert not check_code("register", MOBILE, wrong(code))
    assert not check_code("register", MOBILE, code)
    assert not consume_code("register", MOBILE, code)


def test_max_tries_follows_config(app_with):
    app = app_with(otp={"max_tries": 2})
    with app.app_context():
        code = issue()
        assert not check_code("register", MOBILE, wrong(code))
        assert not check_code("register", MOBILE, wrong(code))
        assert not consume_code("register", MOBILE, code)


def test_parallel_wrong_guesses_get_no_more_than_max_tries(app):
    with app.app_context():
        code = issue()
    guesses = [f"{n:06d}" for n in range(40) if f"{n:06d}" != code]
    barrier = threading.Barrier(8)

    def guess(batch: list[str]) -> None:
        with app.app_context():
            barrier.wait()
            for value in batch:
                check_code("register", MOBILE, value)

    threads = [threading.Thread(target=guess, args=(guesses[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        assert not check_code("register", MOBILE, code)


def test_consume_succeeds_once_under_racing_threads(app):
    with app.app_context():
        code = issue()
    barrier = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            with app.app_context():
                barrier.wait()
                results.append(consume_code("register", MOBILE, code))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.slow
def test_new_code_replaces_the_old_one_with_fresh_tries(app_with):
    app = app_with(otp={"resend_interval": 1})
    with app.app_context():
        old = issue()
        for _ in range(4):
            check_code("register", MOBILE, wrong(old))
        time.sleep(1.1)
        new = issue()
        assert not check_code("register", MOBILE, old) or old == new
        for _ in range(3):
            check_code("register", MOBILE, wrong(new))
        assert consume_code("register", MOBILE, new)


# -- sending limits -------------------------------------------------------------------------------------


def test_resend_too_soon(app, ctx):
    first = issue()
    clock.advance(20)
    with pytest.raises(CodeNotSent) as raised:
        issue()
    assert raised.value.reason == "too_soon"
    assert 1 <= raised.value.retry_after <= 60
    assert check_code("register", MOBILE, first)  # the first code still works


def test_resend_interval_is_per_purpose_and_number(app, ctx):
    issue("register", MOBILE)
    issue("login", MOBILE)
    issue("register", OTHER_MOBILE)


@pytest.mark.slow
def test_resend_allowed_after_the_interval(app_with):
    app = app_with(otp={"resend_interval": 1})
    with app.app_context():
        issue()
        with pytest.raises(CodeNotSent):
            issue()
        time.sleep(1.1)
        assert check_code("register", MOBILE, issue())


def test_hourly_cap_per_mobile(app_with):
    app = app_with(otp={"per_mobile": "2 per hour"})
    with app.app_context():
        issue("register", MOBILE, "198.51.100.1")
        issue("login", MOBILE, "198.51.100.2")
        with pytest.raises(CodeNotSent) as raised:
            issue("reset", MOBILE, "198.51.100.3")
        assert raised.value.reason == "hourly_limit"
        issue("reset", OTHER_MOBILE, "198.51.100.3")  # another number is not held back


def test_strangers_and_the_owner_have_separate_hourly_budgets(app_with):
    app = app_with(otp={"per_mobile": "2 per hour", "per_mobile_anonymous": "1 per hour"})
    with app.app_context():
        issue("login", MOBILE, "198.51.100.1", verified=False)
        with pytest.raises(CodeNotSent) as raised:
            issue("reset", MOBILE, "198.51.100.2", verified=False)
        assert (raised.value.reason, raised.value.anonymous) == ("hourly_limit", True)
        issue("reset", MOBILE, "198.51.100.3")  # the owner's budget is whole
        issue("register", MOBILE, "198.51.100.4")
        with pytest.raises(CodeNotSent) as raised:
            issue("step_up", MOBILE, "198.51.100.5")
        assert (raised.value.reason, raised.value.anonymous) == ("hourly_limit", False)


def test_hourly_cap_per_ip(app_with):
    app = app_with(otp={"per_ip": "3 per hour"})
    with app.app_context():
        for n in range(3):
            issue("register", f"+98912555000{n}", IP)
        with pytest.raises(CodeNotSent) as raised:
            issue("register", "+989125550009", IP)
        assert raised.value.reason == "hourly_limit"
        # Another address is not held back, even for the number refused a moment ago: no code was sent to
        # it, so no resend interval runs.
        issue("register", "+989125550009", "198.51.100.9")


def test_hourly_cap_per_ip_on_the_registration_page(app_with):
    app = app_with(otp={"per_ip": "2 per hour"})
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": "198.51.100.77", "HTTP_ACCEPT_LANGUAGE": "en"})

    def start(mobile: str):
        page = client.get("/register")
        form = find_form(page.get_data(as_text=True), field_name="mobile")
        return client.post("/register", data={**form.fields, "mobile": mobile})

    assert start("09125550001").status_code == 303
    assert start("09125550002").status_code == 303
    refused = start("09125550003")
    assert refused.status_code == 200
    assert "Too many codes" in refused.get_data(as_text=True)
    assert [m["to"] for m in sms_outbox(app)] == ["+989125550001", "+989125550002"]

    client.environ_base["REMOTE_ADDR"] = "198.51.100.78"
    assert start("09125550004").status_code == 303
