"""Long-lived records, in SQL: users, clients, consents, grants with their refresh tokens, revoked access
tokens, login sessions, signing keys' metadata, the audit log and the disclosure ledger. The same models run on
SQLite and PostgreSQL.

Secrets never appear here in clear: client secrets and refresh tokens are stored as SHA-256 hashes and
passwords as Argon2id hashes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..security import matches_hash


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone, so it is stored naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class User(db.Model):
    __tablename__ = "users"

    #: Random, never derived from personal data; it is the public ``sub`` for clients registered so.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    national_code: Mapped[str] = mapped_column(String(10), unique=True)
    mobile: Mapped[str] = mapped_column(String(16))
    birthdate: Mapped[dt.date] = mapped_column(Date)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str | None] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(255))
    #: When and how the identity was checked; reported as ``verified_claims.verification``.
    identity_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    identity_evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    postal_address: Mapped[str | None] = mapped_column(Text)
    postal_code: Mapped[str | None] = mapped_column(String(10))
    #: The TOTP seed, encrypted with a key derived from ``server.secret_key`` (it must be read back to check
    #: codes, so it cannot be hashed); None until the user enrols an authenticator app.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The last TOTP time step accepted, so a code cannot be used twice.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled_at is not None and self.totp_secret_encrypted is not None


class RecoveryCode(db.Model):
    """A single-use code that stands in for the authenticator app; stored only as a keyed hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Passkey(db.Model):
    """A WebAuthn credential (passkey) of a user: its public key, never a secret.

    A credential id belongs to one account only (the unique index): a second account that presents the same id,
    as an attestation of format "none" lets anyone do, is refused.
    """

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The credential id, base64url without padding (WebAuthn allows up to 1023 bytes).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    #: The COSE-encoded public key, as the authenticator gave it at registration.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: The authenticator's signature counter at the last use; a lower one later means a cloned authenticator.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    #: Backup eligible: the credential may be synced to the user's other devices (amr ``swk``, else ``hwk``).
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class SupportMessage(db.Model):
    """A message sent from the support page; admins read them with ``idp support list``."""

    __tablename__ = "support_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Client(db.Model, ClientMixin):
    """A registered relying party. The methods are Authlib's ``ClientMixin``: how the protocol asks about it."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the secret (secrets are 256-bit random, so a fast hash is the right one); None when public.
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(Text)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    subject_type: Mapped[str] = mapped_column(String(16), default="pairwise")
    #: Pairwise subjects are computed per sector; by default each client is its own sector.
    sector_identifier: Mapped[str | None] = mapped_column(String(255))
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    #: OpenID Connect Back-Channel Logout 1.0: where to POST a logout token when a session it used ends.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``standard`` or ``fapi2`` (the FAPI 2.0 Security Profile's rules for this client: idp.oidc.fapi).
    profile: Mapped[str] = mapped_column(String(16), default="standard")
    #: Its authorization requests must be pushed first (RFC 9126 section 6, ``require_pushed_authorization_requests``).
    require_par: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Every token request carries a DPoP proof (RFC 9449 section 5.2, ``dpop_bound_access_tokens``).
    dpop_bound: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The only algorithm its request objects may be signed with (RFC 9101); None: any its profile allows.
    request_object_signing_alg: Mapped[str | None] = mapped_column(String(16))
    #: Resource servers it may ask access tokens for (RFC 8707 ``resource``), absolute URIs.
    resources: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
            "backchannel_logout_uri": self.backchannel_logout_uri,
        }

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # Never fall back to a registered URI: a request without redirect_uri is an error (RFC 9700 4.1.1).
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scopes)
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison, no pattern or prefix matching (RFC 9700 section 4.1.3).
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return matches_hash(client_secret, self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # A client authenticates the same registered way at the token, revocation and introspection endpoints.
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class Consent(db.Model):
    """What a user allowed a client to receive; remembered so the page is not shown again for it."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(Text)
    claims: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("uq_consents_user_client", "user_id", "client_id", unique=True),)


