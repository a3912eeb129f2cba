"""The key-value store behind codes, sessions and replay checks: the same contract on both backends."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from idp.store.kv import MemoryStore, RedisStore, StoreUnavailable, store_from_config

REDIS_URL = os.environ.get("HOVIYAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://127.0.0.1:1/0"


def _redis_down() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis not reachable at {REDIS_URL}: {error.__class__.__name__}"
    return None


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    reason = _redis_down()
    if reason:
        pytest.skip(reason)
    redis_store = RedisStore(REDIS_URL, f"idp-kv-test-{secrets.token_hex(6)}:")
    try:
        yield redis_store
    finally:
        redis_store.delete_prefix()


VALUE = {"user": "u1", "scopes": ["openid", "profile"], "n": 3, "name": "علی", "nested": {"ok": True, "x": None}}


def test_put_and_get(store):
    assert store.get("missing") is None
    store.put("k", VALUE, ttl=60)
    assert store.get("k") == VALUE
    assert store.get("k") == VALUE  # get does not consume
    store.put("k", {"v": 2}, ttl=60)
    assert store.get("k") == {"v": 2}
    assert store.get("K") is None  # keys are exact
    assert store.ping() is True


def test_records_expire(store):
    store.put("short", {"v": 1}, ttl=1)
    assert store.add("short-add", {"v": 2}, ttl=1) is True
    store.put("long", {"v": 3}, ttl=60)
    time.sleep(1.1)
    assert store.get("short") is None
    assert store.consume("short-add") is None
    assert store.get("long") == {"v": 3}
    # An expired key is absent: add may store it again.
    assert store.add("short", {"v": 4}, ttl=60) is True
    assert store.get("short") == {"v": 4}


def test_add_only_when_absent(store):
    assert store.add("jti", {"first": True}, ttl=60) is True
    assert store.add("jti", {"first": False}, ttl=60) is False
    assert store.get("jti") == {"first": True}
    store.delete("jti")
    assert store.add("jti", {"again": True}, ttl=60) is True
    assert store.get("jti") == {"again": True}


def test_consume_returns_once(store):
    store.put("code", VALUE, ttl=60)
    assert store.consume("code") == VALUE
    assert store.consume("code") is None
    assert store.get("code") is None
    assert store.consume("never-there") is None


def race(count: int, action: Any) -> list[Any]:
    """Run ``action`` in ``count`` threads released at the same moment; returns their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            value = action()
        except BaseException as error:  # reported below, not swallowed
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    assert len(results) == count
    return results


def test_concurrent_consume_gives_the_value_to_exactly_one(store):
    for round_number in range(10):
        key = f"race-{round_number}"
        store.put(key, {"round": round_number}, ttl=60)
        results = race(8, lambda key=key: store.consume(key))
        winners = [r for r in results if r is not None]
        assert winners == [{"round": round_number}], results
        assert store.get(key) is None


def test_concurrent_add_lets_exactly_one_in(store):
    outcomes = race(8, lambda: store.add("once", {"v": 1}, ttl=60))
    assert sorted(outcomes) == [False] * 7 + [True]
    assert store.get("once") == {"v": 1}


def test_delete(store):
    store.put("a", {"v": 1}, ttl=60)
    store.put("b", {"v": 2}, ttl=60)
    store.delete("a")
    assert store.get("a") is None
    assert store.get("b") == {"v": 2}
    store.delete("a")  # absent: no error
    store.delete("never-there")


def test_redis_prefixes_keep_stores_apart():
    reason = _redis_down()
    if reason:
        pytest.skip(reason)
    first = RedisStore(REDIS_URL, f"idp-kv-test-{secrets.token_hex(6)}:")
    second = RedisStore(REDIS_URL, f"idp-kv-test-{secrets.token_hex(6)}:")
    try:
        first.put("k", {"who": "first"}, ttl=60)
        second.put("k", {"who": "second"}, ttl=60)
        assert first.get("k") == {"who": "first"}
        assert second.consume("k") == {"who": "second"}
        assert first.get("k") == {"who": "first"}
        second.put("other", {"v": 1}, ttl=60)
        assert first.delete_prefix() == 1
        assert first.get("k") is None
        assert second.get("other") == {"v": 1}
    finally:
        first.delete_prefix()
        second.delete_prefix()


