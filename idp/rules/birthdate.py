"""Birth dates: real dates in the past. People enter a Jalali day, month and year; we store Gregorian."""

from __future__ import annotations

import datetime as dt

import jdatetime

from . import InvalidInput
from .digits import to_ascii_digits

OLDEST_YEARS = 130


def _check_age(value: dt.date, today: dt.date) -> dt.date:
    if value >= today:
        raise InvalidInput("birthdate.future")
    if value.year < today.year - OLDEST_YEARS:
        raise InvalidInput("birthdate.too_old")
    return value


def parse_iso_birthdate(raw: str, today: dt.date) -> dt.date:
    """A Gregorian ``YYYY-MM-DD`` birth date that is real, in the past and not absurdly old."""
    try:
        value = dt.date.fromisoformat(to_ascii_digits(raw).strip())
    except ValueError:
        raise InvalidInput("birthdate.format") from None
    return _check_age(value, today)


def _number(raw: str | int | None) -> int:
    text = to_ascii_digits(str(raw if raw is not None else "")).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 4:
        raise InvalidInput("birthdate.required" if not text else "birthdate.invalid")
    return int(text)


def jalali_to_gregorian(year: str | int, month: str | int, day: str | int, today: dt.date) -> dt.date:
    """The Gregorian date of a Jalali (Solar Hijri) birth date, which must exist and lie in the past.

    ``1403/12/30`` exists (a leap year), ``1402/12/30`` does not; months 1-6 have 31 days, 7-11 have 30.
    """
    y, m, d = _number(year), _number(month), _number(day)
    try:
        value = jdatetime.date(y, m, d).togregorian()
    except (ValueError, OverflowError):
        raise InvalidInput("birthdate.invalid") from None
    return _check_age(value, today)


def gregorian_to_jalali(value: dt.date) -> tuple[int, int, int]:
    jalali = jdatetime.date.fromgregorian(date=value)
    return jalali.year, jalali.month, jalali.day
