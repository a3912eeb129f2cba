"""A new signing key is published before it signs (keys.publish_before_use), so a relying party that caches the
JWKS for the max-age the provider sends, and never refetches early, verifies every token through a rotation.

The load tests run two real `idp serve --workers 2` instances (reload_interval=1, jwks_max_age=2,
publish_before_use=3) with threads asking both for tokens while `idp keys rotate` runs; the strictest relying
party verifies each token with its cached JWKS. `rotate --now` shows what the waiting period prevents. The CLI
tests below check the states of a waiting ("next") key, in-process on both backends.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp import clock
from idp.config import ConfigError, load_config

from .helpers import (
    Browser,
    ClientInfo,
    authorization_params,
    create_test_client,
    create_test_user,
    exchange_code,
    get_code,
    pkce_pair,
    query_of,
)
from .instances_support import Deployment, HttpBrowser, Instance, deployment

RELOAD_INTERVAL, JWKS_MAX_AGE = 1, 2
# The least the configuration accepts would be RELOAD_INTERVAL + JWKS_MAX_AGE = 3. With 3 this test fails in about
# two runs of five: the provider dates a new key's first use from the whole second in which `rotate` began, before
# the key is generated and committed, so the waiting time actually left can be ~1.5 s short under load (see
# test_a_next_key_waits_the_whole_publish_before_use below). Two seconds of margin until that is fixed.
PROVIDER_ROUNDING_MARGIN = 2
PUBLISH_BEFORE_USE = RELOAD_INTERVAL + JWKS_MAX_AGE + PROVIDER_ROUNDING_MARGIN
PAUSE = 0.05  # between one thread's token requests: load, but leaving the CPU for `idp keys rotate` to start
ALGS = ["RS256", "ES256"]


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# -- the strictest relying party ------------------------------------------------------------------------------


class CachingVerifier:
    """Fetches the JWKS (from the instances in turn), keeps it for the Cache-Control max-age counted from the
    moment it asked, and refetches only when that copy is stale: an unknown kid is a failure, not a reason to
    refetch."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.lock = threading.Lock()
        self.kids: set[str] = set()
        self.key_set: KeySet | None = None
        self.asked_at = -1e18
        self.max_age = 0
        self.fetches: list[tuple[float, str, set[str]]] = []

    def refetch(self) -> None:
        with self.lock:
            self._fetch()

    def _fetch(self) -> None:
        url = self.urls[len(self.fetches) % len(self.urls)]
        asked_at, wall = time.monotonic(), time.time()
        response = requests.get(url + "/jwks.json", timeout=10)
        response.raise_for_status()
        self.max_age = int(re.search(r"max-age=(\d+)", response.headers["Cache-Control"]).group(1))
        document = response.json()
        self.kids = {key["kid"] for key in document["keys"]}
        self.key_set = KeySet.import_key_set(document)
        self.asked_at = asked_at
        self.fetches.append((wall, url, set(self.kids)))

    def verify(self, token: str) -> str | None:
        """None when the token verifies, else why not."""
        kid = header_of(token)["kid"]
        with self.lock:
            if time.monotonic() - self.asked_at >= self.max_age:
                self._fetch()
            kids, key_set = self.kids, self.key_set
        if kid not in kids:
            return f"unknown kid {kid}"
        try:
            jwt.decode(token, key_set, algorithms=ALGS)
        except (JoseError, ValueError) as error:
            return f"{kid}: {error.__class__.__name__}"
        return None


@dataclass
class Seen:
    asked: float  # wall time the token request was sent
    received: float
    alg: str
    kid: str
    failure: str | None


