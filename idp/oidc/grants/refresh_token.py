"""The refresh token grant (RFC 6749 section 6), with rotation on every use (RFC 9700 section 4.14.2).

Each use marks the presented token rotated and returns a new one in the same family (the grant). A rotated
token presented again is a replay: the whole family is revoked, so neither the attacker nor the client keeps
a working token, and the user must log in again. No refresh token outlives its family's absolute lifetime.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from ... import clock
from ...provider import current_provider
from ...store import audit
from ...store import commit as commit_store
from ...store import grants as grant_store
from ...store import rollback as rollback_store
from ...store.models import RefreshToken, User
from ..tokens import token_issued_event, token_response
from .client_methods import ALL_METHODS

log = logging.getLogger(__name__)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Read the presented token once, make the whole answer (access token, refresh token, ID token), then write
    the rotation, the successor and the audit row together (one statement on PostgreSQL): a worker killed
    before that write leaves the presented token as it was, so the client's retry works."""

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        row = grant_store.find_refresh_token_to_rotate(refresh_token)
        if row is None:
            return None
        if row.rotated_at is not None:
            self._revoke_family(row)
            return None
        if not grant_store.is_grant_active(row.grant) or row.expires_at <= clock.now():
            return None
        return row

    def _revoke_family(self, row: RefreshToken) -> None:
        grant_id, user_id, client_id = row.grant_id, row.grant.user_id, row.grant.client_id
        # Out of the read's transaction-less mode (and whatever it holds): the revocation and its audit row are
        # written together.
        rollback_store()
        if grant_store.revoke_grant_by_id(grant_id, "refresh_token_replayed"):
            audit.record("refresh_token.replayed", user_id=user_id, client_id=client_id, grant_id=grant_id)
            log.warning("refresh token replayed; family %s of client %s revoked", grant_id, client_id)
        commit_store()

    def authenticate_user(self, refresh_token: RefreshToken) -> User | None:
        return refresh_token.grant.user

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        row: RefreshToken = self.request.refresh_token
        self.request.idp_grant = row.grant
        token = token_response(client=self.client, user=user, scope=scope or "", grant=row.grant)
        idle_ttl = current_provider().config.tokens.refresh_token_idle_ttl
        self._successor = grant_store.new_refresh_token(row.grant, idle_ttl)
        token["refresh_token"] = self._successor.token
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        # Written with the rotation, once the whole answer is made (create_token_response).
        self._audit_row = token_issued_event(token, self.request)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        answer = super().create_token_response()  # the ID token included (Authlib's after-hook)
        row: RefreshToken = self.request.refresh_token
        # The atomic check-and-mark: of two concurrent uses of one token, the loser is treated as a replay.
        if not grant_store.rotate_refresh_token(row, self._successor, self._audit_row):
            self._revoke_family(row)
            raise InvalidGrantError("The refresh token was already used.")
        audit.announce(self._audit_row)
        return answer

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        # Done by create_token_response, with the new token's write, once the whole answer is made.
        return None
