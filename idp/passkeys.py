"""Passkeys (WebAuthn) with py_webauthn: the options handed to the browser's ``navigator.credentials`` and the
checks of what it answers. The library runs the ceremonies (WebAuthn Level 2 sections 7.1 and 7.2); the checks
it leaves to the relying party are here:

- the relying-party ID is the issuer's host, and the origin must be exactly the issuer's origin;
- each challenge is single use and short-lived: kept in the key-value store under its ceremony kind, bound to
  the browser session (and account) that asked for it, and spent with one atomic ``consume`` before anything
  else is checked, so a replayed answer finds nothing, in any process;
- user verification is required, credentials are discoverable (usernameless login), attestation is ``none``;
- the signature counter must move forward (section 6.1.1): when it goes back, the login is refused and a clone
  warning goes into the account's security events;
- a credential id belongs to one account only (a unique index; see :mod:`idp.store.passkeys`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import parse_authentication_credential_json
from webauthn.helpers.parse_registration_credential_json import parse_registration_credential_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from . import clock
from .provider import current_provider
from .scopes import USER_VERIFIED
from .store import audit, commit
from .store.models import Passkey, User
from .store.passkeys import CredentialTaken, add_passkey, find_passkey, passkeys_of, record_use
from .web.login_state import browser_binding

#: The ceremonies, each with challenges of its own: a challenge asked for one cannot answer another.
REGISTER = "register"
LOGIN = "login"
STEP_UP = "step_up"
RECOVERY = "recovery"
ASSERTIONS = (LOGIN, STEP_UP, RECOVERY)

CHALLENGE_KEY = "passkey-challenge:"
RP_NAME = "Hoviyat"
NAME_MAX = 64


class PasskeyRefused(Exception):
    """A passkey answer that is not accepted; ``reason`` is one of ``expired`` (no such challenge: expired,
    used already, or another browser's), ``invalid`` (the library's checks failed: origin, relying party, user
    verification, signature), ``unknown`` (no such passkey, or another account's), ``taken`` (the credential
    is registered already) and ``clone`` (the signature counter went back)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def relying_party_id() -> str:
    """The issuer's host: passkeys made here work on every page under the issuer, and nowhere else."""
    return urlsplit(current_provider().issuer).hostname or ""


def expected_origin() -> str:
    """The issuer's origin (scheme, host and port), which the browser reports in each answer."""
    parts = urlsplit(current_provider().issuer)
    return f"{parts.scheme}://{parts.netloc}"


def passkeys_possible() -> bool:
    """False when the issuer's host is an IP address: browsers refuse an IP address as relying-party ID (so the
    pages do not offer passkeys there; README, "Passkeys")."""
    try:
        ipaddress.ip_address(relying_party_id().strip("[]"))
    except ValueError:
        return bool(relying_party_id())
    return False


def amr_of(passkey: Passkey) -> list[str]:
    """RFC 8176 methods of a login with this passkey: ``swk`` when it may be synced to other devices (backup
    eligible), else ``hwk``; ``user`` since user verification is always required."""
    return ["swk" if passkey.backup_eligible else "hwk", USER_VERIFIED]


# -- challenges ---------------------------------------------------------------------------------------


def _keep_challenge(kind: str, challenge: bytes, user_id: str | None) -> None:
    provider = current_provider()
    record = {"binding": browser_binding(), "user_id": user_id}
    provider.store.put(
        f"{CHALLENGE_KEY}{kind}:{bytes_to_base64url(challenge)}", record, provider.config.passkeys.challenge_ttl
    )


def _spend_challenge(kind: str, client_data_json: bytes, user_id: str | None) -> bytes:
    """The challenge the answer signed, spent; :class:`PasskeyRefused` ``expired`` unless it was issued for this
    ceremony to this browser session (and account) and is spent by this very call."""
    try:
        challenge = parse_client_data_json(client_data_json).challenge
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyRefused("invalid", "client data") from None
    record = current_provider().store.consume(f"{CHALLENGE_KEY}{kind}:{bytes_to_base64url(challenge)}")
    if (
        record is None
        or not secrets.compare_digest(str(record.get("binding")), browser_binding())
        or record.get("user_id") != user_id
    ):
        raise PasskeyRefused("expired")
    return challenge


# -- registration ---------------------------------------------------------------------------------------


