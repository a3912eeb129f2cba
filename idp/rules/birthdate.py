"""Birth dates: real dates in the past, stored as Gregorian."""

from __future__ import annotations

import datetime as dt

from . import InvalidInput
from .digits import to_ascii_digits


def parse_iso_birthdate(raw: str, today: dt.date) -> dt.date:
    """A Gregorian ``YYYY-MM-DD`` birth date that is real, in the past and not absurdly old."""
    try:
        value = dt.date.fromisoformat(to_ascii_digits(raw).strip())
    except ValueError:
        raise InvalidInput("birthdate.format") from None
    if value >= today:
        raise InvalidInput("birthdate.future")
    if value.year < today.year - 130:
        raise InvalidInput("birthdate.too_old")
    return value
