"""Dates as Iranian sites show them: Jalali, Persian digits, Iran's time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import jdatetime

TEHRAN = ZoneInfo("Asia/Tehran")
_TO_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def persian_digits(value: object) -> str:
    return str(value).translate(_TO_PERSIAN)


def jalali(value: dt.date | dt.datetime | None, with_time: bool = False) -> str:
    """``1403/09/01`` (or ``1403/09/01 14:05``) in Persian digits."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        local = value.replace(tzinfo=value.tzinfo or dt.UTC).astimezone(TEHRAN)
        text = jdatetime.datetime.fromgregorian(datetime=local).strftime("%Y/%m/%d %H:%M" if with_time else "%Y/%m/%d")
    else:
        text = jdatetime.date.fromgregorian(date=value).strftime("%Y/%m/%d")
    return persian_digits(text)
