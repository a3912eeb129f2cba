"""Password rules: long enough, and not something written on the user's ID card or SIM."""

from __future__ import annotations

import datetime as dt

from . import InvalidInput
from .digits import to_ascii_digits

MIN_LENGTH = 8
MAX_LENGTH = 256


def check_password(password: str, *, national_code: str, mobile: str, birthdate: dt.date | None) -> None:
    """Raise :class:`InvalidInput` when ``password`` breaks a rule."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput("password.too_short")
    if len(password) > MAX_LENGTH:
        raise InvalidInput("password.too_long")
    plain = to_ascii_digits(password).strip()
    personal = {national_code, mobile, mobile.removeprefix("+98"), "0" + mobile.removeprefix("+98")}
    if birthdate is not None:
        personal |= {birthdate.isoformat(), birthdate.strftime("%Y%m%d")}
    if plain in personal:
        raise InvalidInput("password.personal")
