"""Input rules of the example sites. Each raises :class:`Invalid` with a message in Persian.

They accept Persian (۰-۹) and Arabic-Indic (٠-٩) digits, as every Iranian form should.
"""

from __future__ import annotations

_TO_ASCII = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


class Invalid(ValueError):
    pass


def ascii_digits(text: str) -> str:
    return text.translate(_TO_ASCII)


def _compact(raw: str) -> str:
    return ascii_digits(raw or "").strip().replace(" ", "").replace("-", "")


def normalize_sheba(raw: str) -> str:
    """An Iranian IBAN (شماره شبا): ``IR`` and 24 digits, 26 characters, ISO 13616 mod-97 check."""
    value = _compact(raw).upper()
    if not value:
        raise Invalid("شماره شبا را وارد کنید.")
    if value.isdigit() and len(value) == 24:
        value = "IR" + value  # people often type it without the IR
    if len(value) != 26 or not value.startswith("IR") or not value[2:].isdigit():
        raise Invalid("شماره شبا ۲۶ نویسه است: IR و ۲۴ رقم.")
    rearranged = value[4:] + value[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    if int(number) % 97 != 1:
        raise Invalid("این شماره شبا معتبر نیست؛ رقم‌ها را بررسی کنید.")
    return value


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalize_imei(raw: str) -> str:
    """A device's IMEI (شناسه دستگاه): 15 digits whose last is a Luhn check digit."""
    value = _compact(raw)
    if not value:
        raise Invalid("شناسه دستگاه (IMEI) را وارد کنید.")
    if not value.isdigit() or len(value) != 15:
        raise Invalid("شناسه دستگاه ۱۵ رقم است؛ با شمارهٔ ‎*#06#‎ آن را ببینید.")
    if not luhn_ok(value):
        raise Invalid("این شناسه دستگاه معتبر نیست؛ رقم‌ها را دوباره بررسی کنید.")
    return value


def normalize_postal_code(raw: str) -> str:
    """A postal code: ten digits; Iran Post never uses 0 or 2 in the first five."""
    value = _compact(raw)
    if not value:
        raise Invalid("کد پستی را وارد کنید.")
    if not value.isdigit() or len(value) != 10:
        raise Invalid("کد پستی ده رقم است.")
    if "0" in value[:5] or "2" in value[:5] or len(set(value)) == 1:
        raise Invalid("این کد پستی معتبر نیست؛ رقم‌ها را بررسی کنید.")
    return value
