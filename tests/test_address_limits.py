"""Per-address limits of the protocol endpoints: one count per address shared by every worker, with leased
budgets for high limits that never let the workers together admit more than the limit."""

from __future__ import annotations

import pytest

from idp.ops import address_limits
from idp.ops.address_limits import AddressLimits
from idp.provider import current_provider


def admitted_alternately(workers: list[AddressLimits], limit: str, tries: int, address: str = "192.0.2.7") -> int:
    return sum(workers[i % len(workers)].admit(limit, "token", address) for i in range(tries))


@pytest.fixture
def store(app):
    with app.app_context():
        yield current_provider().store


def test_a_low_limit_is_counted_request_by_request_across_workers(store):
    workers = [AddressLimits(store), AddressLimits(store)]
    assert admitted_alternately(workers, "3 per minute", 10) == 3


@pytest.mark.parametrize("limit, allowed", [("5000 per minute", 5000), ("5003 per minute", 5003)])
def test_workers_with_leased_budgets_admit_exactly_the_limit_together(store, monkeypatch, limit, allowed):
    # Each reservation is 5 requests (a thousandth); the last one only partly fits when the limit is not a
    # multiple of 5, and admits only what fits.
    monkeypatch.setattr(address_limits, "LEASE_SECONDS", 600.0)
    workers = [AddressLimits(store), AddressLimits(store), AddressLimits(store)]
    assert admitted_alternately(workers, limit, allowed + 500) == allowed
    # Used up for every worker, a new one included, and only for this address.
    assert not AddressLimits(store).admit(limit, "token", "192.0.2.7")
    assert AddressLimits(store).admit(limit, "token", "192.0.2.8")


def test_an_expired_reservation_is_dropped_not_used_later(store, monkeypatch):
    # With reservations that expire at once, each admission reserves 5 and uses 1: the store's count reaches
    # the limit after a fifth of it. Refusing early is the price of never admitting more than the limit.
    monkeypatch.setattr(address_limits, "LEASE_SECONDS", 0.0)
    worker = AddressLimits(store)
    assert admitted_alternately([worker], "5000 per minute", 1500) == 1000
