"""Persian (U+06F0-06F9) and Arabic-Indic (U+0660-0669) digits become ASCII ones, wherever a user types."""

from __future__ import annotations

_TO_ASCII = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_TO_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def to_ascii_digits(text: str) -> str:
    return text.translate(_TO_ASCII)


def to_persian_digits(text: str) -> str:
    return text.translate(_TO_PERSIAN)
