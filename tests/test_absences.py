"""Remembered reads (idp.store.absences): a worker may answer from what it read from the database before (an
access token not revoked, its grant active) instead of reading again, but must never say "active" after any
worker revoked it. Each RedisStore here stands for one worker: its own memory and its own subscription, the same
Redis and prefix."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import redis

from idp.store.kv import MemoryStore, RedisStore

from .helpers import deafen_announcements, seen_within
from .test_kv_store import REDIS_URL, _redis_down

KEY = "revoked-access-token:abc"


@pytest.fixture
def workers() -> Iterator[tuple[RedisStore, RedisStore]]:
    reason = _redis_down()
    if reason:
        pytest.skip(reason)
    prefix = f"idp-absence-test-{secrets.token_hex(6)}:"
    first, second = RedisStore(REDIS_URL, prefix), RedisStore(REDIS_URL, prefix)
    try:
        yield first, second
    finally:
        first.absences.close()
        second.absences.close()
        first.delete_prefix()


def remember(store: RedisStore, key: str, value: object = False, remember_for: float = 60) -> bool:
    """Look ``key`` up as a worker does before reading the database, then remember ``value`` read for it; True when
    it was remembered (recalled at once)."""
    recalled, ticket = store.remembered(key)
    assert recalled is None, "already remembered"
    if ticket is not None:
        store.remember(key, value, ticket, remember_for)
    return store.remembered(key)[0] == value


def test_a_value_is_remembered_and_an_announcement_elsewhere_is_seen_at_once(workers):
    first, second = workers
    assert remember(first, KEY, False)
    assert first.remembered(KEY)[0] is False  # "not revoked", from memory (False, not None: nothing remembered)
    second.announce([KEY])
    assert seen_within(lambda: first.remembered(KEY)[0] is None)
    assert second.remembered(KEY)[0] is None


def test_a_value_is_remembered_only_for_its_time(workers):
    first, _ = workers
    assert remember(first, KEY, False, remember_for=0.3)
    assert first.remembered(KEY)[0] is False
    time.sleep(0.35)
    assert first.remembered(KEY)[0] is None


def test_an_announcement_read_between_a_lookup_and_its_remembering_cancels_it(workers):
    """The race the epoch guards: this worker looks the key up and reads the database, another worker revokes and
    announces before this one remembers what it read. Remembering it then would say "not revoked" until it
    expires."""
    first, second = workers
    assert first.remembered("warm-up")[1] is not None  # subscribed
    _, ticket = first.remembered(KEY)
    second.announce([KEY])  # the revocation commits after this worker's read
    time.sleep(0.05)  # the announcement is in this worker's socket before it remembers
    first.remember(KEY, False, ticket, remember_for=60)
    assert first.remembered(KEY)[0] is None


def test_a_lost_subscription_forgets_everything_and_remembers_again_once_back(workers):
    """Redis dropped this worker's subscription (a restart, a fail-over): an announcement made meanwhile is lost,
    so nothing remembered from before may be trusted."""
    first, second = workers
    assert remember(first, KEY, False)
    admin = redis.Redis.from_url(REDIS_URL)
    killed = admin.client_kill_filter(_type="pubsub", skipme=True)
    assert killed >= 1
    second.announce([KEY])  # announced while nobody listened: it never reaches the first worker
    time.sleep(0.05)
    assert first.remembered(KEY) == (None, None)  # forgotten, and nothing may be remembered until subscribed again
    # It subscribes again, with nothing remembered from before, and remembers from then on.
    time.sleep(1.1)  # RESUBSCRIBE_AFTER
    assert first.remembered(KEY)[0] is None
    assert remember(first, "revoked-access-token:other", False)


def test_without_redis_nothing_is_remembered_and_the_store_failure_shows():
    from idp.store.kv import StoreUnavailable

    store = RedisStore("redis://127.0.0.1:1/0", "idp-absence-test-down:")
    assert store.remembered("grant:g1") == (None, None)  # nothing may be remembered: every lookup reads
    with pytest.raises(StoreUnavailable):
        store.announce(["grant:g1"])


def test_the_in_process_store_has_nothing_to_remember():
    store = MemoryStore()
    # A value read from the database: the admin commands change it from another process, which could not announce.
    store.remember("grant:g1", "active", ticket=0, remember_for=60)
    assert store.remembered("grant:g1") == (None, None)


def test_a_remembered_value_is_forgotten_at_its_announcement_elsewhere(workers):
    first, second = workers
    value, ticket = first.remembered("grant:g1")
    assert value is None and ticket is not None
    first.remember("grant:g1", "active", ticket, remember_for=60)
    first.remember("grant:g2", "active", first.remembered("grant:g2")[1], remember_for=60)
    assert first.remembered("grant:g1")[0] == "active"
    second.announce(["grant:g1"])
    assert seen_within(lambda: first.remembered("grant:g1")[0] is None)
    assert first.remembered("grant:g2")[0] == "active"  # only the key announced


def test_the_worker_that_announces_forgets_at_once_without_its_subscription(workers):
    """A relying party revokes at a worker and introspects again at the same one: the worker must not answer from
    what it remembered before its own announcement has come back (the CI flake of test_inactive_tokens)."""
    first, _ = workers
    first.remember("grant:g1", "active", first.remembered("grant:g1")[1], remember_for=60)
    first.remember("grant:g2", "active", first.remembered("grant:g2")[1], remember_for=60)
    deafen_announcements(first)
    first.announce(["grant:g1"])
    assert first.remembered("grant:g1")[0] is None  # forgotten without hearing its own announcement
    assert first.remembered("grant:g2")[0] == "active"  # only the key announced


def test_a_lookup_in_flight_during_a_write_here_is_not_remembered(workers):
    """Another thread of the same worker read the database before this one revoked and announced: it must not
    remember what it read, even though the worker never hears its own announcement."""
    first, _ = workers
    deafen_announcements(first)
    _, ticket = first.remembered("grant:g1")
    first.announce(["grant:g1"])  # the revocation commits between the other thread's read and its remembering
    first.remember("grant:g1", "active", ticket, remember_for=60)
    assert first.remembered("grant:g1")[0] is None


def test_a_failed_announcement_still_forgets_here(workers):
    """Redis refused the announcement (the write was committed to the database all the same): the other workers
    forget within the memory's time limit, this one at once."""
    from idp.store.kv import StoreUnavailable

    first, _ = workers
    first.remember("grant:g1", "active", first.remembered("grant:g1")[1], remember_for=60)
    call = first._call

    def refusing(method, *args, **kwargs):
        if method == "eval":
            raise StoreUnavailable("Redis is unavailable")
        return call(method, *args, **kwargs)

    first._call = refusing  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        first.announce(["grant:g1"])
    first._call = call  # type: ignore[method-assign]
    assert first.remembered("grant:g1")[0] is None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # two workers share Redis, not process memory
