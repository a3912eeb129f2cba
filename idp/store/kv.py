"""The key-value store for short-lived records: authorization codes, login transactions, browser sessions,
used assertion ids and rate-limit counters.

Every record has a time to live. Two backends share one small interface: Redis, for any number of processes
and instances, and an in-process store for a single process (the embedded default, refused by ``idp serve``
with several workers). Values are JSON objects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from typing import Any, Protocol

import redis

from .absences import AbsenceMemory


class StoreUnavailable(RuntimeError):
    """The key-value store cannot be reached."""


class KeyValueStore(Protocol):
    #: Flask-Limiter storage URI (and options) for the same store, so rate-limit counters live beside the records.
    limiter_uri: str
    limiter_options: dict[str, Any]
    #: True when every worker process sees the same records.
    shared_between_processes: bool

    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any earlier value."""

    def add(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        """Store ``value`` only if ``key`` holds nothing; True when it was stored."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The value under ``key``, or None when absent or expired."""

    def consume(self, key: str) -> dict[str, Any] | None:
        """Atomically read and delete: of two callers, at most one gets the value (single-use records)."""

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        """Atomically add ``amount`` to a counter and return the new value; the first increment starts its ``ttl``."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def announce(self, keys: Collection[str]) -> None:
        """Make every process forget what it remembers for ``keys`` (see remembered), without writing them."""

    def remembered(self, key: str) -> tuple[Any, int | None]:
        """(what this process remembers for ``key``, or None; a ticket for remember(), or None: nothing may be
        remembered now). Only a store shared between processes over Redis remembers anything."""

    def remember(self, key: str, value: Any, ticket: int, remember_for: float) -> None:
        """Remember ``value`` for ``key`` in this process for up to ``remember_for`` seconds, but never past an
        announce() of the key by any process made after remembered() gave ``ticket``."""

    def ping(self) -> bool:
        """True when the store answers."""


class MemoryStore:
    """In-process store for one process; thread-safe. Records vanish when the process ends."""

    limiter_uri = "memory://"
    limiter_options: dict[str, Any] = {}  # noqa: RUF012 (read only)
    shared_between_processes = False

    def __init__(self) -> None:
        self._records: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def _live(self, key: str, now: float) -> str | None:
        record = self._records.get(key)
        if record is None:
            return None
        expires_at, payload = record
        if expires_at <= now:
            del self._records[key]
            return None
        return payload

    def _sweep(self, now: float) -> None:
        # Drop expired records now and then so a long-running process does not grow without bound.
        self._writes += 1
        if self._writes % 1000 == 0:
            for key in [k for k, (exp, _) in self._records.items() if exp <= now]:
                del self._records[key]

    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            self._records[key] = (now + ttl, json.dumps(value))

    def add(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._live(key, now) is not None:
                return False
            self._sweep(now)
            self._records[key] = (now + ttl, json.dumps(value))
            return True

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            payload = self._live(key, time.monotonic())
        return None if payload is None else json.loads(payload)

    def consume(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            payload = self._live(key, time.monotonic())
            if payload is not None:
                del self._records[key]
        return None if payload is None else json.loads(payload)

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        now = time.monotonic()
        with self._lock:
            payload = self._live(key, now)
            if payload is None:
                self._sweep(now)
                self._records[key] = (now + ttl, str(amount))
                return amount
            expires_at = self._records[key][0]
            value = int(payload) + amount
            self._records[key] = (expires_at, str(value))
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    # The database a value would be remembered from is changed by other processes too (the admin commands), which
    # could not announce to this one: nothing is remembered.
    def announce(self, keys: Collection[str]) -> None:
        return None

    def remembered(self, key: str) -> tuple[Any, int | None]:
        return None, None

    def remember(self, key: str, value: Any, ticket: int, remember_for: float) -> None:
        return None

    def ping(self) -> bool:
        return True


#: INCRBY and, on the first increment, EXPIRE, in one step (Lua runs atomically on a plain server, a Sentinel-watched
#: master and a Cluster alike, where MULTI/EXEC pipelines are not available).
_INCR_WITH_TTL = """
local value = redis.call('INCRBY', KEYS[1], ARGV[2])
if value == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return value
"""

#: PUBLISH of each key on the announcement channel (ARGV[1]), in one round trip.
_ANNOUNCE = """
for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end
return #ARGV - 1
"""
#: The channel (after the key prefix) on which keys are announced to every worker's AbsenceMemory.
ANNOUNCEMENTS = "announced-writes"


class RedisStore:
    """Redis-backed store; every key is prefixed so several deployments or test runs can share a server.

    Works with a plain server, a master watched by Sentinels and a Cluster (see :mod:`.redis_url`). Each
    operation is one round trip. A failure raises :class:`StoreUnavailable`; redis-py reconnects by itself, so
    service resumes as soon as Redis is back.
    """

    shared_between_processes = True

    def __init__(self, url: str, prefix: str) -> None:
        from .redis_url import parse_redis_url

        self.url = url
        self.target = parse_redis_url(url)
        self.prefix = prefix
        self.limiter_uri = self.target.limiter_uri
        self.limiter_options = self.target.limiter_options
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.announcements = prefix + ANNOUNCEMENTS
        # Not in a Cluster: there an announcement reaches a worker subscribed on another node through the cluster
        # bus, possibly after the writer already has its answer, so every lookup asks.
        self.absences = AbsenceMemory(self._subscribe_to_announcements) if self.target.kind != "cluster" else None

    @property
    def _redis(self) -> Any:
        # Made on first use: a Cluster client connects when it is built, and a Redis that is down must not stop
        # the provider from starting (it answers 503 and /readyz says why until Redis is back).
        if self._client is None:
            from .redis_url import connect

            with self._client_lock:
                if self._client is None:
                    self._client = connect(self.target)
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis at {self.target.where} failed: {error.__class__.__name__}") from error

    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        self._call("set", self.prefix + key, json.dumps(value, separators=(",", ":")), ex=ttl)

    def add(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        return bool(self._call("set", self.prefix + key, json.dumps(value, separators=(",", ":")), ex=ttl, nx=True))

    def get(self, key: str) -> dict[str, Any] | None:
        payload = self._call("get", self.prefix + key)
        return None if payload is None else json.loads(payload)

    def consume(self, key: str) -> dict[str, Any] | None:
        payload = self._call("getdel", self.prefix + key)
        return None if payload is None else json.loads(payload)

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        return int(self._call("eval", _INCR_WITH_TTL, 1, self.prefix + key, ttl, amount))

    def delete(self, key: str) -> None:
        self._call("delete", self.prefix + key)

    def announce(self, keys: Collection[str]) -> None:
        if keys:
            full_keys = [self.prefix + key for key in keys]
            try:
                self._call("eval", _ANNOUNCE, 0, self.announcements, *full_keys)
            finally:
                self._forget_here(full_keys)

    def remembered(self, key: str) -> tuple[Any, int | None]:
        if self.absences is None:
            return None, None
        return self.absences.recall_value(self.prefix + key)

    def remember(self, key: str, value: Any, ticket: int, remember_for: float) -> None:
        if self.absences is not None:
            self.absences.remember(self.prefix + key, ticket, remember_for, value)

    def _forget_here(self, full_keys: list[str]) -> None:
        # Whether or not Redis took the announcement (AbsenceMemory.forget says why at once).
        if self.absences is not None:
            self.absences.forget(full_keys)

    def _subscribe_to_announcements(self) -> Any:
        pubsub = self._redis.pubsub()
        try:
            pubsub.subscribe(self.announcements)
            # Only once Redis confirms is every later announcement delivered to us.
            deadline = time.monotonic() + 2
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=left)
                if message is not None and message.get("type") == "subscribe":
                    return pubsub
            raise redis.TimeoutError("Redis did not confirm the subscription")
        except BaseException:
            pubsub.close()
            raise

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except (redis.RedisError, OSError):
            return False

    def delete_prefix(self) -> int:
        """Remove every key under this store's prefix (used by tests to clean up after a run)."""
        deleted = 0
        for key in self._redis.scan_iter(match=self.prefix + "*", count=500):
            deleted += self._redis.delete(key)
        return deleted


def store_from_config(url: str, prefix: str) -> KeyValueStore:
    """Redis when ``redis.url`` is set, the in-process store otherwise."""
    if url:
        return RedisStore(url, prefix)
    return MemoryStore()
