"""Domain rules for user input: small pure functions, each raising :class:`InvalidInput` with a message key."""

from __future__ import annotations


class InvalidInput(ValueError):
    """The value breaks a rule; ``reason`` is a stable key that pages turn into a translated message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
