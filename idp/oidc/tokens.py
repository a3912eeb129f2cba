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

from .. import clock
from ..provider import current_provider
from ..security import new_token
from ..store import access_tokens, audit
from ..store.clients import get_client
from ..store.disclosures import Release
from ..store.models import Client, Grant, User
from . import dpop
from .claims import released_claim_names, subject_for, user_claims
from .disclosures import release_of
from .fapi import client_profile
from .resource_indicators import access_token_audience

ACCESS_TOKEN_TYPE = "at+jwt"


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
    #: Revoked itself (RFC 7009), or its grant is no longer active (idp.store.access_tokens).
    revoked: bool
    #: Its grant, when read from the database (userinfo reads it with the user); None for a token without one.
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
        return self.grant.user if self.grant is not None else None

    def get_expires_in(self) -> int:
        return max(self.expires_at - clock.timestamp(), 0)

    def is_expired(self) -> bool:
        return self.expires_at <= clock.timestamp()

    def is_revoked(self) -> bool:
        return self.revoked

    def revoke(self) -> None:
        """Revoke it, in the request's transaction (the caller commits)."""
        access_tokens.revoke_access_token(self.jti, self.expires_at)


def _decode_signed_by_us(token: str) -> jwt.Token | None:
    """The token if it is a compact JWS signed by one of our published keys, else None (claims unchecked)."""
    if not isinstance(token, str) or not token or len(token) > 8192 or token.count(".") != 2:
        return None
    try:
        return current_provider().keys.decode_jwt(token)
    except (JoseError, ValueError, TypeError):
        return None


def read_access_token(token: str, *, with_user: bool = True) -> AccessToken | None:
    """The access token if it is one of ours, correctly signed, of the access-token type and not expired, with
    whether it was revoked (:meth:`AccessToken.is_revoked`).

    ``with_user`` reads the grant's user with the grant (userinfo's next question); introspection, which answers
    from the token's claims, needs only to know that the grant is active, which a worker may remember.
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
    grant_id = str(claims["gid"]) if "gid" in claims else None
    state = access_tokens.read_state(claims["jti"], grant_id, claims["exp"], with_user=with_user)
    if state is None:
        return None  # its grant is gone (the account was deleted)
    return AccessToken(claims=claims, client=client, revoked=state.revoked, grant=state.grant)


@dataclass(frozen=True)
class IssuedIdToken:
    jwt: str
    #: What it tells the client about the user, for the disclosure ledger (written with the token's grant rows).
    release: Release


def issue_id_token(
    *,
    client: Client,
    user: User,
    grant: Grant,
    scope: str,
    nonce: str | None,
    access_token: str | None,
    purpose: str,
) -> IssuedIdToken:
    """An ID token (OpenID Connect Core section 2) for ``user`` at ``client``, about the login of ``grant``, issued
    for ``purpose`` (``login`` or ``refresh``, as the ledger names it)."""
    provider = current_provider()
    alg = client.id_token_signed_response_alg
    now = clock.timestamp()
    scopes = scope.split()
    names = released_claim_names(scopes, grant.claims_request, "id_token", client)
    claims: dict[str, Any] = user_claims(user, client, names, grant.claims_request, "id_token")
    release = release_of(claims, client, purpose)
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
    return IssuedIdToken(sign_jwt({"typ": "JWT"}, claims, alg), release)


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
