"""The Iranian national code (کد ملی): ten digits, the last a check digit over the first nine."""

from __future__ import annotations

from . import InvalidInput
from .digits import to_ascii_digits


def national_code_check_digit(first_nine: str) -> int:
    """Check digit for nine digits: weights 10..2, sum mod 11; below 2 it is the remainder, else 11 - it."""
    remainder = sum(int(d) * (10 - i) for i, d in enumerate(first_nine)) % 11
    return remainder if remainder < 2 else 11 - remainder


def normalize_national_code(raw: str) -> str:
    """The national code as ten ASCII digits; raises :class:`InvalidInput` when it cannot be one.

    Accepts Persian and Arabic-Indic digits and the dashes and spaces people type; keeps leading zeros.
    """
    code = to_ascii_digits(raw).strip().replace("-", "").replace(" ", "")
    if not code:
        raise InvalidInput("national_code.required")
    if not code.isascii() or not code.isdigit() or len(code) != 10:
        raise InvalidInput("national_code.format")
    if len(set(code)) == 1:
        raise InvalidInput("national_code.invalid")
    if national_code_check_digit(code[:9]) != int(code[9]):
        raise InvalidInput("national_code.invalid")
    return code
