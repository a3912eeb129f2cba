"""Email addresses, checked for shape only: whether one works is proved by the code sent to it."""

from __future__ import annotations

import re

from . import InvalidInput

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


def normalize_email(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise InvalidInput("email.required")
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput("email.format")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"
