"""Input rules as properties: digits in any script, national-code check digits, mobile numbers, passwords,
birth dates. The reference check digit is computed here independently of the provider's code."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idp.rules import InvalidInput
from idp.rules.birthdate import gregorian_to_jalali, jalali_to_gregorian, parse_iso_birthdate
from idp.rules.digits import to_ascii_digits, to_persian_digits
from idp.rules.email import normalize_email
from idp.rules.mobile import normalize_mobile
from idp.rules.national_code import normalize_national_code
from idp.rules.password import check_password, common_passwords
from idp.rules.postal_code import normalize_postal_code

PERSIAN = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
ASCII = "0123456789"
TO_ASCII = {**dict(zip(PERSIAN, ASCII, strict=True)), **dict(zip(ARABIC_INDIC, ASCII, strict=True))}

# No per-example deadline: these are microsecond functions, and a loaded test machine must not make them flaky.
relaxed = settings(deadline=None)

digits = st.sampled_from(ASCII)
any_digits = st.text(alphabet=ASCII + PERSIAN + ARABIC_INDIC)


def reference_check_digit(first_nine: str) -> int:
    total = sum(int(digit) * weight for digit, weight in zip(first_nine, range(10, 1, -1), strict=True))
    remainder = total % 11
    return remainder if remainder < 2 else 11 - remainder


def in_script(text: str, script: str) -> str:
    return text.translate(str.maketrans(ASCII, script))


def reason_of(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidInput) as raised:
        call(*args, **kwargs)
    return raised.value.reason


# -- digits ----------------------------------------------------------------------------------------------


@relaxed
@given(st.text())
def test_to_ascii_digits_maps_only_persian_and_arabic_indic_digits(text):
    result = to_ascii_digits(text)
    assert len(result) == len(text)
    for original, mapped in zip(text, result, strict=True):
        assert mapped == TO_ASCII.get(original, original)


@relaxed
@given(any_digits)
def test_to_ascii_digits_gives_ascii_digits(text):
    result = to_ascii_digits(text)
    assert result.isascii()
    assert all(c in ASCII for c in result)


@relaxed
@given(st.text(alphabet=ASCII))
def test_persian_digits_round_trip(text):
    persian = to_persian_digits(text)
    assert all(c in PERSIAN for c in persian)
    assert to_ascii_digits(persian) == text


def test_known_digit_mappings():
    assert to_ascii_digits("۰۱۲۳۴۵۶۷۸۹") == "0123456789"
    assert to_ascii_digits("٠١٢٣٤٥٦٧٨٩") == "0123456789"
    assert to_ascii_digits("کد ۱۲a٣") == "کد 12a3"


# -- national code ---------------------------------------------------------------------------------------

prefixes = st.text(alphabet=ASCII, min_size=9, max_size=9).filter(lambda p: len(set(p)) > 1)


@relaxed
@given(prefixes)
def test_prefix_plus_check_digit_is_accepted_and_keeps_leading_zeros(prefix):
    code = prefix + str(reference_check_digit(prefix))
    assert normalize_national_code(code) == code
    assert len(normalize_national_code(code)) == 10


@relaxed
@given(prefixes, st.sampled_from([PERSIAN, ARABIC_INDIC]))
def test_national_code_in_persian_or_arabic_digits(prefix, script):
    code = prefix + str(reference_check_digit(prefix))
    assert normalize_national_code(in_script(code, script)) == code
    assert normalize_national_code(f" {code[:3]}-{code[3:9]}-{code[9]} ") == code


@relaxed
@given(prefixes, digits)
def test_any_other_last_digit_is_refused(prefix, last):
    if int(last) == reference_check_digit(prefix):
        last = str((int(last) + 1) % 10)
    assert reason_of(normalize_national_code, prefix + last) == "national_code.invalid"


@relaxed
@given(st.text(alphabet=ASCII, min_size=1, max_size=20).filter(lambda s: len(s) != 10))
def test_wrong_length_is_refused(code):
    assert reason_of(normalize_national_code, code) == "national_code.format"


@pytest.mark.parametrize("digit", list(ASCII))
def test_all_same_digit_codes_are_refused(digit):
    assert reason_of(normalize_national_code, digit * 10) == "national_code.invalid"


@pytest.mark.parametrize("raw", ["", "   ", "00123456a9", "00123456.9", "００１２３４５６７９"])
def test_national_code_garbage_is_refused(raw):
    with pytest.raises(InvalidInput):
        normalize_national_code(raw)


def test_known_national_codes():
    assert normalize_national_code("0012345679") == "0012345679"
    assert normalize_national_code("۰۰۱۲۳۴۵۶۷۹") == "0012345679"
    assert reason_of(normalize_national_code, "0012345678") == "national_code.invalid"


# -- mobile ----------------------------------------------------------------------------------------------

subscriber = st.text(alphabet=ASCII, min_size=9, max_size=9).map(lambda rest: "9" + rest)


def forms_of(national: str) -> list[str]:
    spaced = f"{national[:3]} {national[3:6]} {national[6:]}"
    return [
        national,
        "0" + national,
        "+98" + national,
        "0098" + national,
        "98" + national,
        "+98 " + spaced,
        "0" + spaced,
        f"0{national[:3]}-{national[3:6]}-{national[6:]}",
        f"(+98) {spaced}",
        in_script("0" + national, PERSIAN),
        in_script("+98" + national, ARABIC_INDIC),
        in_script("0098" + national, PERSIAN),
    ]


@relaxed
@given(subscriber)
def test_every_form_of_a_number_gives_one_e164_value(national):
    values = {normalize_mobile(form) for form in forms_of(national)}
    assert values == {"+98" + national}


@relaxed
@given(st.sampled_from("012345678"), st.text(alphabet=ASCII, min_size=9, max_size=9))
def test_numbers_not_starting_with_9_are_refused(first, rest):
    national = first + rest
    for form in ("0" + national, "+98" + national, "0098" + national):
        assert reason_of(normalize_mobile, form) == "mobile.format", form


@relaxed
@given(st.text(alphabet=ASCII, min_size=0, max_size=14).filter(lambda s: len(s) != 9).map(lambda s: "9" + s))
def test_numbers_of_wrong_length_are_refused(national):
    for form in ("0" + national, "+98" + national, "0098" + national):
        assert reason_of(normalize_mobile, form) == "mobile.format", form


@pytest.mark.parametrize("raw", ["+19121234567", "+44 912 123 4567", "0912abc4567", "+98912123456x"])
def test_foreign_or_garbage_mobiles_are_refused(raw):
    assert reason_of(normalize_mobile, raw) == "mobile.format"


@pytest.mark.parametrize("raw", ["", "   ", " - "])
def test_empty_mobile(raw):
    assert reason_of(normalize_mobile, raw) == "mobile.required"


# -- password --------------------------------------------------------------------------------------------

PERSONAL = {"national_code": "0012345679", "mobile": "+989121234567", "birthdate": dt.date(1990, 3, 21)}


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "password.too_short"),
        ("seven77", "password.too_short"),
        ("x" * 257, "password.too_long"),
        ("0012345679", "password.personal"),
        ("۰۰۱۲۳۴۵۶۷۹", "password.personal"),
        (" 0012345679 ", "password.personal"),
        ("+989121234567", "password.personal"),
        ("09121234567", "password.personal"),
        ("9121234567", "password.personal"),
        ("۰۹۱۲۱۲۳۴۵۶۷", "password.personal"),
        ("1990-03-21", "password.personal"),
        ("19900321", "password.personal"),
    ],
)
def test_bad_passwords(password, reason):
    assert reason_of(check_password, password, **PERSONAL) == reason


@pytest.mark.parametrize(
    "password", ["eight888", "x" * 256, "correct horse battery", "رمز عبور طولانی", "0012345679!", "00123456790"]
)
def test_good_passwords(password):
    check_password(password, **PERSONAL)


def test_password_without_birthdate():
    check_password("1990-03-21", national_code="0012345679", mobile="+989121234567", birthdate=None)
    assert reason_of(check_password, "0012345679", national_code="0012345679", mobile="+989121234567", birthdate=None)


UNRELATED_PERSONAL = {"0012345679", "+989351112233", "9351112233", "09351112233"}


@relaxed
@given(
    st.text(min_size=8, max_size=256).filter(
        lambda p: (
            to_ascii_digits(p).strip() not in UNRELATED_PERSONAL
            and to_ascii_digits(p).strip().lower() not in common_passwords()
        )
    )
)
def test_long_enough_unrelated_passwords_are_accepted(password):
    check_password(password, national_code="0012345679", mobile="+989351112233", birthdate=None)


# -- birth date ------------------------------------------------------------------------------------------

TODAY = dt.date(2026, 5, 1)


@relaxed
@given(st.dates(min_value=dt.date(TODAY.year - 130, 1, 1), max_value=TODAY - dt.timedelta(days=1)))
def test_past_dates_round_trip(date):
    assert parse_iso_birthdate(date.isoformat(), TODAY) == date
    assert parse_iso_birthdate(to_persian_digits(date.isoformat()), TODAY) == date


@relaxed
@given(st.dates(min_value=TODAY, max_value=dt.date(2200, 1, 1)))
def test_today_and_future_are_refused(date):
    assert reason_of(parse_iso_birthdate, date.isoformat(), TODAY) == "birthdate.future"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1990-02-30", "birthdate.format"),
        ("1990-13-01", "birthdate.format"),
        ("21/03/1990", "birthdate.format"),
        ("yesterday", "birthdate.format"),
        ("", "birthdate.format"),
        ("1369-01-01", "birthdate.too_old"),
        ("1895-12-31", "birthdate.too_old"),
    ],
)
def test_bad_birthdates(raw, reason):
    assert reason_of(parse_iso_birthdate, raw, TODAY) == reason


def test_birthdate_with_spaces_and_arabic_digits():
    assert parse_iso_birthdate(" ١٩٩٠-٠٣-٢١ ", TODAY) == dt.date(1990, 3, 21)


# -- Jalali birth dates (jalali_to_gregorian) -------------------------------------------------------------
#
# A reference Jalali calendar, independent of jdatetime: the year starts on the Gregorian date that
# jalaali-js's "jalCal" computes from the 33-year cycles and their breaks (Borkowski's algorithm); months
# 1-6 have 31 days, 7-11 have 30, Esfand 29 or, in a leap year, 30.

_JALALI_BREAKS = (-61, 9, 38, 199, 426, 686, 756, 818, 1111, 1181, 1210, 1635, 2060, 2097, 2192, 2262, 2324)


def _jalali_year(jy: int) -> tuple[bool, dt.date]:
    """(leap, first day) of Jalali year ``jy``, for years between 1 and 2300."""
    gy = jy + 621
    leap_j = -14
    jp = _JALALI_BREAKS[0]
    jump = 0
    for jm in _JALALI_BREAKS[1:]:
        jump = jm - jp
        if jy < jm:
            break
        leap_j += (jump // 33) * 8 + (jump % 33) // 4
        jp = jm
    n = jy - jp
    leap_j += (n // 33) * 8 + ((n % 33) + 3) // 4
    if jump % 33 == 4 and jump - n == 4:
        leap_j += 1
    leap_g = gy // 4 - ((gy // 100 + 1) * 3) // 4 - 150
    march = 20 + leap_j - leap_g
    if jump - n < 6:
        n = n - jump + ((jump + 4) // 33) * 33
    leap = ((n + 1) % 33 - 1) % 4 == 0 and (n + 1) % 33 != 0
    return leap, dt.date(gy, 3, march)


def _jalali_month_lengths(jy: int) -> list[int]:
    return [31] * 6 + [30] * 5 + [30 if _jalali_year(jy)[0] else 29]


def reference_to_jalali(date: dt.date) -> tuple[int, int, int]:
    jy = date.year - 621
    start = _jalali_year(jy)[1]
    if date < start:
        jy -= 1
        start = _jalali_year(jy)[1]
    days = (date - start).days
    for month, length in enumerate(_jalali_month_lengths(jy), start=1):
        if days < length:
            return jy, month, days + 1
        days -= length
    raise AssertionError(f"{date} is past the end of Jalali year {jy}")


def test_reference_jalali_calendar_on_known_dates():
    # Nowruz and Esfand 30 of known years, from the official Iranian calendar.
    assert reference_to_jalali(dt.date(1990, 3, 21)) == (1369, 1, 1)
    assert reference_to_jalali(dt.date(2025, 3, 20)) == (1403, 12, 30)
    assert reference_to_jalali(dt.date(2025, 3, 21)) == (1404, 1, 1)
    assert reference_to_jalali(dt.date(2021, 3, 20)) == (1399, 12, 30)
    assert reference_to_jalali(dt.date(1979, 2, 11)) == (1357, 11, 22)
    assert [y for y in range(1395, 1410) if _jalali_year(y)[0]] == [1395, 1399, 1403, 1408]


past_birthdates = st.dates(min_value=dt.date(TODAY.year - 130, 1, 1), max_value=TODAY - dt.timedelta(days=1))


@relaxed
@given(past_birthdates)
def test_every_past_jalali_date_round_trips(date):
    year, month, day = reference_to_jalali(date)
    assert gregorian_to_jalali(date) == (year, month, day)
    assert jalali_to_gregorian(year, month, day, TODAY) == date
    assert jalali_to_gregorian(str(year), str(month), str(day), TODAY) == date
    assert jalali_to_gregorian(str(year), f"{month:02d}", f"{day:02d}", TODAY) == date
    assert jalali_to_gregorian(f" {year} ", f" {month} ", f" {day} ", TODAY) == date


@relaxed
@given(past_birthdates, st.sampled_from([PERSIAN, ARABIC_INDIC]), st.booleans())
def test_jalali_dates_in_persian_or_arabic_indic_digits(date, script, padded):
    year, month, day = gregorian_to_jalali(date)
    parts = (str(year), f"{month:02d}" if padded else str(month), f"{day:02d}" if padded else str(day))
    assert jalali_to_gregorian(*(in_script(part, script) for part in parts), TODAY) == date


jalali_years = st.integers(min_value=TODAY.year - 621 - 120, max_value=TODAY.year - 622)


@relaxed
@given(jalali_years, st.sampled_from([0, 13, 14, 99]), st.integers(min_value=1, max_value=29))
def test_month_out_of_range_is_invalid(year, month, day):
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.invalid"


@relaxed
@given(jalali_years, st.integers(min_value=1, max_value=12), st.sampled_from([0, 32, 40, 99]))
def test_day_out_of_range_is_invalid(year, month, day):
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.invalid"


@relaxed
@given(jalali_years, st.integers(min_value=7, max_value=12))
def test_day_31_of_the_second_half_year_is_invalid(year, month):
    assert reason_of(jalali_to_gregorian, year, month, 31, TODAY) == "birthdate.invalid"
    assert reason_of(jalali_to_gregorian, in_script(str(year), PERSIAN), month, "۳۱", TODAY) == "birthdate.invalid"


@relaxed
@given(jalali_years, st.integers(min_value=1, max_value=6))
def test_day_31_of_the_first_half_year_exists(year, month):
    date = jalali_to_gregorian(year, month, 31, TODAY)
    assert reference_to_jalali(date) == (year, month, 31)


@relaxed
@given(jalali_years)
def test_esfand_30_exists_only_in_leap_years(year):
    leap = _jalali_year(year)[0]
    if leap:
        date = jalali_to_gregorian(year, 12, 30, TODAY)
        assert reference_to_jalali(date) == (year, 12, 30)
        assert date + dt.timedelta(days=1) == _jalali_year(year + 1)[1]
    else:
        assert reason_of(jalali_to_gregorian, year, 12, 30, TODAY) == "birthdate.invalid"
        assert jalali_to_gregorian(year, 12, 29, TODAY) + dt.timedelta(days=1) == _jalali_year(year + 1)[1]


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [(1402, 12, 30), (1401, 12, 30), (1400, 12, 30), (1398, 12, 30), (1369, 7, 31), (1369, 12, 31), (1369, 0, 10)],
)
def test_known_nonexistent_jalali_dates(year, month, day):
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.invalid"


@pytest.mark.parametrize(("year", "month", "day"), [("x", 1, 1), (1369, "a", 1), (1369, 1, "1.5"), (13690, 1, 1)])
def test_jalali_parts_that_are_not_numbers_are_invalid(year, month, day):
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.invalid"


@pytest.mark.parametrize(("year", "month", "day"), [("", 1, 1), (1369, "", 1), (1369, 1, " "), (None, 1, 1)])
def test_missing_jalali_parts_are_required(year, month, day):
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.required"


@relaxed
@given(st.dates(min_value=TODAY, max_value=dt.date(2200, 1, 1)))
def test_today_and_future_jalali_dates_are_refused(date):
    year, month, day = reference_to_jalali(date)
    assert reason_of(jalali_to_gregorian, year, month, day, TODAY) == "birthdate.future"
    assert reason_of(jalali_to_gregorian, in_script(str(year), PERSIAN), month, day, TODAY) == "birthdate.future"


def test_known_jalali_dates():
    assert jalali_to_gregorian("۱۳۶۹", "۰۱", "۰۱", TODAY) == dt.date(1990, 3, 21)
    assert jalali_to_gregorian("١٣٥٨", "٩", "١٤", TODAY) == dt.date(1979, 12, 5)
    assert jalali_to_gregorian(1403, 12, 30, TODAY) == dt.date(2025, 3, 20)
    assert reason_of(jalali_to_gregorian, 1405, 2, 11, TODAY) == "birthdate.future"  # TODAY itself
    assert jalali_to_gregorian(1405, 2, 10, TODAY) == TODAY - dt.timedelta(days=1)


# -- postal codes ----------------------------------------------------------------------------------------

POSTAL_FIRST = "13456789"  # Iran Post never uses 0 or 2 in the first five digits

valid_postal_codes = st.tuples(
    st.text(alphabet=POSTAL_FIRST, min_size=5, max_size=5), st.text(alphabet=ASCII, min_size=5, max_size=5)
).map("".join)


@relaxed
@given(valid_postal_codes.filter(lambda c: len(set(c)) > 1))
def test_valid_postal_codes_are_accepted(code):
    assert normalize_postal_code(code) == code
    assert normalize_postal_code(in_script(code, PERSIAN)) == code
    assert normalize_postal_code(in_script(code, ARABIC_INDIC)) == code
    assert normalize_postal_code(f" {code[:5]}-{code[5:]} ") == code


@relaxed
@given(
    st.text(alphabet=ASCII, min_size=5, max_size=5).filter(lambda first: "0" in first or "2" in first),
    st.text(alphabet=ASCII, min_size=5, max_size=5),
)
def test_postal_codes_with_0_or_2_in_the_first_five_are_invalid(first, last):
    assert reason_of(normalize_postal_code, first + last) == "postal_code.invalid"
    assert reason_of(normalize_postal_code, in_script(first + last, PERSIAN)) == "postal_code.invalid"


@relaxed
@given(st.text(alphabet=ASCII, min_size=1, max_size=20).filter(lambda s: len(s) != 10))
def test_postal_codes_of_wrong_length_are_refused(code):
    assert reason_of(normalize_postal_code, code) == "postal_code.format"


@pytest.mark.parametrize("raw", ["13456a7891", "1345.67891", "１３４５６７８９１０", "+345678910"])
def test_postal_codes_with_other_characters_are_refused(raw):
    assert reason_of(normalize_postal_code, raw) == "postal_code.format"


@pytest.mark.parametrize("raw", ["", "   ", " - "])
def test_empty_postal_code_is_required(raw):
    assert reason_of(normalize_postal_code, raw) == "postal_code.required"


# -- email -----------------------------------------------------------------------------------------------

LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-"
LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

email_locals = st.text(alphabet=LOCAL_CHARS, min_size=1, max_size=64)
email_domains = st.lists(st.text(alphabet=LABEL_CHARS, min_size=1, max_size=20), min_size=2, max_size=4).map(".".join)


@relaxed
@given(email_locals, email_domains, st.sampled_from(["", " ", "\t", "  \n"]))
def test_valid_emails_keep_the_local_part_and_lower_the_domain(local, domain, space):
    address = f"{local}@{domain}"
    assert normalize_email(f"{space}{address}{space}") == f"{local}@{domain.lower()}"


@relaxed
@given(email_locals, email_domains)
def test_normalize_email_is_idempotent(local, domain):
    once = normalize_email(f"{local}@{domain}")
    assert normalize_email(once) == once


@pytest.mark.parametrize(
    "raw",
    [
        "ali",
        "ali@",
        "@example.com",
        "ali@example",
        "ali@@example.com",
        "ali@exa@mple.com",
        "a li@example.com",
        "ali@exa mple.com",
        "ali@example..com",
        "ali@.example.com",
        "ali@example.com.",
        "x" * 65 + "@example.com",
        "ali@" + "a" * 250 + ".com",
    ],
)
def test_malformed_emails_are_refused(raw):
    assert reason_of(normalize_email, raw) == "email.format"


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_email_is_required(raw):
    assert reason_of(normalize_email, raw) == "email.required"


# -- passwords: common ones and Jalali birth dates -------------------------------------------------------

COMMON_LONG = sorted(p for p in common_passwords() if len(p) >= 8)


@relaxed
@given(st.sampled_from(COMMON_LONG), st.randoms(use_true_random=False))
def test_common_passwords_are_refused_in_any_case(password, rnd):
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in password)
    for candidate in (password, password.upper(), mixed, f" {mixed} "):
        assert reason_of(
            check_password, candidate, national_code="0499370899", mobile="+989351112233", birthdate=None
        ) == ("password.common"), candidate


def test_common_list_has_the_well_known_ones():
    for password in ("12345678", "password", "qwerty123", "iloveyou", "P@ssw0rd"):
        if len(password) >= 8:
            assert reason_of(
                check_password, password, national_code="0012345679", mobile="+989121234567", birthdate=None
            ) == ("password.common")


@relaxed
@given(past_birthdates, st.sampled_from([ASCII, PERSIAN, ARABIC_INDIC]))
def test_jalali_birthdate_as_password_is_refused(date, script):
    year, month, day = reference_to_jalali(date)
    for written in (f"{year}{month:02d}{day:02d}", f"{year}/{month:02d}/{day:02d}"):
        typed = in_script(written, script)
        assert reason_of(check_password, typed, national_code="0012345679", mobile="+989121234567", birthdate=date) == (
            "password.personal"
        ), typed


@relaxed
@given(past_birthdates)
def test_someone_elses_jalali_birthdate_is_not_personal(date):
    year, month, day = reference_to_jalali(date)
    other = date - dt.timedelta(days=1)
    password = f"{year}/{month:02d}/{day:02d}"
    check_password(password, national_code="0012345679", mobile="+989121234567", birthdate=other)


# -- every rule's reason has a message -------------------------------------------------------------------


def _reasons_raised_by_rules() -> set[str]:
    import ast
    from pathlib import Path

    import idp.rules

    reasons: set[str] = set()
    for path in Path(idp.rules.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InvalidInput":
                for argument in node.args:
                    for inner in ast.walk(argument):
                        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                            reasons.add(inner.value)
    return reasons


def test_every_rule_reason_has_a_message():
    from idp.web.forms import RULE_MESSAGES

    reasons = _reasons_raised_by_rules()
    # The scan must find the reasons these tests see raised.
    assert {
        "birthdate.invalid",
        "birthdate.required",
        "birthdate.future",
        "postal_code.invalid",
        "email.format",
        "password.common",
        "password.personal",
        "national_code.format",
        "mobile.format",
    } <= reasons
    missing = sorted(reason for reason in reasons if reason not in RULE_MESSAGES)
    assert missing == []
    for reason in reasons:
        assert str(RULE_MESSAGES[reason]).strip()
