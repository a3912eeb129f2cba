"""Every rate limit of the provider, counted with the ``limits`` package beside the key-value store's records.

A limit is a rate such as "30 per minute" (``limits``' notation) and the key it is counted for: a client
address, a national code, a mobile number. The counters live where the store's records do: in the same Redis
(a plain server, a Sentinel-watched master or a Cluster), shared by every worker and instance, or in this
process's memory with the in-process store. Each key carries the deployment's key prefix, so deployments (and
test runs) that share a Redis never share counters.

Addresses are counted by :func:`client_address`: an IPv4 address as it is, an IPv6 address by its /64 network,
since one subscriber line or host is routinely given a whole /64 and could otherwise pose as millions of
addresses.

Views take limits with the :func:`limited` decorator, or :func:`charge_all` for limits keyed by what the request
names (a national code, a number); other code asks :meth:`RateLimits.hit` (count one) or
:meth:`RateLimits.hit_all` (count one against several limits, only when all of them still allow it).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

from flask import current_app, request
from limits import RateLimitItem, parse, storage, strategies
from werkzeug.exceptions import TooManyRequests

from .config import Config
from .store.kv import KeyValueStore

#: A limit of more than this many per window is reserved in parts of one in LEASE_SHARE (RateLimits).
LEASE_SHARE = 1000
#: Seconds a reservation may be used before its rest is dropped.
LEASE_SECONDS = 1.0
#: Keys with a live reservation kept per process (the memory is emptied when full).
LEASES_KEPT = 4096

#: What a view's limit may be: a rate, or a function of the configuration giving one (read per request, so a
#: test's configuration applies).
Rate = str | Callable[[Config], str]


class RateLimited(TooManyRequests):
    """A 429: the limit named by ``rate`` is used up; ``retry_after`` is the length of its window in seconds."""

    def __init__(self, rate: str) -> None:
        item = parsed(rate)
        super().__init__(description=str(item))
        self.retry_after = item.get_expiry()


@lru_cache(maxsize=128)
def parsed(rate: str) -> RateLimitItem:
    return parse(rate)


@dataclass
class _Lease:
    rate: str
    until: float
    left: int


class RateLimits:
    """The counters of one app, over its key-value store's backend (fixed windows: a window opens at a key's first
    hit and counts until it ends, with one atomic increment per hit).

    A limit raised high (a relying party's servers behind one address, say 100,000 token requests a minute) would
    cost a store round trip on every request it counts, as much as the rest of a client-credentials grant. So above
    :data:`LEASE_SHARE` per window this process reserves a part of the limit at once (a thousandth) with one
    increment and admits that many without asking again. Nothing is admitted that was not reserved first, so all
    processes together never admit more than the limit; a reservation left unused after :data:`LEASE_SECONDS` is
    dropped (a process may refuse a little early while others hold theirs)."""

    def __init__(self, store: KeyValueStore, key_prefix: str) -> None:
        self._storage = storage.storage_from_string(store.limiter_uri, **store.limiter_options)
        self._counter = strategies.FixedWindowRateLimiter(self._storage)
        self._prefix = key_prefix
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._leases_lock = threading.Lock()

    def hit(self, rate: str, scope: str, key: str) -> bool:
        """Count one against ``rate`` for ``key`` in ``scope``; False when it is used up."""
        item = parsed(rate)
        chunk = item.amount // LEASE_SHARE
        if chunk <= 1:
            return self._counter.hit(item, self._prefix + scope, key)
        slot, now = (scope, key), time.monotonic()
        with self._leases_lock:
            lease = self._leases.get(slot)
            if lease is not None and lease.rate == rate and lease.until > now and lease.left > 0:
                lease.left -= 1
                return True
        # The storage's own increment, by the chunk: what the limiter's hit(cost=chunk) does, and how much fitted.
        total = self._storage.incr(item.key_for(self._prefix + scope, key), item.get_expiry(), amount=chunk)
        granted = min(chunk, item.amount - (total - chunk))
        if granted <= 0:
            return False
        with self._leases_lock:
            if len(self._leases) >= LEASES_KEPT:
                self._leases.clear()
            self._leases[slot] = _Lease(rate, now + min(LEASE_SECONDS, item.get_expiry()), granted - 1)
        return True

    def allows(self, rate: str, scope: str, key: str) -> bool:
        """Whether one more would be within ``rate``, counting nothing."""
        return self._counter.test(parsed(rate), self._prefix + scope, key)

    def hit_all(self, checks: Iterable[tuple[str, str, str]]) -> bool:
        """Count one against each ``(rate, scope, key)``, only if every one of them still allows it: a refused
        request costs no budget. Two requests racing for the last unit may both pass the test; each hit is still
        atomic, so at most one of them over a limit is counted and refused by the next test."""
        checks = list(checks)
        if not all(self.allows(rate, scope, key) for rate, scope, key in checks):
            return False
        return all(self.hit(rate, scope, key) for rate, scope, key in checks)

    def reset(self) -> None:
        """Forget every counter of this storage (the in-process one only; tests use it between phases)."""
        self._storage.reset()


def rate_limits() -> RateLimits:
    return current_app.extensions["idp"].rate_limits


def client_address(address: str | None = None) -> str:
    """The key an address is counted under: an IPv4 address itself, an IPv6 address its /64 network
    (``2001:db8:1:2::/64``); ``-`` when there is none. Without ``address``, this request's client address (as
    the trusted-proxy layer set it)."""
    raw = address if address is not None else request.remote_addr
    if not raw:
        return "-"
    try:
        parsed_address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(parsed_address, ipaddress.IPv6Address):
        if parsed_address.ipv4_mapped is not None:
            return str(parsed_address.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed_address, 64), strict=False))
    return str(parsed_address)


def charge_address(rate: str, scope: str) -> None:
    """Count this request against ``rate`` for its client address; raise :class:`RateLimited` when used up."""
    if not rate_limits().hit(rate, scope, client_address()):
        raise RateLimited(rate)  # counted in the metrics by the 429's error handler


def charge_all(checks: Iterable[tuple[str, str, str]]) -> None:
    """Count this request against every ``(rate, scope, key)``, only if all of them still allow it; raise
    :class:`RateLimited` naming the first one used up."""
    checks = list(checks)
    counters = rate_limits()
    if counters.hit_all(checks):
        return
    used_up = next((rate for rate, scope, key in checks if not counters.allows(rate, scope, key)), checks[0][0])
    raise RateLimited(used_up)


def limited(rate: Rate, scope: str, methods: Iterable[str] = ("POST",)) -> Callable[[Any], Any]:
    """A view whose requests of ``methods`` count against ``rate`` per client address (429 when used up)."""
    counted = frozenset(methods)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def limited_view(*args: Any, **kwargs: Any) -> Any:
            if request.method in counted:
                value = rate(current_app.extensions["idp"].config) if callable(rate) else rate
                charge_address(value, scope)
            return view(*args, **kwargs)

        return limited_view

    return decorate
