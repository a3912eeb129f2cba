"""The ``auth`` area: logging in (password, SMS code, passkey), the second factor (step-up), password recovery
and the change of mobile number as EMTA does it. One module per flow, each adding its views to :data:`bp`."""

from __future__ import annotations

from . import mobile_change, passkey_login, passkey_recovery, password_login, recovery, second_factor, sms_login
from .blueprint import bp

__all__ = [
    "bp",
    "mobile_change",
    "passkey_login",
    "passkey_recovery",
    "password_login",
    "recovery",
    "second_factor",
    "sms_login",
]
