"""Languages: Persian first (right to left, Persian digits, Jalali dates), English second."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import jdatetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, request, session
from flask_babel import get_locale
from markupsafe import Markup

from .config import SUPPORTED_LOCALES
from .rules.digits import to_persian_digits
from .rules.mobile import mask_mobile, national_format

log = logging.getLogger(__name__)
TRANSLATIONS_DIR = Path(__file__).parent / "translations"

_JALALI_MONTHS_FA = (
    "فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
    "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند",
)  # fmt: skip


def select_locale() -> str:
    """The user's choice (switcher or ``ui_locales``), else the browser's, else the configured default."""
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return chosen
    best = request.accept_languages.best_match(SUPPORTED_LOCALES) if request else None
    return best or current_app.extensions["idp"].config.ui.default_locale


def first_supported(ui_locales: str | None) -> str | None:
    """The first of a space-separated list of BCP 47 tags that we speak (``fa-IR`` counts as ``fa``)."""
    for tag in (ui_locales or "").split():
        language = tag.split("-")[0].lower()
        if language in SUPPORTED_LOCALES:
            return language
    return None


def is_rtl() -> bool:
    return str(get_locale()) == "fa"


def localize_digits(value: object) -> str:
    """Numbers in running text use the reader's digits."""
    text = str(value)
    return to_persian_digits(text) if is_rtl() else text


def display_mobile(e164: str, masked: bool = False) -> str:
    """A mobile number as people write it (``0912 …``), optionally masked (``0912***4567``), in the reader's
    digits, wrapped in a left-to-right isolate so it does not read backwards inside Persian text."""
    shown = mask_mobile(e164) if masked else national_format(e164)
    return "\u2066" + localize_digits(shown) + "\u2069"


def isolate(value: object, direction: str | None = None) -> Markup:
    """``value`` in a ``<bdi>``: text of the other direction (a Latin name or a number in Persian) keeps its own
    order and leaves the sentence around it in its order; ``direction="ltr"`` for text that is always left to
    right whatever its characters (codes, numbers)."""
    if direction is None:
        return Markup("<bdi>%s</bdi>") % (value,)
    return Markup('<bdi dir="%s">%s</bdi>') % (direction, value)


def format_date(value: dt.date | dt.datetime | None) -> str:
    """A date as the reader reads it: Jalali with Persian digits in Persian, ISO Gregorian in English."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.date()
    if not is_rtl():
        return value.isoformat()
    jalali = jdatetime.date.fromgregorian(date=value)
    return to_persian_digits(f"{jalali.day} {_JALALI_MONTHS_FA[jalali.month - 1]} {jalali.year}")


TEHRAN = ZoneInfo("Asia/Tehran")


def format_moment(value: dt.datetime | None) -> str:
    """A moment as the reader reads it, in Iran's time: Jalali date and Persian digits in Persian."""
    if value is None:
        return ""
    local = value.astimezone(TEHRAN)
    if not is_rtl():
        return local.strftime("%Y-%m-%d %H:%M")
    return f"{format_date(local.date())}، {to_persian_digits(local.strftime('%H:%M'))}"


#: Monday first, as Python counts the days of the week (not strftime's %A, which follows the process's locale).
_WEEKDAYS_FA = ("دوشنبه", "سه‌شنبه", "چهارشنبه", "پنجشنبه", "جمعه", "شنبه", "یکشنبه")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def format_moment_with_weekday(value: dt.datetime | None) -> str:
    """:func:`format_moment` with the day of the week first: "سه‌شنبه ۱۸ آذر ۱۴۰۵، ۱۰:۳۰", "Tuesday 2026-12-09 10:30"."""
    if value is None:
        return ""
    local = value.astimezone(TEHRAN)
    if not is_rtl():
        return f"{_WEEKDAYS_EN[local.weekday()]} {format_moment(value)}"
    return f"{_WEEKDAYS_FA[local.weekday()]} {format_moment(value)}"


def compile_translations(directory: Path = TRANSLATIONS_DIR) -> None:
    """Compile each ``messages.po`` whose ``.mo`` is missing or older, so a fresh clone needs no extra step.

    An installed wheel has no ``.po`` to compile: it carries the ``.mo`` files, compiled when it was built
    (setup.py), and nothing is written into its site-packages."""
    for po_path in directory.glob("*/LC_MESSAGES/messages.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        try:
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file)
            # Write beside and rename: another process starting at the same moment never reads half a file.
            partial = mo_path.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("wb") as mo_file:
                write_mo(mo_file, catalog)
            os.replace(partial, mo_path)
        except OSError as error:  # a read-only install: serve the untranslated text rather than fail
            log.warning("could not compile %s: %s", po_path, error)


def install(app: Flask) -> None:
    from .oidc.claim_labels import claim_label

    app.jinja_env.filters["digits"] = localize_digits
    app.jinja_env.filters["date"] = format_date
    app.jinja_env.filters["claim_label"] = claim_label
    app.jinja_env.filters["when"] = format_moment
    app.jinja_env.filters["when_with_weekday"] = format_moment_with_weekday
    app.jinja_env.filters["mobile"] = display_mobile
    app.jinja_env.filters["isolate"] = isolate

    @app.context_processor
    def locale_context() -> dict[str, object]:
        locale = str(get_locale())
        ttl = current_app.extensions["idp"].config.otp.ttl
        return {
            "locale": locale,
            "rtl": locale == "fa",
            "text_direction": "rtl" if locale == "fa" else "ltr",
            "code_minutes": localize_digits(max(1, round(ttl / 60))),
        }