class UserSession(db.Model):
    """A login at the provider. Its id is the ``sid`` claim; ending it logs the browser out."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship(lazy="joined")


class Grant(db.Model):
    """One authorization of a client by a user (or by itself): the family every refresh token of it belongs to.

    Revoking the grant revokes every token issued under it: its refresh tokens at once, its access tokens
    at their next use at userinfo or introspection.
    """

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(43), index=True)
    scope: Mapped[str] = mapped_column(Text)
    #: The ``claims`` request parameter, as accepted (OpenID Connect Core section 5.5).
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str] | None] = mapped_column(JSON)
    #: SHA-256 of the authorization code that created it, to revoke the grant when the code is replayed.
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: JWK thumbprint of the DPoP key a public client's refresh tokens are bound to (RFC 9449 section 5).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    #: The resource servers the user's authorization covers (RFC 8707); access tokens may name a subset.
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Absolute end of the family: no refresh token of it outlives this.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))

    # No relationship to the client: callers hold it already, from the process's cache (store.clients.get_client);
    # joining its twenty columns into every refresh-token lookup cost more than the rest of that query.
    #: Loaded with the grant where the user is needed next (refresh, userinfo): one query instead of two.
    user: Mapped[User | None] = relationship()


class RefreshToken(db.Model):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Set when the token was exchanged for a new one; presenting it again is a replay.
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    grant: Mapped[Grant] = relationship(lazy="joined")

    # What Authlib's refresh-token grant asks of the token it found.
    def check_client(self, client: Client) -> bool:
        return self.grant.client_id == client.client_id

    def get_scope(self) -> str:
        return self.grant.scope


class RevokedAccessToken(db.Model):
    """An access token revoked before its expiry (RFC 7009), kept until it would have expired.

    Access tokens are JWTs that no other row describes: this is the only record that one was revoked, so it lives
    in the database with the grants, not in the key-value store, which may lose everything (docs/deployment.md).
    """

    __tablename__ = "revoked_access_tokens"

    #: SHA-256 of the token's ``jti``.
    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The token's own expiry: after it the token is refused anyway, and the row is pruned.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SigningKey(db.Model):
    """Metadata of a signing key; the private key itself is ``<keys.dir>/<kid>.pem``, mode 0600."""

    __tablename__ = "signing_keys"

    #: RFC 7638 thumbprint of the public key.
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    #: ``active`` signs; ``published`` only verifies (rotated out, still in the JWKS); ``retired`` is gone.
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deactivated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(db.Model):
    """Who did what and when. ``detail`` never holds a password, code, secret or token."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class Disclosure(db.Model):
    """A release of claims about a user to a client (the disclosure ledger, README "Your account"): the claims'
    names, never their values.

    Identical releases (the same user, client, session, purpose and claims) fold into one row: ``count`` of them,
    the first at ``first_at``, the last at ``last_at`` (idp.store.disclosures).
    """

    __tablename__ = "disclosures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: Not a foreign key: the row outlives the client's registration (the page then says "a removed app").
    client_id: Mapped[str] = mapped_column(String(64))
    #: The login session the release was made under; empty when it had none.
    session_id: Mapped[str] = mapped_column(String(43))
    #: ``login`` (the code exchange's ID token), ``refresh`` (a refreshed ID token), ``userinfo``, ``introspection``.
    purpose: Mapped[str] = mapped_column(String(16))
    #: The released claims' names, space-separated, in one fixed order (idp.oidc.claims.release_of).
    claims: Mapped[str] = mapped_column(String(400))
    #: The national code was among them, as ``national_id`` or inside ``verified_claims``.
    national_id: Mapped[bool] = mapped_column(Boolean)
    #: ``verified_claims`` (the registry's checked identity) was among them.
    verified_claims: Mapped[bool] = mapped_column(Boolean)
    count: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        Index("uq_disclosures_fold", "user_id", "client_id", "session_id", "purpose", "claims", unique=True),
        Index("ix_disclosures_user_id_last_at", "user_id", "last_at"),
    )


class HousekeepingRun(db.Model):
    """When a periodic task last ran: ``idp serve`` prunes the ledger at start-up at most once a day."""

    __tablename__ = "housekeeping_runs"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
