"""Iranian postal codes: ten digits; Iran Post never uses 0 or 2 in the first five."""

from __future__ import annotations

from . import InvalidInput
from .digits import to_ascii_digits


def normalize_postal_code(raw: str) -> str:
    code = to_ascii_digits(raw).strip().replace("-", "").replace(" ", "")
    if not code:
        raise InvalidInput("postal_code.required")
    if not code.isascii() or not code.isdigit() or len(code) != 10:
        raise InvalidInput("postal_code.format")
    if "0" in code[:5] or "2" in code[:5] or len(set(code)) == 1:
        raise InvalidInput("postal_code.invalid")
    return code
