"""The example sites' input rules (clients/rp_kit/validators.py): Sheba (Iranian IBAN), IMEI and postal code.

Valid examples are computed here with the published algorithms (ISO 13616 mod-97 for the Sheba, Luhn for
the IMEI), independently of the code under test. Every rule accepts Persian (۰-۹) and Arabic-Indic (٠-٩)
digits.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.rp_kit.validators import Invalid, ascii_digits, normalize_imei, normalize_postal_code, normalize_sheba

PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def persian(text: str) -> str:
    return text.translate(PERSIAN)


def arabic_indic(text: str) -> str:
    return text.translate(ARABIC_INDIC)


# -- reference algorithms -------------------------------------------------------------------------------


def iban_letters_to_digits(text: str) -> str:
    """ISO 13616: A=10 ... Z=35, digits as they are."""
    return "".join(str(ord(ch) - ord("A") + 10) if ch.isalpha() else ch for ch in text)


def iranian_iban(bban: str) -> str:
    """``IR`` + the two check digits + the 22-digit BBAN: check = 98 - (BBAN + "IR00" as a number) mod 97."""
    assert len(bban) == 22 and bban.isdigit()
    check = 98 - int(iban_letters_to_digits(bban + "IR00")) % 97
    return f"IR{check:02d}{bban}"


def luhn_check_digit(first_fourteen: str) -> str:
    """The Luhn digit that makes ``first_fourteen`` + digit valid (every second digit from the right doubled)."""
    total = 0
    for index, char in enumerate(reversed(first_fourteen)):
        value = int(char)
        if index % 2 == 0:  # these are doubled once the check digit is appended on the right
            value = value * 2
            value = value - 9 if value > 9 else value
        total += value
    return str((10 - total % 10) % 10)


def imei(first_fourteen: str) -> str:
    return first_fourteen + luhn_check_digit(first_fourteen)


def single_digit_changes(value: str, positions: range) -> list[str]:
    """Every string that differs from ``value`` in exactly one digit at one of ``positions``."""
    return [value[:i] + digit + value[i + 1 :] for i in positions for digit in "0123456789" if digit != value[i]]


# Known values from the reference algorithms, checked once by hand against published examples.
SHEBA = iranian_iban("0170000000123456789012")
SHEBA_2 = iranian_iban("0550012345678901234567")
IMEI = imei("49015420323751")  # the well-known example IMEI 490154203237518
IMEI_2 = imei("35209900176148")
assert SHEBA[-1] != SHEBA[-2] and IMEI[0] != IMEI[1]  # so that swapping them changes the number


def test_the_reference_algorithms_match_published_examples():
    assert IMEI == "490154203237518"
    assert imei("35209900176148") == "352099001761481"
    # The IBAN registry's example for Germany, with the same mod-97 rule.
    assert 98 - int(iban_letters_to_digits("370400440532013000" + "DE00")) % 97 == 89
    assert int(iban_letters_to_digits(SHEBA[4:] + SHEBA[:4])) % 97 == 1


# -- Sheba ---------------------------------------------------------------------------------------------


def _spaced(value: str, sep: str) -> str:
    return sep.join(value[i : i + 4] for i in range(0, len(value), 4))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(SHEBA, id="plain"),
        pytest.param(SHEBA_2, id="another-bank"),
        pytest.param(_spaced(SHEBA, " "), id="groups-of-four"),
        pytest.param(_spaced(SHEBA, "-"), id="dashes"),
        pytest.param("  " + SHEBA + " ", id="surrounding-spaces"),
        pytest.param("ir" + SHEBA[2:], id="lower-case-ir"),
        pytest.param("Ir" + SHEBA[2:], id="mixed-case-ir"),
        pytest.param("IR" + persian(SHEBA[2:]), id="persian-digits"),
        pytest.param("IR" + arabic_indic(SHEBA[2:]), id="arabic-indic-digits"),
        pytest.param(_spaced("IR" + persian(SHEBA[2:]), " "), id="persian-digits-spaced"),
        pytest.param(SHEBA[2:], id="24-digits-without-ir"),
        pytest.param(persian(SHEBA[2:]), id="24-persian-digits-without-ir"),
    ],
)
def test_valid_sheba_is_normalized(raw):
    assert normalize_sheba(raw) == (SHEBA_2 if raw == SHEBA_2 else SHEBA)


def _with_check(value: str, check: str) -> str:
    return value[:2] + check + value[4:]


def _wrong_check(value: str) -> str:
    return _with_check(value, f"{(int(value[2:4]) + 1) % 100:02d}")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_wrong_check(SHEBA), id="wrong-check-digits"),
        pytest.param(_with_check(SHEBA, "00"), id="check-digits-00"),
        pytest.param(SHEBA[:-2] + SHEBA[-1] + SHEBA[-2], id="last-two-digits-swapped"),
        pytest.param(SHEBA[:-1], id="25-characters"),
        pytest.param(SHEBA + "0", id="27-characters"),
        pytest.param(SHEBA[2:-1], id="23-digits-without-ir"),
        pytest.param("DE89370400440532013000", id="german-iban"),
        pytest.param("DE" + SHEBA[2:], id="another-country-code-26-chars"),
        pytest.param(SHEBA[:10] + "A" + SHEBA[11:], id="letter-in-bban"),
        pytest.param("IRAB" + SHEBA[4:], id="letters-as-check-digits"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("IR", id="only-ir"),
        pytest.param(SHEBA.replace("I", "1", 1), id="digit-for-letter"),
    ],
)
def test_invalid_sheba_is_refused(raw):
    with pytest.raises(Invalid) as raised:
        normalize_sheba(raw)
    assert str(raised.value)  # a message for the form


def test_sheba_check_digits_that_pass_mod97_for_another_bban_are_refused():
    # The check digits of one account with the BBAN of another: the kind of slip a person makes.
    assert _with_check(SHEBA_2, SHEBA[2:4]) != SHEBA_2
    with pytest.raises(Invalid):
        normalize_sheba(_with_check(SHEBA_2, SHEBA[2:4]))


@given(st.text(alphabet="0123456789", min_size=22, max_size=22))
def test_computed_sheba_is_accepted_and_every_single_digit_change_refused(bban):
    valid = iranian_iban(bban)
    assert normalize_sheba(valid) == valid
    assert normalize_sheba(persian(valid)) == valid
    for changed in single_digit_changes(valid, range(2, 26)):
        with pytest.raises(Invalid):
            normalize_sheba(changed)


# -- IMEI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(IMEI, IMEI, id="plain"),
        pytest.param(IMEI_2, IMEI_2, id="another"),
        pytest.param(persian(IMEI), IMEI, id="persian-digits"),
        pytest.param(arabic_indic(IMEI), IMEI, id="arabic-indic-digits"),
        pytest.param("49 015420 323751 8", IMEI, id="spaces"),
        pytest.param("49-015420-323751-8", IMEI, id="dashes"),
        pytest.param(" " + persian("49 015420 323751 8") + " ", IMEI, id="persian-digits-spaced"),
        pytest.param(imei("00000000000000"), "000000000000000", id="all-zero"),
    ],
)
def test_valid_imei_is_normalized(raw, expected):
    assert normalize_imei(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(IMEI[:-1], id="14-digits"),
        pytest.param(IMEI + "0", id="16-digits"),
        pytest.param(IMEI[:-1] + str((int(IMEI[-1]) + 1) % 10), id="wrong-check-digit"),
        pytest.param(IMEI[:5] + "A" + IMEI[6:], id="letter"),
        pytest.param("ABCDEFGHIJKLMNO", id="letters-only"),
        pytest.param(IMEI[:7] + "." + IMEI[8:], id="punctuation"),
        pytest.param("", id="empty"),
        pytest.param("  ", id="blank"),
        pytest.param(IMEI[1] + IMEI[0] + IMEI[2:], id="two-digits-swapped"),
    ],
)
def test_invalid_imei_is_refused(raw):
    with pytest.raises(Invalid) as raised:
        normalize_imei(raw)
    assert str(raised.value)


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_computed_imei_is_accepted_and_every_single_digit_change_refused(first_fourteen):
    valid = imei(first_fourteen)
    assert normalize_imei(valid) == valid
    assert normalize_imei(arabic_indic(valid)) == valid
    for changed in single_digit_changes(valid, range(15)):
        with pytest.raises(Invalid):
            normalize_imei(changed)


# -- postal code ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("1345678901", "1345678901", id="plain"),
        pytest.param("9876543210", "9876543210", id="zero-and-two-in-the-last-five"),
        pytest.param("1111100000", "1111100000", id="last-five-zero"),
        pytest.param(persian("1345678901"), "1345678901", id="persian-digits"),
        pytest.param(arabic_indic("1345678901"), "1345678901", id="arabic-indic-digits"),
        pytest.param("13456-78901", "13456-78901".replace("-", ""), id="dash"),
        pytest.param(persian("13456-78901"), "1345678901", id="persian-digits-dash"),
        pytest.param(" 13456 78901 ", "1345678901", id="spaces"),
    ],
)
def test_valid_postal_code_is_normalized(raw, expected):
    assert normalize_postal_code(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("134567890", id="9-digits"),
        pytest.param("13456789012", id="11-digits"),
        pytest.param("0345678901", id="zero-first"),
        pytest.param("1345078901", id="zero-fifth"),
        pytest.param("2345678901", id="two-first"),
        pytest.param("1342678901", id="two-fourth"),
        pytest.param(persian("1302678901"), id="persian-zero-and-two"),
        pytest.param("13456A8901", id="letter"),
        pytest.param("abcdefghij", id="letters-only"),
        pytest.param("1111111111", id="all-ones"),
        pytest.param("9999999999", id="all-nines"),
        pytest.param(persian("3333333333"), id="all-same-persian"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
    ],
)
def test_invalid_postal_code_is_refused(raw):
    with pytest.raises(Invalid) as raised:
        normalize_postal_code(raw)
    assert str(raised.value)


ALLOWED_FIRST_FIVE = "13456789"


@given(
    st.text(alphabet=ALLOWED_FIRST_FIVE, min_size=5, max_size=5),
    st.text(alphabet="0123456789", min_size=5, max_size=5),
)
def test_postal_codes_without_0_or_2_in_the_first_five_are_accepted(first, last):
    code = first + last
    if len(set(code)) == 1:
        with pytest.raises(Invalid):
            normalize_postal_code(code)
    else:
        assert normalize_postal_code(persian(code)) == code


@given(
    st.text(alphabet=ALLOWED_FIRST_FIVE, min_size=5, max_size=5),
    st.text(alphabet="0123456789", min_size=5, max_size=5),
    st.integers(min_value=0, max_value=4),
    st.sampled_from("02"),
)
def test_a_0_or_2_in_the_first_five_is_refused(first, last, position, digit):
    code = first[:position] + digit + first[position + 1 :] + last
    with pytest.raises(Invalid):
        normalize_postal_code(code)


# -- digits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
        ("0123456789", "0123456789"),
        ("IR۱۲-٣4 ۵", "IR12-34 5"),
        ("کد ۱۲۳", "کد 123"),
        ("", ""),
    ],
)
def test_ascii_digits(raw, expected):
    assert ascii_digits(raw) == expected


@given(st.text(alphabet="0123456789", max_size=30))
def test_ascii_digits_undoes_persian_and_arabic_indic_digits(digits):
    assert ascii_digits(persian(digits)) == digits
    assert ascii_digits(arabic_indic(digits)) == digits
    assert ascii_digits(digits) == digits
