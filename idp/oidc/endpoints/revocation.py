"""Token revocation (RFC 7009).

Revoking a refresh token revokes its whole grant, with every access token issued under it (RFC 7009
section 2.1 lets the server do so, and a relying party revoking at logout means exactly that). Revoking an
access token writes its id to the database's deny list until it would have expired (idp.store.access_tokens).
Unknown tokens get 200, as the RFC says.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from ...store import audit
from ...store import commit as commit_store
from ...store import grants as grant_store
from ...store.models import RefreshToken
from ..grants.client_methods import ALL_METHODS
from ..tokens import AccessToken, read_access_token


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> RefreshToken | AccessToken | None:
        # The hint only orders the lookups (RFC 7009 section 2.1); both kinds are always tried.
        lookups = [grant_store.find_refresh_token, _access_token]
        if token_type_hint == "access_token":
            lookups.reverse()
        for lookup in lookups:
            token = lookup(token_string)
            if token is not None:
                return token
        return None

    def revoke_token(self, token: RefreshToken | AccessToken, request: Any) -> None:
        if isinstance(token, RefreshToken):
            if grant_store.revoke_grant(token.grant, "revoked_by_client"):
                audit.record("grant.revoked", user_id=token.grant.user_id, client_id=token.grant.client_id, by="client")
            commit_store()
        else:
            token.revoke()
            commit_store()


def _access_token(token_string: str) -> AccessToken | None:
    return read_access_token(token_string, with_user=False)
