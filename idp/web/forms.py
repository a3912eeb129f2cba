"""Forms of the hosted pages (Flask-WTF: every form carries ``csrf_token``). Field names follow
CONTRACTS.md; messages are translated, and digits may be typed in Persian or Arabic-Indic."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from ..rules import InvalidInput
from ..rules.digits import to_ascii_digits
from ..rules.national_code import normalize_national_code

NATIONAL_CODE_MESSAGES = {
    "national_code.required": _l("Enter your national code."),
    "national_code.format": _l("The national code has 10 digits."),
    "national_code.invalid": _l("This national code is not valid; check the digits."),
}


def ascii_digits(value: Any) -> Any:
    return to_ascii_digits(value) if isinstance(value, str) else value


class NationalCode:
    """Validates and normalises a national code field in place."""

    def __call__(self, form: FlaskForm, field: StringField) -> None:
        try:
            field.data = normalize_national_code(field.data or "")
        except InvalidInput as error:
            raise ValidationError(str(NATIONAL_CODE_MESSAGES[error.reason])) from None


class LoginForm(FlaskForm):
    national_code = StringField(
        _l("National code"),
        filters=[ascii_digits],
        validators=[InputRequired(_l("Enter your national code.")), NationalCode()],
        render_kw={"inputmode": "numeric", "autocomplete": "username", "dir": "ltr", "maxlength": 14},
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(_l("Enter your password.")), Length(max=256)],
        render_kw={"autocomplete": "current-password", "dir": "ltr"},
    )
    tx = HiddenField()


class ConsentForm(FlaskForm):
    decision = StringField(validators=[InputRequired()])

    def validate_decision(self, field: StringField) -> None:
        if field.data not in {"allow", "deny"}:
            raise ValidationError("decision must be allow or deny")


class LogoutForm(FlaskForm):
    pass
