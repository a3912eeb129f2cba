"""Forms of the hosted pages (Flask-WTF: every form carries ``csrf_token``). Field names follow
the README; messages are translated and tied to their field; digits may be typed in Persian or
Arabic-Indic; code fields carry ``autocomplete="one-time-code"`` and ``inputmode="numeric"``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from babel.support import Translations
from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    Field,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from ..rules import InvalidInput
from ..rules.digits import to_ascii_digits
from ..rules.email import normalize_email
from ..rules.mobile import normalize_mobile
from ..rules.national_code import normalize_national_code
from ..rules.password import check_password
from ..rules.postal_code import normalize_postal_code
from .captcha import captcha_enabled, check_answer

#: WTForms' own catalogue (its validators' messages), by language: loaded from disk once per process.
_WTFORMS_CATALOGUES: dict[str, Translations] = {}


def wtforms_catalogue() -> Translations | None:
    """WTForms' messages in the reader's language. Flask-WTF loads them from the .mo file again on every request
    that builds a form (it keeps them on the request only); the languages are the few we speak
    (idp.i18n.select_locale), so one copy of each is kept."""
    if not current_app.config.get("WTF_I18N_ENABLED", True):
        return None
    language = str(get_locale())
    catalogue = _WTFORMS_CATALOGUES.get(language)
    if catalogue is None:
        catalogue = _WTFORMS_CATALOGUES[language] = Translations.load(messages_path(), [language], domain="wtforms")
    return catalogue


class Form(FlaskForm):
    """The base of our forms: Flask-WTF's, with WTForms' messages from :func:`wtforms_catalogue`."""

    class Meta:
        def get_translations(self, form: Any) -> Translations | None:
            return wtforms_catalogue()


#: Every rule's message, by the reason its function raises (idp.rules).
RULE_MESSAGES = {
    "national_code.required": _l("Enter your national code."),
    "national_code.format": _l("The national code has 10 digits."),
    "national_code.invalid": _l("This national code is not valid; check the digits."),
    "mobile.required": _l("Enter your mobile number."),
    "mobile.format": _l("Enter an Iranian mobile number, such as 09121234567."),
    "birthdate.required": _l("Enter your date of birth: day, month and year."),
    "birthdate.invalid": _l("This date does not exist in the calendar; check the day and month."),
    "birthdate.future": _l("The date of birth must be in the past."),
    "birthdate.too_old": _l("Check the year of birth."),
    "birthdate.format": _l("Enter the date as year-month-day."),
    "password.too_short": _l("The password must have at least 8 characters."),
    "password.too_long": _l("The password may have at most 256 characters."),
    "password.personal": _l("Do not use your national code, mobile number or date of birth as the password."),
    "password.common": _l("This password is too common and easy to guess; choose another."),
    "postal_code.required": _l("Enter the postal code."),
    "postal_code.format": _l("The postal code has 10 digits."),
    "postal_code.invalid": _l("This postal code is not valid; check the digits."),
    "email.required": _l("Enter your email address."),
    "email.format": _l("Enter a valid email address, such as name@example.com."),
}


def rule_message(reason: str) -> str:
    return str(RULE_MESSAGES[reason])


def password_refusal(password: str, *, national_code: str, mobile: str, birthdate: dt.date) -> str | None:
    """Why the password rules (idp.rules.password) refuse ``password`` for this person, in words; None when
    they accept it."""
    try:
        check_password(password, national_code=national_code, mobile=mobile, birthdate=birthdate)
    except InvalidInput as error:
        return rule_message(error.reason)
    return None


def ascii_digits(value: Any) -> Any:
    return to_ascii_digits(value) if isinstance(value, str) else value


class Rule:
    """Validate and normalise a field in place with one of the pure rules of :mod:`idp.rules`."""

    def __init__(self, normalize: Callable[[str], str]) -> None:
        self.normalize = normalize

    def __call__(self, form: FlaskForm, field: Field) -> None:
        try:
            field.data = self.normalize(field.data or "")
        except InvalidInput as error:
            raise ValidationError(rule_message(error.reason)) from None


class CaptchaAnswer:
    def __call__(self, form: FlaskForm, field: Field) -> None:
        if not check_answer(field.data):
            raise ValidationError(str(_l("The digits do not match the picture; try the new one.")))


NUMERIC = {"inputmode": "numeric", "dir": "ltr", "autocomplete": "off"}


def national_code_field(autocomplete: str = "username") -> StringField:
    return StringField(
        _l("National code"),
        filters=[ascii_digits],
        validators=[InputRequired(_l("Enter your national code.")), Rule(normalize_national_code)],
        render_kw={**NUMERIC, "autocomplete": autocomplete, "maxlength": 14},
    )


def mobile_field(label: Any = None) -> StringField:
    return StringField(
        label or _l("Mobile number"),
        filters=[ascii_digits],
        validators=[InputRequired(_l("Enter your mobile number.")), Rule(normalize_mobile)],
        render_kw={"inputmode": "tel", "dir": "ltr", "autocomplete": "tel", "maxlength": 20},
    )


def code_field() -> StringField:
    return StringField(
        _l("Code"),
        filters=[ascii_digits],
        validators=[InputRequired(_l("Enter the code you received.")), Length(max=12)],
        render_kw={**NUMERIC, "autocomplete": "one-time-code", "maxlength": 12},
    )


def captcha_field() -> StringField:
    return StringField(
        _l("Security code"),
        filters=[ascii_digits],
        validators=[CaptchaAnswer()],
        render_kw={**NUMERIC, "maxlength": 8},
    )


def new_password_fields() -> tuple[PasswordField, PasswordField]:
    password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Choose a password.")), Length(max=256)],
        render_kw={"autocomplete": "new-password", "dir": "ltr"},
    )
    confirm = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(_l("Type the password again."))],
        render_kw={"autocomplete": "new-password", "dir": "ltr"},
    )
    return password, confirm


def current_password_field(label: Any = None) -> PasswordField:
    return PasswordField(
        label or _l("Password"),
        validators=[DataRequired(_l("Enter your password.")), Length(max=256)],
        render_kw={"autocomplete": "current-password", "dir": "ltr"},
    )


class WithCaptcha(Form):
    """A form whose ``captcha`` field is dropped when CAPTCHA is off (or, for login, not needed yet)."""

    captcha = captcha_field()

    def __init__(self, *args: Any, show_captcha: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if show_captcha is None:
            show_captcha = captcha_enabled()
        if not show_captcha:
            del self.captcha

    @property
    def shows_captcha(self) -> bool:
        return "captcha" in self._fields


class SecretForm(WithCaptcha):
    """A form with a secret the throttle guards (a password, a one-time or authenticator code): the page says
    whether to show a CAPTCHA (idp.auth.flow.captcha_due). ``without`` names fields this page leaves out."""

    def __init__(self, *args: Any, show_captcha: bool, without: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, show_captcha=show_captcha, **kwargs)
        self.without = without
        for name in without:
            delattr(self, name)


def with_captcha(previous: WithCaptcha) -> WithCaptcha:
    """The same form, now with a CAPTCHA, keeping what the user typed (but passwords) and the errors."""
    extra = {"without": previous.without} if isinstance(previous, SecretForm) else {}
    form = type(previous)(formdata=None, show_captcha=True, **extra)
    for name, field in previous._fields.items():
        if name in ("csrf_token", "captcha") or name not in form._fields:
            continue
        if not isinstance(field, PasswordField):
            form[name].data = field.data
        form[name].errors = list(field.errors)
    return form


class NewPasswordMixin:
    def validate_password_confirm(self, field: Field) -> None:
        if field.data != self.password.data:  # type: ignore[attr-defined]
            raise ValidationError(str(_l("The two passwords are not the same.")))


# -- login ----------------------------------------------------------------------------------------------


class LoginForm(WithCaptcha):
    # "webauthn": the browser may offer the site's passkeys in this field's autofill (conditional mediation).
    national_code = national_code_field(autocomplete="username webauthn")
    password = current_password_field()
    tx = HiddenField()


class OtpLoginStartForm(WithCaptcha):
    national_code = national_code_field()
    tx = HiddenField()


class CodeForm(SecretForm):
    code = code_field()
    tx = HiddenField()


class PasswordForm(SecretForm):
    password = current_password_field()
    tx = HiddenField()


# -- registration, recovery, mobile change --------------------------------------------------------------


class RegisterStartForm(WithCaptcha):
    mobile = mobile_field()
    tx = HiddenField()


class RegisterDetailsForm(NewPasswordMixin, SecretForm):
    national_code = national_code_field()
    birth_year = StringField(_l("Year"), filters=[ascii_digits], render_kw={**NUMERIC, "maxlength": 4})
    birth_month = StringField(_l("Month"), filters=[ascii_digits], render_kw={**NUMERIC, "maxlength": 2})
    birth_day = StringField(_l("Day"), filters=[ascii_digits], render_kw={**NUMERIC, "maxlength": 2})
    password, password_confirm = new_password_fields()
    code = code_field()
    tx = HiddenField()


class ForgotStartForm(WithCaptcha):
    national_code = national_code_field()
    tx = HiddenField()


class ResetPasswordForm(NewPasswordMixin, SecretForm):
    code = code_field()
    password, password_confirm = new_password_fields()
    tx = HiddenField()


class ResetSecondFactorForm(SecretForm):
    code = StringField(
        _l("Code from the authenticator app, or a recovery code"),
        filters=[ascii_digits],
        validators=[
            InputRequired(_l("Enter the code your authenticator app shows, or a recovery code.")),
            Length(max=12),
        ],
        render_kw={"dir": "ltr", "autocomplete": "one-time-code", "maxlength": 12},
    )
    tx = HiddenField()


class NewPasswordForm(NewPasswordMixin, Form):
    password, password_confirm = new_password_fields()
    tx = HiddenField()


class ChangeMobileStartForm(WithCaptcha):
    national_code = national_code_field()
    mobile = mobile_field(_l("New mobile number"))


class ChangeMobileConfirmForm(SecretForm):
    code = code_field()
    password = current_password_field()


# -- account ------------------------------------------------------------------------------------------


class ChangePasswordForm(NewPasswordMixin, SecretForm):
    current_password = current_password_field(_l("Current password"))
    password, password_confirm = new_password_fields()


class EmailForm(Form):
    email = StringField(
        _l("Email address"),
        validators=[InputRequired(_l("Enter your email address.")), Rule(normalize_email)],
        render_kw={"inputmode": "email", "autocomplete": "email", "dir": "ltr", "maxlength": 254},
    )


class AddressForm(Form):
    postal_address = TextAreaField(
        _l("Postal address"),
        validators=[DataRequired(_l("Enter your postal address.")), Length(max=500)],
        render_kw={"autocomplete": "street-address", "rows": 3},
    )
    postal_code = StringField(
        _l("Postal code"),
        filters=[ascii_digits],
        validators=[InputRequired(_l("Enter the postal code.")), Rule(normalize_postal_code)],
        render_kw={**NUMERIC, "autocomplete": "postal-code", "maxlength": 12},
    )


class TotpEnableForm(Form):
    code = code_field()


class TotpDisableForm(SecretForm):
    password = current_password_field()


class SupportForm(Form):
    name = StringField(_l("Your name"), validators=[DataRequired(_l("Enter your name.")), Length(max=200)])
    contact = StringField(
        _l("Mobile number or email, for our answer"),
        validators=[DataRequired(_l("Tell us how to reach you.")), Length(max=254)],
        render_kw={"dir": "ltr"},
    )
    subject = StringField(_l("Subject"), validators=[DataRequired(_l("Enter a subject.")), Length(max=200)])
    body = TextAreaField(
        _l("Message"), validators=[DataRequired(_l("Write your message.")), Length(max=5000)], render_kw={"rows": 6}
    )


class ConsentForm(Form):
    decision = StringField(validators=[InputRequired()])

    def validate_decision(self, field: StringField) -> None:
        if field.data not in {"allow", "deny"}:
            raise ValidationError("decision must be allow or deny")


class PasskeyForm(Form):
    """The answer of the browser's passkey ceremony (JSON, put here by static/passkeys.js)."""

    credential = HiddenField(validators=[DataRequired(), Length(max=64 * 1024)])
    tx = HiddenField()


class PasskeyAddForm(PasskeyForm):
    name = StringField(
        _l("A name for this passkey"),
        validators=[Length(max=64, message=_l("At most 64 characters."))],
        render_kw={"maxlength": 64, "autocomplete": "off"},
    )


class DisclosureFilterForm(Form):
    """The disclosure ledger's filters and page, read from the address (a GET form, which changes nothing: no CSRF
    token). The view sets the clients to choose from."""

    class Meta:
        csrf = False

    client = SelectField(_l("App"), choices=[], default="")
    period = SelectField(
        _l("Period"),
        choices=[
            SelectChoice("all", _l("Any time")),
            SelectChoice("30d", _l("The last 30 days")),
            SelectChoice("1y", _l("The last year")),
        ],
        default="all",
    )
    page = IntegerField(validators=[Optional(), NumberRange(min=1, message=_l("There is no such page."))])


class ButtonForm(Form):
    """A form that is only a button: CSRF token and nothing else (logout, revoke, send again...)."""


LogoutForm = ButtonForm
