"""What a client learns about a user: subject identifiers and the claims each scope or request releases."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError

from ..provider import current_provider
from ..scopes import AUTHENTICATION_CLAIMS, CLAIM_SCOPE, claims_for_scopes
from ..security import b64url
from ..store.models import Client, User
from .errors import quoted

CLAIMS_TARGETS = ("userinfo", "id_token")


def subject_for(user: User, client: Client) -> str:
    """The ``sub`` this client sees for this user.

    Pairwise by default (OpenID Connect Core section 8.1): a hash of the client's sector, the user's id and
    a provider-wide salt, so two relying parties cannot join their users on ``sub``. Public only where the
    client is registered so.
    """
    if client.subject_type == "public":
        return user.id
    sector = client.sector_identifier or client.client_id
    salt = current_provider().config.server.pairwise_salt
    digest = hashlib.sha256(f"{sector}\x00{user.id}\x00{salt}".encode()).digest()
    return b64url(digest)


def parse_claims_request(raw: str | None) -> dict[str, Any] | None:
    """The ``claims`` request parameter (OpenID Connect Core section 5.5), checked for shape."""
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("The 'claims' parameter is not valid JSON.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("The 'claims' parameter must be a JSON object.")
    accepted: dict[str, Any] = {}
    for target in CLAIMS_TARGETS:
        members = value.get(target)
        if members is None:
            continue
        if not isinstance(members, dict):
            raise InvalidRequestError(f"The 'claims.{target}' member must be a JSON object.")
        for name, spec in members.items():
            _check_claim_request(name, spec)
        accepted[target] = members
    return accepted or None


def _check_claim_request(name: str, spec: Any) -> None:
    """One claim's request (Core section 5.5.1): null, or an object whose ``essential`` is a boolean and
    whose ``values`` is an array."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise InvalidRequestError(f"The request for claim {quoted(name)} must be null or an object.")
    if "essential" in spec and not isinstance(spec["essential"], bool):
        raise InvalidRequestError(f"'essential' of claim {quoted(name)} must be true or false.")
    if "values" in spec and not isinstance(spec["values"], list):
        raise InvalidRequestError(f"'values' of claim {quoted(name)} must be an array.")


def requested_claim_names(claims_request: dict[str, Any] | None, target: str | None = None) -> list[str]:
    if not claims_request:
        return []
    targets = (target,) if target else CLAIMS_TARGETS
    names: list[str] = []
    for item in targets:
        for name in claims_request.get(item, {}):
            if name not in names:
                names.append(name)
    return names


def extra_claims_allowed(claims_request: dict[str, Any] | None, client: Client, scopes: list[str]) -> list[str]:
    """Claims asked for one by one that the scopes do not already give and the client may receive."""
    from_scopes = set(claims_for_scopes(scopes))
    allowed = set(client.scopes)
    extra = []
    for name in requested_claim_names(claims_request):
        scope = CLAIM_SCOPE.get(name)
        if name in from_scopes or name in AUTHENTICATION_CLAIMS or scope is None:
            continue
        if scope in allowed:
            extra.append(name)
    return extra


def released_claim_names(
    scopes: list[str], claims_request: dict[str, Any] | None, target: str, client: Client
) -> list[str]:
    """Claims for ``target`` (``userinfo`` or ``id_token``): those of the granted scopes, plus those asked
    for individually for this target that the client's registration allows."""
    names = claims_for_scopes(scopes)
    allowed = set(client.scopes)
    for name in requested_claim_names(claims_request, target):
        scope = CLAIM_SCOPE.get(name)
        if scope is not None and scope in allowed and name not in names:
            names.append(name)
    return names


def user_claims(
    user: User, client: Client, names: list[str], claims_request: dict[str, Any] | None, target: str
) -> dict[str, Any]:
    """The values of the named claims for this user; claims the user has no value for are left out."""
    values: dict[str, Any] = {"sub": subject_for(user, client)}
    for name in names:
        if name == "sub":
            continue
        value = _claim_value(user, name, claims_request, target)
        if value is not None:
            values[name] = value
    return values


def _claim_value(user: User, name: str, claims_request: dict[str, Any] | None, target: str) -> Any:
    match name:
        case "name":
            return user.name
        case "given_name":
            return user.given_name
        case "family_name":
            return user.family_name
        case "birthdate":
            return user.birthdate.isoformat()
        case "locale":
            return user.locale
        case "phone_number":
            return user.mobile
        case "phone_number_verified":
            # The mobile's ownership was checked against the national code when the account was made.
            return True
        case "email":
            return user.email
        case "email_verified":
            return bool(user.email_verified) if user.email else None
        case "national_id":
            return user.national_code
        case "verified_claims":
            return verified_claims(user, claims_request, target)
        case "address":
            if not user.postal_address:
                return None
            # OpenID Connect Core section 5.1.1.
            return {"formatted": user.postal_address, "postal_code": user.postal_code, "country": "IR"}
    return None


def verified_claims(user: User, claims_request: dict[str, Any] | None, target: str) -> dict[str, Any] | None:
    """OpenID Connect for Identity Assurance 1.0: which claims were verified, against what, and when.

    When the ``claims`` parameter asks for particular verified claims, only those are returned (IDA 5.3).
    """
    if user.identity_verified_at is None:
        return None
    config = current_provider().config
    claims = {
        "national_id": user.national_code,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "birthdate": user.birthdate.isoformat(),
    }
    wanted = ((claims_request or {}).get(target) or {}).get("verified_claims")
    if isinstance(wanted, dict) and isinstance(wanted.get("claims"), dict) and wanted["claims"]:
        claims = {key: value for key, value in claims.items() if key in wanted["claims"]}
    return {
        "verification": {
            "trust_framework": config.identity.trust_framework,
            "time": user.identity_verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "evidence": user.identity_evidence or [],
        },
        "claims": claims,
    }
