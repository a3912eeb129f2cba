"""Token introspection (RFC 7662), for authenticated clients only, about their own tokens.

A client learns nothing about another client's token: it gets ``{"active": false}`` as for an unknown one.

An answer about a user's token tells the client who the user is (``sub``): that release is written to the disclosure
ledger before the answer is given (idp.oidc.disclosures).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from ... import clock
from ...provider import current_provider
from ...store import grants as grant_store
from ...store import read_outside_a_transaction
from ...store.clients import get_client
from ...store.models import Client, RefreshToken
from ...store.users import get_user
from .. import dpop
from ..claims import subject_for
from ..disclosures import introspection_release, record_before_answering
from ..grants.client_methods import CONFIDENTIAL_METHODS
from ..tokens import AccessToken, read_access_token


class _RefreshTokenView:
    """A refresh token as introspection sees it (Authlib asks ``is_expired`` and ``is_revoked``)."""

    def __init__(self, row: RefreshToken) -> None:
        self.row = row

    def check_client(self, client: Client) -> bool:
        return self.row.check_client(client)

    def is_expired(self) -> bool:
        return self.row.expires_at <= clock.now()

    def is_revoked(self) -> bool:
        return self.row.rotated_at is not None or not grant_store.is_grant_active(self.row.grant)


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | _RefreshTokenView | None:
        access = read_access_token(token_string, with_user=False)  # the answer comes from its claims
        if access is not None:
            return access
        read_outside_a_transaction()  # it only reads: the refresh token with its grant and user, in one statement
        row = grant_store.find_refresh_token(token_string)
        return _RefreshTokenView(row) if row is not None else None

    def check_permission(self, token: Any, client: Client, request: Any) -> bool:
        return bool(token.check_client(client))

    def introspect_token(self, token: AccessToken | _RefreshTokenView) -> dict[str, Any]:
        issuer = current_provider().issuer
        if isinstance(token, AccessToken):
            claims = token.claims
            bound = dpop.bound_key(claims)
            answer = {
                "active": True,
                # RFC 9449 section 6.2: a DPoP-bound token says so, and which key; the resource server checks the
                # proof it received against cnf itself.
                "token_type": "DPoP" if bound else "Bearer",
                "client_id": token.client.client_id,
                "scope": token.scope,
                "sub": claims["sub"],
                "aud": claims["aud"],
                "iss": issuer,
                "iat": claims["iat"],
                "exp": claims["exp"],
                "jti": claims["jti"],
            }
            if bound:
                answer["cnf"] = {"jkt": bound}
            grant_id = claims.get("gid")  # none for a client's own token (client credentials): no person
            if grant_id is not None and not record_before_answering(introspection_release(token.client), grant_id):
                return {"active": False}  # its grant is gone (the account was deleted)
            return answer
        row = token.row
        grant = row.grant
        payload: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "scope": grant.scope,
            "iss": issuer,
            "iat": int(row.issued_at.timestamp()),
            "exp": int(row.expires_at.timestamp()),
        }
        if grant.user_id:
            user = get_user(grant.user_id)
            client = get_client(grant.client_id)
            if user is not None and client is not None:
                payload["sub"] = subject_for(user, client)  # before the commit, which expires what was read
                if not record_before_answering(introspection_release(client), grant.id):
                    return {"active": False}
        return payload
