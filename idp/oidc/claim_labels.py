"""Each claim in plain words, for the consent page."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

CLAIM_LABELS = {
    "name": _l("Your full name"),
    "given_name": _l("Your first name"),
    "family_name": _l("Your last name"),
    "birthdate": _l("Your date of birth"),
    "locale": _l("Your preferred language"),
    "phone_number": _l("Your mobile number"),
    "phone_number_verified": _l("That your mobile number is registered in your name"),
    "email": _l("Your email address"),
    "email_verified": _l("Whether your email address is confirmed"),
    "national_id": _l("Your national code"),
    "address": _l("Your postal address and postal code"),
    "verified_claims": _l("That your name, date of birth and national code were checked against the civil registry"),
}


def claim_label(name: str) -> str:
    return str(CLAIM_LABELS.get(name, name))
