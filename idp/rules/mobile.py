"""Iranian mobile numbers, in any common form, as E.164 (+989XXXXXXXXX)."""

from __future__ import annotations

import re

from . import InvalidInput
from .digits import to_ascii_digits

_SEPARATORS = re.compile(r"[\s\-().]")


def national_format(e164: str) -> str:
    """``+989121234567`` -> ``09121234567``, as people write their number."""
    return "0" + e164.removeprefix("+98") if e164.startswith("+98") else e164


def mask_mobile(e164: str) -> str:
    """``+989121234567`` -> ``0912***4567``: enough for the owner to recognise, not to reveal it to others."""
    national = national_format(e164)
    return f"{national[:4]}***{national[-4:]}"


def normalize_mobile(raw: str) -> str:
    """``09121234567``, ``9121234567``, ``+98 912 123 4567`` and ``00989121234567`` all become ``+989121234567``."""
    number = _SEPARATORS.sub("", to_ascii_digits(raw).strip())
    if not number:
        raise InvalidInput("mobile.required")
    if number.startswith("+98"):
        national = number[3:]
    elif number.startswith("0098"):
        national = number[4:]
    elif number.startswith("98") and len(number) == 12:
        national = number[2:]
    elif number.startswith("0"):
        national = number[1:]
    else:
        national = number
    if not national.isascii() or not national.isdigit() or len(national) != 10 or not national.startswith("9"):
        raise InvalidInput("mobile.format")
    return "+98" + national
