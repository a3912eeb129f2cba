"""Issuing and reading tokens.

Access tokens are JWTs in the RFC 9068 profile (``typ: at+jwt``), signed with ``keys.access_token_alg``, so a
resource server may verify them offline; the provider itself also checks, at userinfo and introspection,
that the token's grant is still active and the token was not revoked. Refresh tokens are opaque and
stored only as hashes. ID tokens follow OpenID Connect Core section 2.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import inspect

from .. import clock
from ..provider import current_provider
from ..security import new_token, sha256_hex
from ..store import audit
from ..store import grants as grant_store
from ..store import users as user_store
from ..store.clients import get_client
from ..store.models import Client, Grant, User
from . import dpop
from .claims import released_claim_names, subject_for, user_claims
from .fapi import client_profile
from .resource_indicators import access_token_audience

ACCESS_TOKEN_TYPE = "at+jwt"
#: How long a worker may remember that an access token was not revoked instead of asking Redis again, and an access
#: token's grant active instead of reading it again (introspection). A revocation reaches every worker within
#: moments through the store's announcements (idp.store.absences); this bounds the time a worker whose
#: subscription died unnoticed could still say "active".
REVOCATION_MEMORY_SECONDS = 5.0


def sign_jwt(header_extra: dict[str, Any], claims: dict[str, Any], alg: str) -> str:
    """A JWS signed with the active key of ``alg``; its ``kid`` in the header."""
    key = current_provider().keys.signing_key(alg)
    header = {"alg": alg, "kid": key.kid, **header_extra}
    return jwt.encode(header, claims, key.key, algorithms=[alg])


def token_response(*, client: Client, user: User | None, scope: str, grant: Grant | None) -> dict[str, Any]:
    """The token endpoint's answer (RFC 6749 section 5.1) with a new access token; a grant that issues a refresh
    token adds it (idp.store.grants.new_refresh_token) and writes it with the rest of its rows.

    The access token is for the resources the request names (RFC 8707) and bound to the key of its DPoP proof, if
    it sent one (RFC 9449 section 5: ``token_type`` DPoP)."""
    config = current_provider().config
    ttl = config.tokens.access_token_ttl
    subject = subject_for(user, client) if user is not None else client.client_id
    audience = access_token_audience(client, grant)
    proof = dpop.request_proof()
    access_token = issue_access_token(
        client=client,
        subject=subject,
        scope=scope,
        grant=grant,
        ttl=ttl,
        audience=audience,
        confirmation=proof.confirmation if proof is not None else None,
    )
    token_type = "DPoP" if proof is not None else "Bearer"
    token: dict[str, Any] = {"token_type": token_type, "access_token": access_token, "expires_in": ttl}
    if scope:
        token["scope"] = scope
    return token


def token_issued_event(token: dict[str, Any], request: Any) -> dict[str, Any]:
    """The ``token.issued`` audit row of a token response to an Authlib token ``request`` (written by the server's
    save_token, or by the refresh grant with its rotation)."""
    grant = getattr(request, "idp_grant", None)
    user = getattr(request, "user", None)
    return audit.event_row(
        "token.issued",
        user_id=user.id if user is not None else None,
        client_id=request.client.client_id,
        grant_type=request.payload.grant_type,
        grant_id=grant.id if grant is not None else None,
        scope=token.get("scope", ""),
    )


def issue_access_token(
    *,
    client: Client,
    subject: str,
    scope: str,
    grant: Grant | None,
    ttl: int,
    audience: str | list[str] | None = None,
    confirmation: dict[str, str] | None = None,
) -> str:
    """An access token for ``audience`` (the client when None); ``confirmation`` is its ``cnf`` (RFC 9449 section
    6.1: the DPoP key it is bound to)."""
    provider = current_provider()
    now = clock.timestamp()
    claims: dict[str, Any] = {
        "iss": provider.issuer,
        "sub": subject,
        "aud": audience if audience is not None else client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": new_token(16),
        "scope": scope,
    }
    if grant is not None:
        claims["gid"] = grant.id
    if confirmation is not None:
        claims["cnf"] = confirmation
    alg = client_profile(client).access_token_alg(provider.config.keys.access_token_alg)
    return sign_jwt({"typ": ACCESS_TOKEN_TYPE}, claims, alg)


@dataclass
class AccessToken:
    """A verified access token. Implements what Authlib's resource protector and endpoints ask of a token."""

    claims: dict[str, Any]
    client: Client
    grant: Grant | None

    @property
    def scope(self) -> str:
        return self.claims.get("scope", "")

    @property
    def jti(self) -> str:
        return self.claims["jti"]

    @property
    def expires_at(self) -> int:
        return int(self.claims["exp"])

    def get_scope(self) -> str:
        return self.scope

    def get_client(self) -> Client:
        return self.client

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client.client_id

    def get_user(self) -> User | None:
        if self.grant is None or self.grant.user_id is None:
            return None
        if "user" not in inspect(self.grant).unloaded:  # read with the grant (read_access_token's with_user)
            return self.grant.user
        return user_store.get_user(self.grant.user_id)

    def get_expires_in(self) -> int:
        return max(self.expires_at - clock.timestamp(), 0)

    def is_expired(self) -> bool:
        return self.expires_at <= clock.timestamp()

    def is_revoked(self) -> bool:
        if self.grant is not None and not grant_store.is_grant_active(self.grant):
            return True
        return not current_provider().store.is_absent(_revoked_key(self.jti), REVOCATION_MEMORY_SECONDS)

    def revoke(self) -> None:
        ttl = max(self.expires_at - clock.timestamp(), 0) + 1
        current_provider().store.put_and_announce(_revoked_key(self.jti), {}, ttl)


