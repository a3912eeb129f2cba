"""A worker's memory of what it read from the database, forgotten as soon as any process announces its key.

Introspection asks, of every access token, whether it was revoked and whether its grant is still active: two
facts in the database (idp.store.access_tokens) that nearly never change, and a read on every call, a third of an
introspection's cost under load. A worker may remember what it read under a key of the store; a revocation
announces that key on one Redis channel once its transaction commits (idp.store.announcements), and every worker
stays subscribed to that channel: before it trusts anything it remembers, a worker reads the announcements waiting
on its subscription (a non-blocking read, no round trip). Redis writes the announcement to every subscriber in the
same pass of its event loop as the revoker's answer, so by the time a relying party has heard of the revocation
and asked again, it is in each other worker's socket; a lookup made within microseconds of the revocation (a few
milliseconds when Redis is starved of CPU, as under the test suite) can still miss it, as it could have raced
the revocation itself. The revoking worker does not wait for its own copy: it forgets the key as it announces it
(Redis may write the revoker's answer before the subscribers' copies, and this worker can serve the relying
party's next request in between).

Not used with a Redis Cluster (every lookup reads): a PUBLISH reaches the subscribers of other nodes through the
cluster bus, possibly after the writer has its answer. With a plain server or a Sentinel-watched master,
subscribers and writer are on the same server.

Nothing is remembered unless the subscription is up and was up before the key was looked up: a broken
subscription (Redis restarted, a fail-over) forgets everything, and so does a new one (announcements made in
between were lost). An announcement read between a lookup and its remembering cancels the remembering. Each
value is also remembered for a bounded time only, the caller's ``remember_for``: the limit of being wrong when a
subscription dies without its socket noticing (a network partition with no reset).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)

#: How long a worker waits before subscribing again after it could not.
RESUBSCRIBE_AFTER = 1.0
#: Values one worker remembers at most (the oldest are forgotten first); ~150 bytes each.
CAPACITY = 10_000


class AbsenceMemory:
    """Per process; thread-safe. ``subscribe()`` gives a redis-py PubSub already subscribed to the channel."""

    def __init__(self, subscribe: Callable[[], Any], capacity: int = CAPACITY) -> None:
        self._subscribe = subscribe
        self._capacity = capacity
        self._lock = threading.Lock()
        self._pubsub: Any = None
        # key -> (monotonic time it stops being trusted, the value remembered)
        self._remembered: dict[str, tuple[float, Any]] = {}
        self._epoch = 0  # moves with every announcement read and every new subscription
        self._retry_at = 0.0

    def recall_value(self, key: str) -> tuple[Any, int | None]:
        """(the value remembered for ``key`` or None, epoch to pass to :meth:`remember` after a lookup, or None: do
        not remember)."""
        with self._lock:
            if not self._catch_up():
                return None, None
            remembered = self._remembered.get(key)
            if remembered is not None:
                if remembered[0] > time.monotonic():
                    return remembered[1], self._epoch
                del self._remembered[key]
            return None, self._epoch

    def remember(self, key: str, epoch: int, remember_for: float, value: Any) -> None:
        """Remember ``value`` for ``key``, unless an announcement (of any key) was read since ``epoch``."""
        with self._lock:
            if not self._catch_up() or self._epoch != epoch:
                return
            if len(self._remembered) >= self._capacity:
                del self._remembered[next(iter(self._remembered))]
            self._remembered[key] = (time.monotonic() + remember_for, value)

    def forget(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` now: this process wrote or announced them. Its own announcement reaches its subscription
        only after Redis has answered the write (under load, after this process has already answered the request
        that made it), and a request served by this process next must not find the key remembered in between."""
        with self._lock:
            for key in keys:
                self._remembered.pop(key, None)
            self._epoch += 1  # a lookup in flight in another thread read before the write: do not remember it

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _catch_up(self) -> bool:
        """Under the lock: read the announcements waiting. False when nothing remembered may be trusted now."""
        if self._pubsub is None and not self._resubscribe():
            return False
        try:
            while (message := self._pubsub.get_message(timeout=0.0)) is not None:
                if message.get("type") == "message":
                    key = message["data"]
                    self._remembered.pop(key.decode() if isinstance(key, bytes) else key, None)
                    self._epoch += 1
        except (redis.RedisError, OSError) as error:
            log.warning("lost the announcement channel (%s); asking Redis every time until it is back", error)
            self._drop()
            return False
        return True

    def _resubscribe(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + RESUBSCRIBE_AFTER
        try:
            self._pubsub = self._subscribe()
        except (redis.RedisError, OSError):
            return False
        # Whatever was announced while there was no subscription is lost: start from nothing.
        self._remembered.clear()
        self._epoch += 1
        return True

    def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._remembered.clear()
        self._epoch += 1
        if pubsub is not None:
            try:
                pubsub.close()
            except (redis.RedisError, OSError):
                log.debug("closing the announcement channel failed", exc_info=True)