def registration_options(user: User) -> str:
    """Options (JSON) for ``navigator.credentials.create``: a discoverable credential with user verification,
    attestation ``none``, and the user's passkeys excluded so one authenticator is not registered twice."""
    config = current_provider().config.passkeys
    options = generate_registration_options(
        rp_id=relying_party_id(),
        rp_name=RP_NAME,
        # The user handle is the account's random id, never personal data (WebAuthn section 14.6.1).
        user_id=user.id.encode(),
        user_name=user.national_code,
        user_display_name=user.name,
        timeout=config.challenge_ttl * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(passkey) for passkey in passkeys_of(user.id)],
    )
    _keep_challenge(REGISTER, options.challenge, user.id)
    return options_to_json(options)


def register(user: User, credential_json: str, name: str) -> Passkey:
    """Check the answer of ``navigator.credentials.create`` and add the passkey to ``user`` (committed)."""
    credential = _parse(parse_registration_credential_json, credential_json)
    assert isinstance(credential, RegistrationCredential)
    challenge = _spend_challenge(REGISTER, credential.response.client_data_json, user.id)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=relying_party_id(),
            expected_origin=expected_origin(),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused("invalid", str(error)) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if find_passkey(credential_id) is not None:
        raise PasskeyRefused("taken")
    try:
        passkey = add_passkey(
            user_id=user.id,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=(name.strip() or RP_NAME)[:NAME_MAX],
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up,
            transports=[str(t.value) for t in credential.response.transports or []],
            aaguid=verified.aaguid,
        )
    except CredentialTaken:
        raise PasskeyRefused("taken") from None
    return passkey


# -- authentication -------------------------------------------------------------------------------------


def authentication_options(kind: str, user: User | None = None) -> str:
    """Options (JSON) for ``navigator.credentials.get``. Without ``user`` (login, recovery) the browser offers
    every passkey it has for this site (discoverable credentials: no national code typed); with one (step-up),
    only that account's passkeys."""
    assert kind in ASSERTIONS
    options = generate_authentication_options(
        rp_id=relying_party_id(),
        timeout=current_provider().config.passkeys.challenge_ttl * 1000,
        allow_credentials=[_descriptor(p) for p in passkeys_of(user.id)] if user is not None else [],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    _keep_challenge(kind, options.challenge, user.id if user is not None else None)
    return options_to_json(options)


def authenticate(kind: str, credential_json: str, user: User | None = None) -> Passkey:
    """Check the answer of ``navigator.credentials.get``; the passkey used, its counter moved forward (not
    committed). With ``user``, the passkey must be that account's."""
    credential = _parse(parse_authentication_credential_json, credential_json)
    assert isinstance(credential, AuthenticationCredential)
    challenge = _spend_challenge(kind, credential.response.client_data_json, user.id if user is not None else None)
    passkey = find_passkey(bytes_to_base64url(credential.raw_id))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise PasskeyRefused("unknown")
    user_handle = credential.response.user_handle
    if user_handle is not None and not secrets.compare_digest(user_handle, passkey.user_id.encode()):
        raise PasskeyRefused("unknown")
    try:
        # Counter 0 given on purpose: the library would compare counters before checking the signature, and an
        # unsigned answer must not raise a clone warning. The counter is checked below, once the signature holds.
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=relying_party_id(),
            expected_origin=expected_origin(),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        audit.record("passkey.refused", user_id=passkey.user_id, passkey_id=passkey.id, reason="invalid")
        commit()
        raise PasskeyRefused("invalid", str(error)) from None
    stored_count = passkey.sign_count
    if not record_use(passkey, verified.new_sign_count, verified.credential_backed_up, clock.now()):
        audit.record(
            "passkey.clone_warning",
            user_id=passkey.user_id,
            passkey_id=passkey.id,
            stored_count=stored_count,
            presented_count=verified.new_sign_count,
        )
        commit()
        raise PasskeyRefused("clone")
    return passkey


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in passkey.transports or []:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue  # a transport this library version does not know: the browser finds the key without it
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id), transports=transports or None)


def _parse(parser: Any, credential_json: str) -> Any:
    if not credential_json or len(credential_json) > 64 * 1024:
        raise PasskeyRefused("invalid", "no answer")
    try:
        json.loads(credential_json)
        return parser(credential_json)
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused("invalid", str(error)) from None
