"""Slowing down password guessing without ever locking the owner out.

Per account (keyed by the national code typed, whether or not an account has it, so an unknown code and a
wrong password behave alike) and per client IP:

- every attempt on an account takes a number from an atomic counter before the password is checked, so
  parallel attempts each get their own number and none slips past a limit;
- from the ``login.delay_after_failures``-th attempt on, attempts must be spaced: each one claims a gate
  that closes the account for 2, 4, 8... seconds (at most ``login.max_delay``) behind it; an attempt that
  finds the gate closed is refused without checking the password;
- beyond ``login.captcha_after_failures`` attempts on the account, or ``login.ip_captcha_after_failures``
  failures from the address, every attempt needs a solved CAPTCHA as well;
- beyond ``login.ip_delay_after_failures`` failures from one address, its attempts are spaced the same way
  (set high, since many people share an address behind a mobile operator's NAT);
- a successful login clears the account's count; counts fade after ``login.failure_window`` seconds.

Nothing locks an account for good, so an attacker cannot keep its owner out: the owner waits at most
``login.max_delay`` seconds and solves a CAPTCHA.

One-time codes have a long-run cap of the same kind, per number (or email address) they are sent to, whatever
they are for: each code allows ``otp.max_tries`` guesses, and after ``otp.captcha_after_failures`` wrong codes
in a row every further check needs a solved CAPTCHA and claims a gate that closes for 2, 4, 8... seconds (at
most ``otp.max_delay``) behind it (NIST SP 800-63B section 5.2.2). A right code clears the count.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import clock
from ..ops.metrics import RATE_LIMITED
from ..provider import current_provider
from ..security import sha256_hex


@dataclass(frozen=True)
class Verdict:
    """Whether this attempt may check the password now."""

    allowed: bool
    wait_seconds: int = 0
    captcha_required: bool = False


def _account_key(national_code: str) -> str:
    return sha256_hex("login:" + national_code)


def captcha_needed(national_code: str, ip: str | None) -> bool:
    """Whether the next attempt on this account or from this address must come with a CAPTCHA."""
    provider = current_provider()
    settings = provider.config.login
    attempts = provider.store.get(f"login-attempts:{_account_key(national_code)}") or 0
    ip_failures = (provider.store.get(f"login-ip-failures:{ip}") or 0) if ip else 0
    return attempts >= settings.captcha_after_failures or ip_failures >= settings.ip_captcha_after_failures


def begin_attempt(national_code: str, ip: str | None, captcha_solved: bool) -> Verdict:
    """Take a number for this attempt and decide whether it may proceed."""
    provider = current_provider()
    settings = provider.config.login
    store = provider.store
    account = _account_key(national_code)
    ip_failures = (store.get(f"login-ip-failures:{ip}") or 0) if ip else 0
    if ip and ip_failures >= settings.ip_delay_after_failures:
        wait = _claim_gate(
            f"login-ip-gate:{ip}", ip_failures - settings.ip_delay_after_failures + 1, settings.max_delay
        )
        if wait:
            RATE_LIMITED.labels(limit="login_ip_delay").inc()
            return Verdict(allowed=False, wait_seconds=wait)
    number = store.incr(f"login-attempts:{account}", settings.failure_window)
    over_captcha = number > settings.captcha_after_failures or ip_failures >= settings.ip_captcha_after_failures
    if over_captcha and not captcha_solved:
        RATE_LIMITED.labels(limit="login_captcha").inc()
        return Verdict(allowed=False, captcha_required=True)
    # The attempt that reaches the threshold closes the gate behind it, so the next one already waits.
    if number >= settings.delay_after_failures:
        wait = _claim_gate(f"login-gate:{account}", number - settings.delay_after_failures + 1, settings.max_delay)
        if wait:
            RATE_LIMITED.labels(limit="login_account_delay").inc()
            return Verdict(allowed=False, wait_seconds=wait, captcha_required=over_captcha)
    return Verdict(allowed=True, captcha_required=over_captcha)


def _claim_gate(key: str, step: int, max_delay: int) -> int:
    """Claim the gate for this attempt, closing it for 2**step seconds (at most ``max_delay``); 0 when claimed,
    else the seconds until it opens. Only one caller can claim an open gate (the store's add is atomic)."""
    store = current_provider().store
    delay = min(2**step, max_delay)
    now = clock.timestamp()
    if store.add(key, {"until": now + delay}, delay):
        return 0
    gate = store.get(key) or {"until": now + 1}
    return max(1, int(gate["until"]) - now)


def record_failure(ip: str | None) -> None:
    if ip:
        provider = current_provider()
        provider.store.incr(f"login-ip-failures:{ip}", provider.config.login.failure_window)


def record_success(national_code: str) -> None:
    store = current_provider().store
    account = _account_key(national_code)
    store.delete(f"login-attempts:{account}")
    store.delete(f"login-gate:{account}")


# -- one-time codes ----------------------------------------------------------------------------------------


def _code_target_key(target: str) -> str:
    return sha256_hex("codes:" + target)


def code_failures(target: str) -> int:
    """Wrong codes in a row for ``target`` (a number, an email address)."""
    return current_provider().store.get(f"code-failures:{_code_target_key(target)}") or 0


def code_captcha_needed(target: str) -> bool:
    return code_failures(target) >= current_provider().config.otp.captcha_after_failures


def begin_code_check(target: str, captcha_solved: bool) -> Verdict:
    """Whether a code sent to ``target`` may be checked now (the check itself spends one of the code's tries)."""
    settings = current_provider().config.otp
    beyond = code_failures(target) - settings.captcha_after_failures
    if beyond < 0:
        return Verdict(allowed=True)
    if not captcha_solved:
        RATE_LIMITED.labels(limit="code_captcha").inc()
        return Verdict(allowed=False, captcha_required=True)
    wait = _claim_gate(f"code-gate:{_code_target_key(target)}", beyond + 1, settings.max_delay)
    if wait:
        RATE_LIMITED.labels(limit="code_delay").inc()
        return Verdict(allowed=False, wait_seconds=wait, captcha_required=True)
    return Verdict(allowed=True, captcha_required=True)


def record_code_failure(target: str) -> None:
    provider = current_provider()
    provider.store.incr(f"code-failures:{_code_target_key(target)}", provider.config.otp.failure_window)


def record_code_success(target: str) -> None:
    store = current_provider().store
    key = _code_target_key(target)
    store.delete(f"code-failures:{key}")
    store.delete(f"code-gate:{key}")
