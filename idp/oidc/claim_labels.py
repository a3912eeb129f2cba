"""Each claim in plain words, for the consent page, and the trust frameworks identities are checked under by the
names of the registries that run them."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

CLAIM_LABELS = {
    # The consent and connected-apps pages leave it out (every app gets one); the disclosure ledger lists it.
    "sub": _l("An identifier of you made for this app"),
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


#: ``verified_claims.verification.trust_framework`` values (config ``identity.trust_framework``) and who runs each.
TRUST_FRAMEWORK_NAMES = {
    "ir_sabt_ahval": _l("National Organization for Civil Registration"),
}


def trust_framework_name(trust_framework: str) -> str | None:
    """The registry's name in the reader's language; None for a framework without one here (never shown raw)."""
    name = TRUST_FRAMEWORK_NAMES.get(trust_framework)
    return str(name) if name is not None else None
