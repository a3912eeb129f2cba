"""Input rules as properties: digits in any script, national-code check digits, mobile numbers, passwords,
birth dates. The reference check digit is computed here independently of the provider's code."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idp.rules import InvalidInput
from idp.rules.birthdate import parse_iso_birthdate
from idp.rules.digits import to_ascii_digits, to_persian_digits
from idp.rules.mobile import normalize_mobile
from idp.rules.national_code import normalize_national_code
from idp.rules.password import check_password

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
@given(st.text(min_size=8, max_size=256).filter(lambda p: to_ascii_digits(p).strip() not in UNRELATED_PERSONAL))
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
