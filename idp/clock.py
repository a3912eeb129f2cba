"""The provider's notion of now. Every expiry check reads it, so tests can move time forward."""

from __future__ import annotations

import datetime as dt
import time

_offset_seconds = 0.0


def now() -> dt.datetime:
    """The current time, timezone-aware UTC, whole seconds (the precision of every token claim)."""
    return dt.datetime.fromtimestamp(int(time.time() + _offset_seconds), dt.UTC)


def timestamp() -> int:
    return int(time.time() + _offset_seconds)


def advance(seconds: float) -> None:
    """Move the clock forward (tests only)."""
    global _offset_seconds
    _offset_seconds += seconds


def reset() -> None:
    global _offset_seconds
    _offset_seconds = 0.0
