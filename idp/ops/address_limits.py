"""Per-address limits of the protocol endpoints (``limits.token_per_ip``), counted in the shared store.

A limit such as "600 per minute" is a window that opens at an address's first request, counted with one
atomic increment in the store (Redis, or the in-process store on a single worker): every worker and instance
sees one count.

**Leased budgets for high limits.** A limit raised for a relying party's backend (say 100,000 per minute for a
portal's servers behind one address) would otherwise cost one store round trip on every token request, which
on a busy worker is as much as the rest of a client-credentials grant. When a limit allows more than
:data:`LEASE_SHARE` requests per window, a worker reserves a small part of it at once (a thousandth: 100 of
100,000) with one increment, and admits that many without asking again. Nothing is admitted that was not
reserved first, so all workers together never admit more than the limit in a window; a reservation that only
partly fits admits only what fits. Reserved and unused requests are dropped after :data:`LEASE_SECONDS`: a worker
may refuse a little early while others hold unused reservations (at most a thousandth of the limit each), and
a reservation used just after the store's window ended counts in the old window. Limits of up to
:data:`LEASE_SHARE` per window (the default of 600 per minute among them) are counted request by request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from werkzeug.exceptions import TooManyRequests

from ..provider import current_provider
from ..store.kv import KeyValueStore

#: A worker reserves at most this fraction (one part in LEASE_SHARE) of a limit at once.
LEASE_SHARE = 1000
#: Seconds a reservation may be used before its rest is dropped.
LEASE_SECONDS = 1.0
#: Addresses with a live reservation kept per worker (the memory is emptied when full).
LEASES_KEPT = 4096


class LimitExceeded(TooManyRequests):
    """A 429 whose ``Retry-After`` is the limit's window."""

    def __init__(self, item: RateLimitItem) -> None:
        super().__init__(description=str(item))
        self.retry_after = item.get_expiry()


@lru_cache(maxsize=64)
def parsed_limit(limit: str) -> RateLimitItem:
    return parse(limit)


@dataclass
class _Lease:
    limit: str
    until: float
    left: int


class AddressLimits:
    """The per-address counts of one worker, over the shared store."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._leases: dict[tuple[str, str], _Lease] = {}

    def admit(self, limit: str, scope: str, address: str) -> bool:
        """Count one request of ``address`` against ``limit``; False when the limit is used up."""
        item = parsed_limit(limit)
        chunk = max(1, item.amount // LEASE_SHARE)
        slot = (scope, address)
        now = time.monotonic()
        if chunk > 1:
            with self._lock:
                lease = self._leases.get(slot)
                if lease is not None and lease.limit == limit and lease.until > now and lease.left > 0:
                    lease.left -= 1
                    return True
        window = item.get_expiry()
        total = self._store.incr(f"rate:{scope}:{address}", window, amount=chunk)
        granted = min(chunk, item.amount - (total - chunk))
        if granted <= 0:
            return False
        if chunk > 1:
            with self._lock:
                if len(self._leases) >= LEASES_KEPT:
                    self._leases.clear()
                self._leases[slot] = _Lease(limit, now + min(LEASE_SECONDS, window), granted - 1)
        return True


def charge_address(limit: str, scope: str) -> None:
    """Count this request against ``limit`` (e.g. "600 per minute") for its client address; raise
    :class:`LimitExceeded` (429 with ``Retry-After``) when it is used up."""
    if not current_provider().address_limits.admit(limit, scope, get_remote_address() or "-"):
        raise LimitExceeded(parsed_limit(limit))