def test_redis_unreachable_raises_store_unavailable():
    store = RedisStore(UNREACHABLE, "idp-kv-test:")
    assert store.ping() is False
    calls = [
        lambda: store.put("k", {"v": 1}, ttl=60),
        lambda: store.add("k", {"v": 1}, ttl=60),
        lambda: store.get("k"),
        lambda: store.consume("k"),
        lambda: store.delete("k"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert "127.0.0.1:1" in str(raised.value)


def test_store_from_config():
    assert isinstance(store_from_config("", "p:"), MemoryStore)
    assert store_from_config("", "p:").shared_between_processes is False
    chosen = store_from_config(UNREACHABLE, "p:")
    assert isinstance(chosen, RedisStore)
    assert chosen.shared_between_processes is True


def test_incr_counts_atomically_and_expires(store):
    assert store.incr("counter", ttl=1) == 1
    assert store.incr("counter", ttl=1) == 2
    time.sleep(1.1)
    assert store.incr("counter", ttl=5) == 1  # the first increment after expiry starts again


def test_incr_under_threads_gives_each_caller_its_own_number(store):
    results: list[int] = []
    lock = threading.Lock()

    def bump() -> None:
        value = store.incr("race-counter", ttl=30)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=bump) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 17))


# -- what someone who reads the store learns -------------------------------------------------------------------


def _everything_in(app: Any) -> str:
    """Every key and value the app's store holds, as one text (the rate-limit counters included)."""
    provider = app.extensions["idp"]
    store = provider.store
    if isinstance(store, RedisStore):
        client = redis.Redis.from_url(store.url)
        texts = []
        for pattern in (f"{store.prefix}*", f"LIMITS:*{store.prefix}*"):
            for key in client.scan_iter(match=pattern, count=500):
                value = client.get(key) if client.type(key) == b"string" else str(client.dump(key))
                texts.append(f"{key!r} {value!r}")
        return "\n".join(texts)
    return "\n".join(f"{key} {payload}" for key, (_expiry, payload) in store._records.items())


def test_reading_the_store_gives_away_no_credential(app: Any, user: Any, rp_client: Any) -> None:
    """An attacker who reads Redis (a leaked dump, a replica) finds no session cookie, authorization code, token,
    password or one-time code in it: each is kept under or as a hash, or not at all."""
    from .helpers import Browser, exchange_code, get_code, last_sms_code

    browser = Browser(app.test_client(), app.extensions["idp"].issuer)
    code, verifier, _ = get_code(browser, rp_client, user)
    held_code = _everything_in(app)  # the code lives in the store until it is exchanged
    tokens = exchange_code(browser.client, rp_client, code, verifier).get_json()
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code})
    assert page.status_code == 200
    sms_code = last_sms_code(app, user.mobile, "login")
    cookie = browser.client.get_cookie(app.extensions["idp"].config.session.cookie_name).value
    contents = _everything_in(app) + held_code
    secrets_held = {
        "session cookie": cookie,
        "authorization code": code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "ID token": tokens["id_token"],
        "password": user.password,
        "SMS code": sms_code,
        "client secret": rp_client.client_secret,
    }
    # Bounded by what cannot continue a value, so six digits are not "found" inside a hash or a timestamp.
    found = [
        name
        for name, secret in secrets_held.items()
        if secret and re.search(rf"(?<![A-Za-z0-9_-]){re.escape(secret)}(?![A-Za-z0-9_-])", contents)
    ]
    assert found == []
    assert contents  # the store was read: sessions, codes and counters are there