@dataclass
class Load:
    """Threads asking both instances for tokens, and a watcher reading both JWKS without any cache."""

    instances: list[Instance]
    verifier: CachingVerifier
    cc_client: ClientInfo
    refresh_client: ClientInfo
    refresh_tokens: list[str]
    seen: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_published: dict[tuple[str, str], float] = field(default_factory=dict)  # (instance url, kid) -> time
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def _check(self, asked: float, token: str) -> None:
        failure = self.verifier.verify(token)
        header = header_of(token)
        with self.lock:
            self.seen.append(Seen(asked, time.time(), header["alg"], header["kid"], failure))

    def _client_credentials(self, number: int) -> None:
        session = requests.Session()
        turn = number
        while not self.stop.is_set():
            instance = self.instances[turn % len(self.instances)]
            turn += 1
            asked = time.time()
            response = session.post(
                instance.url + "/token",
                data={"grant_type": "client_credentials"},
                auth=(self.cc_client.client_id, self.cc_client.client_secret),
                timeout=10,
            )
            if response.status_code != 200:
                self.errors.append(f"client_credentials on {instance.url}: {response.status_code} {response.text}")
                continue
            self._check(asked, response.json()["access_token"])
            self.stop.wait(PAUSE)

    def _refresh(self, number: int) -> None:
        session = requests.Session()
        turn = number
        while not self.stop.is_set():
            instance = self.instances[turn % len(self.instances)]
            turn += 1
            asked = time.time()
            response = session.post(
                instance.url + "/token",
                data={"grant_type": "refresh_token", "refresh_token": self.refresh_tokens[number]},
                auth=(self.refresh_client.client_id, self.refresh_client.client_secret),
                timeout=10,
            )
            if response.status_code != 200:
                self.errors.append(f"refresh on {instance.url}: {response.status_code} {response.text}")
                return
            tokens = response.json()
            self.refresh_tokens[number] = tokens["refresh_token"]
            self._check(asked, tokens["id_token"])
            self._check(asked, tokens["access_token"])
            self.stop.wait(PAUSE)

    def _watch(self, _number: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            for instance in self.instances:
                kids = {key["kid"] for key in session.get(instance.url + "/jwks.json", timeout=10).json()["keys"]}
                now = time.time()
                for kid in kids:
                    self.first_published.setdefault((instance.url, kid), now)
            time.sleep(0.05)

    def start(self) -> None:
        self.verifier.refetch()
        targets = [(self._client_credentials, n) for n in range(3)]
        targets += [(self._refresh, n) for n in range(len(self.refresh_tokens))]
        targets.append((self._watch, 0))
        for target, number in targets:
            thread = threading.Thread(target=self._guard, args=(target, number), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _guard(self, target: Any, number: int) -> None:
        try:
            target(number)
        except Exception as error:  # reported by the test, not lost in a thread
            self.errors.append(f"{target.__name__}: {error!r}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def kids_before(self) -> dict[str, str]:
        return {s.alg: s.kid for s in self.seen}


@dataclass
class Servers:
    setup: Deployment
    instances: list[Instance]
    cc_client: ClientInfo
    refresh_client: ClientInfo
    user: Any

    def refresh_tokens(self, count: int) -> list[str]:
        """Refresh tokens of ``count`` fresh grants, each got by a login on the instances in turn."""
        tokens = []
        for number in range(count):
            instance = self.instances[number % len(self.instances)]
            browser = HttpBrowser()
            verifier, challenge = pkce_pair()
            page = browser.get(instance.url + "/authorize", **authorization_params(self.refresh_client, challenge))
            page = browser.submit(
                page, {"national_code": self.user.national_code, "password": self.user.password}, field_name="password"
            )
            if page.status_code == 200 and 'name="decision"' in page.text:
                page = browser.submit(page, {"decision": "allow"}, action_contains="/consent")
            assert page.status_code == 302, page.text[:500]
            code = query_of(page.headers["Location"])["code"]
            response = requests.post(
                instance.url + "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.refresh_client.redirect_uri,
                    "code_verifier": verifier,
                },
                auth=(self.refresh_client.client_id, self.refresh_client.client_secret),
                timeout=10,
            )
            assert response.status_code == 200, response.text
            tokens.append(response.json()["refresh_token"])
        return tokens

    def load(self) -> Load:
        urls = [instance.url for instance in self.instances]
        return Load(self.instances, CachingVerifier(urls), self.cc_client, self.refresh_client, self.refresh_tokens(2))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    keys = {"reload_interval": RELOAD_INTERVAL, "jwks_max_age": JWKS_MAX_AGE, "publish_before_use": PUBLISH_BEFORE_USE}
    with deployment(tmp_path_factory.mktemp("key-publication"), keys=keys) as setup:
        user = create_test_user(setup.app)
        cc_client = create_test_client(setup.app, grant_types=["client_credentials"], redirect_uris=[], scope="openid")
        refresh_client = create_test_client(setup.app)
        instances = setup.start_all(2, workers=2)
        yield Servers(setup, instances, cc_client, refresh_client, user)


def signs_from(row: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(row["signs_from"]).timestamp()


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_rotation_under_load_never_fails_a_caching_relying_party(servers: Servers):
    load = servers.load()
    load.start()
    try:
        time.sleep(0.6)
        old = load.kids_before()
        assert set(old) == set(ALGS), old
        rotation_started = time.time()
        rows = json.loads(servers.setup.idp("keys", "rotate", "--json").stdout)
        rotation_done = time.time()
        new = {row["alg"]: row["kid"] for row in rows}
        assert all(row["status"] == "next" for row in rows), rows
        switch = {row["alg"]: signs_from(row) for row in rows}
        for alg in ALGS:
            # Whole seconds: the provider's clock has no fractions, and it rounds the switch up (never early).
            assert rotation_started + PUBLISH_BEFORE_USE - 1 <= switch[alg] <= rotation_done + PUBLISH_BEFORE_USE + 1
        wait_until(max(switch.values()) + 1.2)
    finally:
        load.finish()

    assert not load.errors, load.errors[:5]
    failures = [s for s in load.seen if s.failure]
    assert not failures, [(s.alg, s.failure, round(s.received - rotation_started, 2)) for s in failures[:10]]
    for alg in ALGS:
        with_old = [s for s in load.seen if s.alg == alg and s.kid == old[alg]]
        with_new = [s for s in load.seen if s.alg == alg and s.kid == new[alg]]
        assert len(with_old) >= 5 and len(with_new) >= 5, (alg, len(with_old), len(with_new))
        assert {s.kid for s in load.seen if s.alg == alg} == {old[alg], new[alg]}
        first_use = min(s.received for s in with_new)
        # The new kid was in both instances' JWKS before any token carried it ...
        for instance in servers.instances:
            published = load.first_published.get((instance.url, new[alg]))
            assert published is not None and published < first_use, (alg, instance.url)
            assert published <= rotation_done + RELOAD_INTERVAL + 0.5
        # ... and the caching relying party had it too: it fetched a JWKS with the new kid before the first use.
        assert any(kids >= {new[alg]} for at, _, kids in load.verifier.fetches if at < first_use)
        # No token carries it before its time; every token asked for after that time does.
        assert all(s.received >= switch[alg] for s in with_new)
        assert all(s.kid == new[alg] for s in load.seen if s.alg == alg and s.asked >= switch[alg])
        assert all(s.kid == old[alg] for s in load.seen if s.alg == alg and s.received < switch[alg])


def test_rotation_now_breaks_a_caching_relying_party(servers: Servers):
    """The contrast: with `--now` the new key signs at once, and the same relying party meets unknown kids until
    its copy of the JWKS expires. The rotation runs in-process right after the relying party's fetch, so its copy
    is fresh for the whole time the instances take to re-read the keys."""
    runner = servers.setup.app.test_cli_runner()
    load = servers.load()
    load.start()
    try:
        time.sleep(0.6)
        old = load.kids_before()
        load.verifier.refetch()
        result = runner.invoke(args=["keys", "rotate", "--now", "--json"])
        rotated = time.time()
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        new = {row["alg"]: row["kid"] for row in rows}
        assert all(row["status"] == "active" for row in rows), rows
        time.sleep(JWKS_MAX_AGE + RELOAD_INTERVAL + 0.8)
    finally:
        load.finish()

    assert not load.errors, load.errors[:5]
    failures = [s for s in load.seen if s.failure]
    assert failures, "a relying party that does not refetch on an unknown kid must fail here"
    assert {s.failure for s in failures} <= {f"unknown kid {kid}" for kid in new.values()}
    assert all(s.received >= rotated - 0.5 for s in failures)
    # Once its copy expired, the relying party fetched the new keys and verifies everything again.
    late = [s for s in load.seen if s.asked > rotated + JWKS_MAX_AGE + RELOAD_INTERVAL]
    assert late and not [s for s in late if s.failure]
    assert {s.kid for s in late} == {new[alg] for alg in ALGS}
    assert not set(old.values()) & set(new.values())


# -- the CLI and the provider, in-process ---------------------------------------------------------------------


def keys_cli(runner: Any, *args: str) -> Any:
    result = runner.invoke(args=["keys", *args])
    assert result.exit_code == 0, result.output
    return result


def rows_by_kid(runner: Any) -> dict[str, dict[str, Any]]:
    return {row["kid"]: row for row in json.loads(keys_cli(runner, "list", "--json").stdout)}


def kids_with(runner: Any, status: str) -> dict[str, str]:
    return {row["alg"]: kid for kid, row in rows_by_kid(runner).items() if row["status"] == status}


def jwks_kids(client: Any) -> list[str]:
    return [key["kid"] for key in client.get("/jwks.json").get_json()["keys"]]


def id_token_kid(app: Any, rp: ClientInfo, user: Any) -> str:
    client = app.test_client()
    code, verifier, _ = get_code(Browser(client, app.extensions["idp"].issuer), rp, user)
    response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return header_of(response.get_json()["id_token"])["kid"]


@pytest.fixture
def waiting_app(app_with: Any) -> Any:
    """An app whose rotations wait 900 s (the default) before the new key signs."""
    return app_with(keys={"publish_before_use": 900, "reload_interval": 30, "jwks_max_age": 300})


def test_rotate_says_when_the_new_key_signs_and_list_shows_it_next(waiting_app):
    runner = waiting_app.test_cli_runner()
    active = kids_with(runner, "active")
    before = clock.timestamp()
    result = keys_cli(runner, "rotate", "--alg", "RS256")
    kid = kids_with(runner, "next")["RS256"]
    row = rows_by_kid(runner)[kid]
    assert before + 900 <= signs_from(row) <= clock.timestamp() + 901  # rounded up to a whole second
    assert kid in result.output and "signs from" in result.output and row["signs_from"] in result.output
    listing = keys_cli(runner, "list").output
    line = next(line for line in listing.splitlines() if kid in line)
    assert "next" in line and f"signs from {row['signs_from']}" in line
    old_line = next(line for line in listing.splitlines() if active["RS256"] in line)
    assert "active" in old_line and "signs from" not in old_line
    assert kids_with(runner, "active") == active  # the old keys still sign
    assert rows_by_kid(runner)[active["ES256"]]["signs_from"] is not None


def test_a_next_key_is_published_at_once_but_does_not_sign_yet(waiting_app):
    runner = waiting_app.test_cli_runner()
    user, rp = create_test_user(waiting_app), create_test_client(waiting_app)
    active = kids_with(runner, "active")
    keys_cli(runner, "rotate")
    waiting = kids_with(runner, "next")
    client = waiting_app.test_client()
    assert set(waiting.values()) | set(active.values()) == set(jwks_kids(client))
    assert id_token_kid(waiting_app, rp, user) == active["RS256"]

    clock.advance(901)  # the waiting time is over: the new key signs, without a restart or a re-read
    assert id_token_kid(waiting_app, rp, user) == waiting["RS256"]
    statuses = {kid: row["status"] for kid, row in rows_by_kid(runner).items()}  # `list` settles the switch
    assert [statuses[kid] for kid in waiting.values()] == ["active"] * len(waiting)
    assert [statuses[kid] for kid in active.values()] == ["published"] * len(active)
    assert set(jwks_kids(client)) == set(waiting.values()) | set(active.values())  # old tokens still verify
    # The previous key, no longer signing, may now be retired.
    keys_cli(runner, "retire", "--", active["RS256"])
    assert active["RS256"] not in jwks_kids(client)


def test_rotating_again_before_the_switch_withdraws_the_waiting_key(waiting_app):
    runner = waiting_app.test_cli_runner()
    active = kids_with(runner, "active")
    keys_cli(runner, "rotate", "--alg", "ES256")
    first = kids_with(runner, "next")["ES256"]
    keys_cli(runner, "rotate", "--alg", "ES256")
    second = kids_with(runner, "next")["ES256"]
    assert second != first
    rows = rows_by_kid(runner)
    assert rows[first]["status"] == "retired"
    assert not (Path(waiting_app.extensions["idp"].config.keys.dir) / f"{first}.pem").exists()
    kids = jwks_kids(waiting_app.test_client())
    assert first not in kids and second in kids and active["ES256"] in kids
    assert kids_with(runner, "active") == active


def test_retire_refuses_a_next_key(waiting_app):
    runner = waiting_app.test_cli_runner()
    keys_cli(runner, "rotate", "--alg", "RS256")
    kid = kids_with(runner, "next")["RS256"]
    result = runner.invoke(args=["keys", "retire", "--", kid])
    assert result.exit_code != 0
    assert "next" in result.output
    assert rows_by_kid(runner)[kid]["status"] == "next"
    assert kid in jwks_kids(waiting_app.test_client())
    active = kids_with(runner, "active")["RS256"]
    assert runner.invoke(args=["keys", "retire", "--", active]).exit_code != 0  # nor the key that signs now


def test_rotate_now_signs_at_once(waiting_app):
    runner = waiting_app.test_cli_runner()
    user, rp = create_test_user(waiting_app), create_test_client(waiting_app)
    old = kids_with(runner, "active")
    result = keys_cli(runner, "rotate", "--now", "--alg", "RS256")
    new = kids_with(runner, "active")["RS256"]
    assert new != old["RS256"] and new in result.output
    assert not kids_with(runner, "next")
    assert rows_by_kid(runner)[old["RS256"]]["status"] == "published"
    assert id_token_kid(waiting_app, rp, user) == new


@pytest.mark.parametrize("max_age", [2, 300, 0])
def test_jwks_cache_control_max_age_is_the_configured_one(app_with, max_age):
    app = app_with(keys={"jwks_max_age": max_age})
    response = app.test_client().get("/jwks.json")
    assert response.status_code == 200
    assert re.fullmatch(rf"public, max-age={max_age}", response.headers["Cache-Control"])


@pytest.mark.parametrize(
    ("keys", "ok"),
    [
        ({"reload_interval": 30, "jwks_max_age": 300, "publish_before_use": 329}, False),
        ({"reload_interval": 30, "jwks_max_age": 300, "publish_before_use": 1}, False),
        ({"reload_interval": 30, "jwks_max_age": 300, "publish_before_use": 330}, True),
        ({"reload_interval": 30, "jwks_max_age": 300, "publish_before_use": 0}, True),
        ({"reload_interval": 1, "jwks_max_age": 2, "publish_before_use": 2}, False),
        ({"reload_interval": 1, "jwks_max_age": 2, "publish_before_use": 3}, True),
        ({}, True),  # the defaults: 900 >= 30 + 300
    ],
)
def test_config_requires_publication_to_outlast_reload_and_cache(keys, ok, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if ok:
        load_config(environ={}, overrides={"keys": keys})
        return
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"keys": keys})
    message = str(raised.value)
    assert "keys.publish_before_use" in message
    assert str(keys["reload_interval"] + keys["jwks_max_age"]) in message


def test_config_from_environment_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {"IDP_KEYS_RELOAD_INTERVAL": "10", "IDP_KEYS_JWKS_MAX_AGE": "60", "IDP_KEYS_PUBLISH_BEFORE_USE": "65"}
    with pytest.raises(ConfigError, match=r"keys\.publish_before_use"):
        load_config(environ=environ)
    config = load_config(environ={**environ, "IDP_KEYS_PUBLISH_BEFORE_USE": "70"})
    assert (config.keys.publish_before_use, config.keys.jwks_max_age) == (70, 60)


# -- regressions found by these tests ---------------------------------------------------------------------------


def test_a_next_key_waits_the_whole_publish_before_use(waiting_app, monkeypatch):
    import idp.clock

    class LateInTheSecond:
        @staticmethod
        def time() -> float:
            return 1_900_000_000.95  # just before a second ticks

    monkeypatch.setattr(idp.clock, "time", LateInTheSecond)
    runner = waiting_app.test_cli_runner()
    keys_cli(runner, "rotate", "--alg", "ES256")
    row = rows_by_kid(runner)[kids_with(runner, "next")["ES256"]]
    assert signs_from(row) >= 1_900_000_000.95 + 900


def test_the_first_key_of_each_type_in_the_jwks_is_the_one_that_signs(waiting_app):
    runner = waiting_app.test_cli_runner()
    keys_cli(runner, "rotate")
    active = kids_with(runner, "active")
    document = waiting_app.test_client().get("/jwks.json").get_json()
    first = {}
    for key in document["keys"]:
        first.setdefault(key["alg"], key["kid"])
    assert first == active
