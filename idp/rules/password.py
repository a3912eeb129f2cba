"""Password rules: long enough, not something written on the user's ID card or SIM, not a common password."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from . import InvalidInput
from .birthdate import gregorian_to_jalali
from .digits import to_ascii_digits

MIN_LENGTH = 8
MAX_LENGTH = 256
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def check_password(password: str, *, national_code: str, mobile: str, birthdate: dt.date | None) -> None:
    """Raise :class:`InvalidInput` when ``password`` breaks a rule."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput("password.too_short")
    if len(password) > MAX_LENGTH:
        raise InvalidInput("password.too_long")
    plain = to_ascii_digits(password).strip()
    national = mobile.removeprefix("+98")
    personal = {national_code, mobile, national, "0" + national}
    if birthdate is not None:
        personal |= {birthdate.isoformat(), birthdate.strftime("%Y%m%d"), birthdate.strftime("%Y/%m/%d")}
        y, m, d = gregorian_to_jalali(birthdate)
        personal |= {f"{y}{m:02d}{d:02d}", f"{y}/{m:02d}/{d:02d}", f"{y}-{m:02d}-{d:02d}"}
    if plain in personal:
        raise InvalidInput("password.personal")
    if plain.lower() in common_passwords():
        raise InvalidInput("password.common")
