"""The interface every backend implements, and the errors they raise."""

from __future__ import annotations

from typing import Protocol


class SmsUnavailable(RuntimeError):
    """The gateway failed or timed out; the user should try again in a moment."""


class SmsSender(Protocol):
    def send(self, to: str, text: str, *, purpose: str, code: str | None = None) -> None:
        """Send ``text`` to the E.164 number ``to``; raise :class:`SmsUnavailable` when it cannot be sent."""