def _revoked_key(jti: str) -> str:
    return "revoked-access-token:" + sha256_hex(jti)


def _decode_signed_by_us(token: str) -> jwt.Token | None:
    """The token if it is a compact JWS signed by one of our published keys, else None (claims unchecked)."""
    if not isinstance(token, str) or not token or len(token) > 8192 or token.count(".") != 2:
        return None
    try:
        return current_provider().keys.decode_jwt(token)
    except (JoseError, ValueError, TypeError):
        return None


def read_access_token(token: str, *, with_user: bool = True) -> AccessToken | None:
    """The access token if it is one of ours, correctly signed, of the access-token type and not expired.

    Revocation is not checked here: callers ask :meth:`AccessToken.is_revoked`. ``with_user`` reads the grant's
    user with the grant (userinfo's next question); introspection, which answers from the token's claims, reads
    the grant alone.
    """
    provider = current_provider()
    decoded = _decode_signed_by_us(token)
    if decoded is None or decoded.header.get("typ") != ACCESS_TOKEN_TYPE:
        return None  # an ID token is not an access token
    claims = decoded.claims
    if claims.get("iss") != provider.issuer or not isinstance(claims.get("exp"), int):
        return None
    if not isinstance(claims.get("jti"), str) or claims["exp"] <= clock.timestamp():
        return None
    client = get_client(str(claims.get("client_id", "")))
    if client is None:
        return None
    grant = None
    if "gid" in claims:
        grant_id = str(claims["gid"])
        grant = (
            _grant_alone(grant_id)
            if not with_user
            else grant_store.find_grant_of_access_token(grant_id, with_user=True)
        )
        if grant is None:
            return None
    return AccessToken(claims=claims, client=client, grant=grant)


def _grant_alone(grant_id: str) -> Grant | None:
    """An access token's grant without its user (introspection's question: is it still active?), remembered by
    this worker for up to REVOCATION_MEMORY_SECONDS while active, so a resource server that introspects every call
    it serves costs no database read after the first: every revocation of a grant is announced to every worker
    when it commits (idp.store.grants), and a worker forgets the grant at the announcement. The object is
    detached, every column loaded, and only read (is_grant_active); its expiry is checked on each use."""
    store = current_provider().store
    key = grant_store.grant_memory_key(grant_id)
    remembered, ticket = store.remembered(key)
    if remembered is not None:
        return remembered
    grant = grant_store.find_grant_of_access_token(grant_id, with_user=False)
    if ticket is not None and grant_store.is_grant_active(grant):
        store.remember(key, grant, ticket, REVOCATION_MEMORY_SECONDS)
    return grant


def issue_id_token(
    *,
    client: Client,
    user: User,
    grant: Grant,
    scope: str,
    nonce: str | None,
    access_token: str | None,
) -> str:
    """An ID token (OpenID Connect Core section 2) for ``user`` at ``client``, about the login of ``grant``."""
    provider = current_provider()
    alg = client.id_token_signed_response_alg
    now = clock.timestamp()
    scopes = scope.split()
    names = released_claim_names(scopes, grant.claims_request, "id_token", client)
    claims: dict[str, Any] = user_claims(user, client, names, grant.claims_request, "id_token")
    claims.update(
        {
            "iss": provider.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + provider.config.tokens.id_token_ttl,
        }
    )
    if grant.auth_time is not None:
        claims["auth_time"] = _epoch(grant.auth_time)
    if grant.acr:
        claims["acr"] = grant.acr
    if grant.amr:
        claims["amr"] = list(grant.amr)
    if grant.session_id:
        claims["sid"] = grant.session_id
    if nonce:
        claims["nonce"] = nonce
    if access_token:
        claims["at_hash"] = create_half_hash(access_token, alg).decode("ascii")
    return sign_jwt({"typ": "JWT"}, claims, alg)


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def read_id_token_hint(token: str) -> dict[str, Any] | None:
    """Claims of an ID token this provider issued, expired or not (for ``id_token_hint``)."""
    provider = current_provider()
    decoded = _decode_signed_by_us(token)
    if decoded is None or decoded.header.get("typ") == ACCESS_TOKEN_TYPE:
        return None
    claims = decoded.claims
    if claims.get("iss") != provider.issuer or not isinstance(claims.get("sub"), str):
        return None
    return dict(claims)
