"""The ``auth`` blueprint: logging in (password, SMS code), the second factor (step-up), password recovery
and the change of mobile number as EMTA does it. One module per flow."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import mobile_change, password_login, recovery, second_factor, sms_login  # noqa: E402, F401
