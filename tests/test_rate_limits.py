"""Rate limits (idp.rate_limits): one count per key shared by every worker and instance, IPv6 addresses counted by
their /64, a refusal that costs no budget, and a 429 that says when to come back."""

from __future__ import annotations

import pytest

from idp import rate_limits
from idp.provider import current_provider
from idp.rate_limits import RateLimits, client_address

from .helpers import create_test_user, find_form


def login_attempt(client, national_code: str, address: str = "127.0.0.1"):
    """A wrong password from ``address``, with the form's CSRF token, as a browser would send it."""
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    token = find_form(page.get_data(as_text=True), field_name="csrf_token").fields["csrf_token"]
    return client.post(
        "/login",
        data={"national_code": national_code, "password": "wrong password", "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


@pytest.mark.parametrize(
    "address, counted_as",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", "-"),
    ],
)
def test_an_address_is_counted_by_its_ipv4_address_or_its_ipv6_64(address, counted_as):
    assert client_address(address) == counted_as


def test_two_workers_share_one_count(app):
    with app.app_context():
        store = current_provider().store
        prefix = current_provider().config.redis.key_prefix
        workers = [current_provider().rate_limits, RateLimits(store, prefix)]
        if not store.shared_between_processes:
            workers = workers[:1]  # the in-process store is one worker's by design
        admitted = sum(workers[i % len(workers)].hit("3 per minute", "test", "192.0.2.7") for i in range(10))
        assert admitted == 3
        assert workers[-1].hit("3 per minute", "test", "192.0.2.8")


def test_a_refused_check_of_several_limits_spends_none_of_them(app):
    with app.app_context():
        limits = current_provider().rate_limits
        assert limits.hit_all([("1 per minute", "a", "k"), ("5 per minute", "b", "k")])
        # "a" is used up: "b" is not charged for the refused request.
        for _ in range(3):
            assert not limits.hit_all([("1 per minute", "a", "k"), ("5 per minute", "b", "k")])
        assert sum(limits.hit("5 per minute", "b", "k") for _ in range(10)) == 4


def test_addresses_of_one_ipv6_64_share_the_login_limit(app_with):
    """An attacker holding a /64 cannot pose as millions of addresses to the per-address login limit."""
    app = app_with(limits={"login_per_ip": "3 per minute"})
    user = create_test_user(app)
    client = app.test_client()
    statuses = [
        login_attempt(client, user.national_code, f"2001:db8:7:7::{host:x}").status_code for host in range(1, 6)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    # Another /64 is another address.
    assert login_attempt(client, user.national_code, "2001:db8:7:8::1").status_code == 200


def test_a_refused_login_says_when_to_come_back(app_with):
    app = app_with(limits={"login_per_ip": "1 per minute"})
    user = create_test_user(app)
    client = app.test_client()
    assert login_attempt(client, user.national_code).status_code == 200
    refused = login_attempt(client, user.national_code)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"


def _workers(app, count: int) -> list[RateLimits]:
    """``count`` processes' counters over the app's store (one, for the in-process store, which is one process's)."""
    provider = current_provider()
    if not provider.store.shared_between_processes:
        return [provider.rate_limits]
    return [provider.rate_limits] + [
        RateLimits(provider.store, provider.config.redis.key_prefix) for _ in range(count - 1)
    ]


@pytest.mark.parametrize("rate, allowed", [("5000 per minute", 5000), ("5003 per minute", 5003)])
def test_reserved_parts_of_a_high_limit_admit_exactly_the_limit_together(app, monkeypatch, rate, allowed):
    """Above a thousand per window a process reserves a thousandth at a time; the last reservation only partly fits
    when the limit is not a multiple of it, and admits only what fits. Together no more than the limit."""
    monkeypatch.setattr(rate_limits, "LEASE_SECONDS", 600.0)
    with app.app_context():
        workers = _workers(app, 3)
        admitted = sum(workers[i % len(workers)].hit(rate, "token", "192.0.2.7") for i in range(allowed + 500))
        assert admitted == allowed
        # Used up for every process, a new one included, and only for this address.
        assert not _workers(app, 2)[-1].hit(rate, "token", "192.0.2.7")
        assert workers[0].hit(rate, "token", "192.0.2.8")


def test_an_expired_reservation_is_dropped_not_used_later(app, monkeypatch):
    # Reservations that expire at once: each admission reserves 5 and uses 1, so the store's count reaches the
    # limit after a fifth of it. Refusing early is the price of never admitting more than the limit.
    monkeypatch.setattr(rate_limits, "LEASE_SECONDS", 0.0)
    with app.app_context():
        worker = current_provider().rate_limits
        assert sum(worker.hit("5000 per minute", "token", "192.0.2.7") for _ in range(1500)) == 1000
