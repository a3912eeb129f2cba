"""A software authenticator for tests: makes real WebAuthn answers (Level 2, sections 6.1, 6.5 and 7) with an
ES256 key from ``cryptography``, attestation format "none", as a phone's platform authenticator would.

It answers the options the provider hands the browser (the JSON of ``navigator.credentials``), and returns the
JSON a browser would post back, so tests can drive the provider over HTTP and also bend one thing at a time
(the origin, the relying-party ID, user verification, the counter) to check that the provider refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import free_port

USER_PRESENT = 0x01
USER_VERIFIED = 0x04
BACKUP_ELIGIBLE = 0x08
BACKED_UP = 0x10
ATTESTED_CREDENTIAL = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One discoverable credential on one authenticator. ``origin`` is what the "browser" reports."""

    origin: str
    synced: bool = False
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    counter: int = 0
    counts: bool = True
    user_handle: bytes | None = None
    rp_id: str | None = None

    @property
    def credential_id_b64(self) -> str:
        return b64url(self.credential_id)

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, verified: bool, attested: bool) -> int:
        flags = USER_PRESENT | (USER_VERIFIED if verified else 0)
        if self.synced:
            flags |= BACKUP_ELIGIBLE | BACKED_UP
        return flags | (ATTESTED_CREDENTIAL if attested else 0)

    def authenticator_data(self, rp_id: str, *, verified: bool, attested: bool, counter: int) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([self._flags(verified, attested)])
        data += struct.pack(">I", counter)
        if attested:
            data += bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self.cose_public_key()
        return data

    def client_data(self, kind: str, challenge: str, origin: str | None = None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(
        self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None, verified: bool = True
    ) -> str:
        """The answer of ``navigator.credentials.create(options)``, as the JSON the page posts."""
        self.rp_id = rp_id or options["rp"]["id"]
        self.user_handle = from_b64url(options["user"]["id"])
        auth_data = self.authenticator_data(self.rp_id, verified=verified, attested=True, counter=self.counter)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": self.credential_id_b64,
                "rawId": self.credential_id_b64,
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(self.client_data("webauthn.create", options["challenge"], origin)),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
            }
        )

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        verified: bool = True,
        counter: int | None = None,
        credential_id: bytes | None = None,
    ) -> str:
        """The answer of ``navigator.credentials.get(options)``; the counter moves on by one unless given."""
        if counter is None:
            if self.counts:
                self.counter += 1
            counter = self.counter
        auth_data = self.authenticator_data(
            rp_id or options["rpId"], verified=verified, attested=False, counter=counter
        )
        client_data = self.client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        raw_id = b64url(credential_id or self.credential_id)
        return json.dumps(
            {
                "id": raw_id,
                "rawId": raw_id,
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(self.user_handle) if self.user_handle else None,
                },
            }
        )


def provider_at_localhost(app_with: Any) -> Any:
    """The provider at a host name (browsers refuse an IP address as a passkey's relying-party ID), a new code
    allowed a second after the last (recovery and step-up tests ask for several in a row)."""
    port = free_port()
    return app_with(
        server={"issuer": f"http://localhost:{port}", "port": port}, otp={"resend_interval": 1, "per_mobile": "50/hour"}
    )