def test_a_revoked_access_token_is_refused_at_once_by_a_worker_that_had_accepted_it(backend, tmp_path):
    """End to end over two apps sharing the store (two workers): introspection at the second says active (and
    remembers it), the first revokes, the second says inactive within moments."""
    from .conftest import make_app
    from .helpers import create_test_client

    first_app = make_app(backend, tmp_path / "one")
    issuer = first_app.extensions["idp"].config.server
    second_app = make_app(backend, tmp_path / "two", server={"issuer": issuer.issuer, "port": issuer.port})
    machine = create_test_client(
        first_app, grant_types=["client_credentials"], redirect_uris=[], scope="openid api:read"
    )
    auth = (machine.client_id, machine.client_secret)
    one, two = first_app.test_client(), second_app.test_client()
    token = one.post("/token", data={"grant_type": "client_credentials"}, auth=auth).get_json()["access_token"]
    for _ in range(2):
        assert two.post("/token/introspect", data={"token": token}, auth=auth).get_json()["active"] is True
    assert one.post("/token/revoke", data={"token": token}, auth=auth).status_code == 200
    # Within moments, far inside the 5 s a worker may remember "not revoked": the announcement did it.
    assert seen_within(
        lambda: two.post("/token/introspect", data={"token": token}, auth=auth).get_json() == {"active": False}
    )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # two workers share Redis, not process memory
def test_a_revoked_grant_is_refused_at_once_by_a_worker_that_remembered_it_active(backend, tmp_path):
    """Two apps sharing the database and the store (two workers): the second introspects a user's access token
    (and remembers its grant active), the first revokes the grant (the relying party revokes its refresh token),
    the second says inactive within moments."""
    from .conftest import make_app
    from .helpers import Browser, create_test_client, create_test_user, exchange_code, get_code

    first_app = make_app(backend, tmp_path / "one")
    server = first_app.extensions["idp"].config.server
    second_app = make_app(backend, tmp_path / "two", server={"issuer": server.issuer, "port": server.port})
    portal = create_test_client(first_app)
    person = create_test_user(first_app)
    auth = (portal.client_id, portal.client_secret)
    one, two = first_app.test_client(), second_app.test_client()
    code, verifier, _ = get_code(Browser(one, server.issuer), portal, person)
    tokens = exchange_code(one, portal, code, verifier).get_json()
    access = tokens["access_token"]
    for _ in range(2):
        assert two.post("/token/introspect", data={"token": access}, auth=auth).get_json()["active"] is True
    assert one.post("/token/revoke", data={"token": tokens["refresh_token"]}, auth=auth).status_code == 200
    assert seen_within(
        lambda: two.post("/token/introspect", data={"token": access}, auth=auth).get_json() == {"active": False}
    )
