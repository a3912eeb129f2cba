"""Scopes and the claims each releases (README, "What a relying party needs")."""

from __future__ import annotations

#: OpenID Connect Core section 5.4, plus ``national_id`` (OpenID Connect for Identity Assurance 1.0).
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "given_name", "family_name", "birthdate", "locale"),
    "phone": ("phone_number", "phone_number_verified"),
    "email": ("email", "email_verified"),
    "national_id": ("national_id", "verified_claims"),
    "address": ("address",),
}

#: Scopes about a person; a client-credentials token, which has no person, can never carry them.
USER_SCOPES = frozenset(SCOPE_CLAIMS)

#: For each claim, the scope a client must be registered for to receive it (also through ``claims``).
CLAIM_SCOPE: dict[str, str] = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}

#: Claims about the authentication itself, which any client may ask for in the ``claims`` parameter.
AUTHENTICATION_CLAIMS = frozenset({"auth_time", "acr", "amr"})

ACR_ONE_FACTOR = "urn:hoviyat:loa:1"
ACR_TWO_FACTORS = "urn:hoviyat:loa:2"
#: Two factors of which one resists phishing: a passkey with user verification.
ACR_PHISHING_RESISTANT = "urn:hoviyat:loa:3"
#: From the lowest level to the highest; each level meets every one before it.
ACR_VALUES = (ACR_ONE_FACTOR, ACR_TWO_FACTORS, ACR_PHISHING_RESISTANT)

#: Authentication methods (RFC 8176): a password, a code by SMS, a code from an authenticator app or a
#: recovery code; a passkey is ``hwk`` (bound to one device) or ``swk`` (synced between devices), with ``user``
#: when the authenticator verified the user (a PIN or biometric on the device).
KNOWLEDGE_METHODS = frozenset({"pwd"})
POSSESSION_METHODS = frozenset({"sms", "otp"})
PASSKEY_METHODS = frozenset({"hwk", "swk"})
USER_VERIFIED = "user"


def acr_for(amr: list[str]) -> str:
    """A passkey with user verification is two factors, one of them phishing-resistant: ``loa:3``. Otherwise
    two factors (something known and something held) make ``loa:2``; anything less is ``loa:1``."""
    methods = set(amr)
    if methods & PASSKEY_METHODS and USER_VERIFIED in methods:
        return ACR_PHISHING_RESISTANT
    if methods & KNOWLEDGE_METHODS and methods & POSSESSION_METHODS:
        return ACR_TWO_FACTORS
    return ACR_ONE_FACTOR


def acr_rank(acr: str | None) -> int:
    """The place of ``acr`` among :data:`ACR_VALUES` (0 for one factor); an unknown value ranks lowest."""
    return ACR_VALUES.index(acr) if acr in ACR_VALUES else 0


def acr_meets(acr: str | None, required: str) -> bool:
    return acr_rank(acr) >= acr_rank(required)


def claims_for_scopes(scopes: list[str] | set[str]) -> list[str]:
    names: list[str] = []
    for scope in scopes:
        for claim in SCOPE_CLAIMS.get(scope, ()):
            if claim not in names:
                names.append(claim)
    return names


def all_claims() -> list[str]:
    return claims_for_scopes(list(SCOPE_CLAIMS)) + sorted(AUTHENTICATION_CLAIMS)
