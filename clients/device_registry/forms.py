"""The registry's forms. IMEIs go through rp_kit's ``normalize_imei`` (15 digits, Luhn check digit, Persian
and Arabic-Indic digits accepted); every error is attached to the field it is about."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, StringField, TextAreaField
from wtforms.validators import Length, ValidationError

from ..rp_kit.dates import persian_digits
from ..rp_kit.validators import Invalid, normalize_imei
from .models import Device

DESCRIPTION_MAX = 1000


def _imei(field: Field, required: bool) -> None:
    """Normalise the field to 15 ASCII digits, or None when it is optional and left empty."""
    raw = (field.data or "").strip()
    if not raw and not required:
        field.data = None
        return
    try:
        field.data = normalize_imei(raw)
    except Invalid as error:
        raise ValidationError(str(error)) from None


def _required_imei(form: FlaskForm, field: Field) -> None:
    _imei(field, required=True)


def _optional_imei(form: FlaskForm, field: Field) -> None:
    _imei(field, required=False)


def _description(form: FlaskForm, field: Field) -> None:
    field.data = (field.data or "").strip()
    if not field.data:
        raise ValidationError("شرح درخواست را بنویسید.")


def _fa_number(value: int) -> str:
    return persian_digits(f"{value:,}").replace(",", "٬")


def _imei_field(label: str, required: bool = True) -> StringField:
    return StringField(label, validators=[_required_imei if required else _optional_imei])


def _description_field() -> TextAreaField:
    return TextAreaField(
        "شرح درخواست",
        validators=[
            _description,
            Length(max=DESCRIPTION_MAX, message=f"شرح درخواست حداکثر {_fa_number(DESCRIPTION_MAX)} نویسه است."),
        ],
    )


class InquiryForm(FlaskForm):
    """استعلام اصالت دستگاه: is this IMEI registered?"""

    imei = _imei_field("شناسه دستگاه (IMEI)")


class ImeiMismatchForm(FlaskForm):
    """«شناسه دستگاه (IMEI) من با شناسه دستگاه ثبت شده در همتا تطابق ندارد»."""

    device_imei1 = _imei_field("IMEI اول درست گوشی (با شماره گیری ‎*#06#‎)")
    device_imei2 = _imei_field("IMEI دوم درست گوشی (با شماره گیری ‎*#06#‎)", required=False)
    registered_imei1 = _imei_field("IMEI اول ثبت شده در همتا")
    registered_imei2 = _imei_field("IMEI دوم ثبت شده در همتا", required=False)
    description = _description_field()

    def __init__(self, devices: list[Device], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.devices = devices
        self.device: Device | None = None

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        registered1, registered2 = self.registered_imei1, self.registered_imei2
        if not registered1.errors and not registered2.errors and registered1.data:
            self.device = self._registered_device()
        if self.device is None:
            return False
        device1, device2 = self.device_imei1, self.device_imei2
        if not self.device.dual_sim:
            for field in (device2, registered2):
                if field.data and not field.errors:
                    field.errors.append("این دستگاه تک‌سیم‌کارته است و یک شناسه دارد؛ شناسهٔ دوم را خالی بگذارید.")
                    valid = False
        else:
            if not device2.data and not device2.errors:
                device2.errors.append("این دستگاه دوسیم‌کارته است؛ شناسهٔ دوم دستگاه را هم وارد کنید.")
                valid = False
            elif device1.data and device2.data and device1.data == device2.data:
                device2.errors.append("دو شناسهٔ دستگاه نمی‌توانند یکسان باشند؛ شناسهٔ دوم را از ‎*#06#‎ بخوانید.")
                valid = False
        if valid and {device1.data, device2.data} - {None} == self.device.imeis:
            device1.errors.append("شناسه‌های دستگاه با شناسه‌های ثبت‌شده در همتا یکسان است و مغایرتی وجود ندارد.")
            valid = False
        return valid

    def _registered_device(self) -> Device | None:
        """The user's device whose IMEIs are the registered pair (in either order), or None with an error."""
        first, second = self.registered_imei1.data, self.registered_imei2.data
        device = next((d for d in self.devices if first in d.imeis), None)
        if device is None:
            self.registered_imei1.errors.append("دستگاهی با این شناسه به نام شما در سامانه همتا ثبت نشده است.")
            return None
        if device.dual_sim:
            if not second:
                self.registered_imei2.errors.append(
                    "این دستگاه دوسیم‌کارته است؛ هر دو شناسهٔ ثبت‌شده در همتا را وارد کنید."
                )
                return None
            if {first, second} != device.imeis:
                self.registered_imei2.errors.append(
                    "این دو شناسه با هم متعلق به یکی از دستگاه‌های ثبت‌شده به نام شما نیستند."
                )
                return None
        return device


class DeviceTicketForm(FlaskForm):
    """The other subjects: one IMEI and a description."""

    imei = _imei_field("شناسه دستگاه (IMEI) با شماره گیری ‎*#06#‎")
    description = _description_field()
