"""One-time codes sent by SMS (or email): short-lived, single-use, bound to a purpose and to the number
(or address) they were sent to.

- A code is 6 random digits (``otp.length``), kept only as an HMAC in the key-value store for ``otp.ttl``
  seconds (2 minutes).
- At most ``otp.max_tries`` guesses per code, counted atomically, so parallel guesses get no more.
- A new code for the same purpose and number at most once per ``otp.resend_interval`` seconds, and at most
  ``otp.per_ip`` codes an hour from one address and, to one number, ``otp.per_mobile`` asked for by its owner
  (a solved CAPTCHA, or the number's account logged in) plus ``otp.per_mobile_anonymous`` asked for by anyone
  else (idp.rate_limits, in the same store): a stranger's requests never use up the owner's.
- Codes are compared in constant time. Nothing logs a code.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from . import clock
from .ops.metrics import CODE_CHECKS, CODES_SENT, RATE_LIMITED
from .provider import Provider, current_provider
from .security import keyed_hash, sha256_hex

log = logging.getLogger(__name__)

PURPOSES = ("register", "login", "reset", "change_mobile", "step_up", "verify_email")


class CodeNotSent(Exception):
    """No code was sent: ``reason`` is ``too_soon`` (see ``retry_after``), ``hourly_limit`` or ``unavailable``;
    ``anonymous`` when the request spent a stranger's budget (no CAPTCHA solved, not the owner logged in)."""

    def __init__(self, reason: str, retry_after: int = 0, anonymous: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.anonymous = anonymous


@dataclass(frozen=True)
class SentCode:
    target: str
    expires_at: int


def _keys(purpose: str, target: str) -> tuple[str, str, str]:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown one-time code purpose {purpose!r}")
    who = sha256_hex(target)
    return f"otp:{purpose}:{who}", f"otp-tries:{purpose}:{who}", f"otp-sent:{purpose}:{who}"


def _digest(purpose: str, target: str, code: str) -> str:
    # Keyed: six digits are a million guesses, so a plain hash in a leaked store would give the code away.
    return keyed_hash(f"{target}\x00{code}", f"otp:{purpose}")


def _under_hourly_limits(provider: Provider, target: str, ip: str | None, verified: bool) -> bool:
    """Charge one code to the number's and the address's hourly caps, unless either is already used up. The
    number's cap is the owner's budget or the strangers' one, by who asks."""
    settings = provider.config.otp
    if verified:
        checks = [(settings.per_mobile, "codes-to", sha256_hex(target))]
    else:
        checks = [(settings.per_mobile_anonymous, "codes-to-anonymous", sha256_hex(target))]
    if ip:
        checks.append((settings.per_ip, "codes-from", ip))
    return provider.rate_limits.hit_all(checks)


def new_code(length: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


def issue_code(purpose: str, target: str, ip: str | None, *, verified: bool) -> tuple[str, SentCode]:
    """Make and store a new code for ``target``; the caller delivers it. ``verified``: the request spends the
    owner's budget (see the module's docstring). Raises :class:`CodeNotSent`."""
    provider = current_provider()
    settings = provider.config.otp
    code_key, tries_key, _ = _keys(purpose, target)
    now = charge_code_request(purpose, target, ip, verified=verified)
    code = new_code(settings.length)
    expires_at = now + settings.ttl
    provider.store.put(code_key, {"hmac": _digest(purpose, target, code), "expires_at": expires_at}, settings.ttl + 5)
    provider.store.delete(tries_key)
    return code, SentCode(target=target, expires_at=expires_at)


def charge_code_request(purpose: str, target: str, ip: str | None, *, verified: bool) -> int:
    """Everything :func:`issue_code` checks and counts (the resend wait, the hourly caps) without making a code:
    for a page that must answer as if it sent one. Returns the time charged; raises :class:`CodeNotSent`."""
    provider = current_provider()
    settings = provider.config.otp
    _, _, sent_key = _keys(purpose, target)
    now = clock.timestamp()

    def too_soon(sent: dict | None) -> CodeNotSent:
        at = int((sent or {"at": now})["at"])
        return CodeNotSent("too_soon", retry_after=max(1, settings.resend_interval - (now - at)))

    # A refusal must not cost anything: check the resend wait, then the hourly caps, before charging either.
    sent = provider.store.get(sent_key)
    if sent is not None:
        RATE_LIMITED.labels(limit="otp_resend_interval").inc()
        raise too_soon(sent)
    if not _under_hourly_limits(provider, target, ip, verified):
        RATE_LIMITED.labels(limit="otp_hourly").inc()
        raise CodeNotSent("hourly_limit", anonymous=not verified)
    if not provider.store.add(sent_key, {"at": now}, settings.resend_interval):
        raise too_soon(provider.store.get(sent_key))  # another request sent one just now
    return now


def withdraw_code(purpose: str, target: str) -> None:
    """Forget a code that could not be delivered, so the user may ask for another at once."""
    store = current_provider().store
    for key in _keys(purpose, target):
        store.delete(key)


def check_code(purpose: str, target: str, code: str) -> bool:
    """True when ``code`` is the live code for ``purpose`` and ``target``. Each call spends one try; after
    ``otp.max_tries`` the code is gone. The code stays usable until :func:`consume_code`."""
    provider = current_provider()
    settings = provider.config.otp
    code_key, tries_key, _ = _keys(purpose, target)
    record = provider.store.get(code_key)
    if record is None or not isinstance(code, str):
        CODE_CHECKS.labels(purpose=purpose, result="no_code").inc()
        return False
    if provider.store.incr(tries_key, settings.ttl + 5) > settings.max_tries:
        provider.store.delete(code_key)
        CODE_CHECKS.labels(purpose=purpose, result="too_many_tries").inc()
        return False
    if record["expires_at"] <= clock.timestamp():
        CODE_CHECKS.labels(purpose=purpose, result="expired").inc()
        return False
    right = hmac.compare_digest(_digest(purpose, target, code.strip()), record["hmac"])
    CODE_CHECKS.labels(purpose=purpose, result="right" if right else "wrong").inc()
    return right


def consume_code(purpose: str, target: str, code: str) -> bool:
    """Check the code and, when right, use it up: of two requests with the right code only one succeeds."""
    return check_code(purpose, target, code) and claim_code(purpose, target) is not None


def claim_code(purpose: str, target: str) -> int | None:
    """Use up a code this request has already checked (no further try is spent); returns when the code would
    have expired, or None when another request used it first."""
    code_key, _, _ = _keys(purpose, target)
    record = current_provider().store.consume(code_key)
    return None if record is None else int(record["expires_at"])


def send_sms_code(
    purpose: str, mobile: str, ip: str | None, text_for: Callable[[str], str], *, verified: bool
) -> SentCode:
    """Issue a code and text it to ``mobile``; ``text_for(code)`` words the message in the user's language.

    Raises :class:`CodeNotSent` (``unavailable`` when the gateway fails; the code is then withdrawn).
    """
    from .sms import SmsUnavailable

    code, sent = issue_code(purpose, mobile, ip, verified=verified)
    try:
        current_provider().sms.send(mobile, text_for(code), purpose=purpose, code=code)
    except SmsUnavailable as error:
        withdraw_code(purpose, mobile)
        log.warning("could not send a %s code: %s", purpose, error)
        raise CodeNotSent("unavailable") from None
    CODES_SENT.labels(channel="sms", purpose=purpose).inc()
    current_app.logger.debug("sent a %s code", purpose)
    return sent
