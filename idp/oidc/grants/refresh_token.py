"""The refresh token grant (RFC 6749 section 6), with rotation on every use (RFC 9700 section 4.14.2).

Each use marks the presented token rotated and returns a new one in the same family (the grant). A rotated
token presented again is a replay: the whole family is revoked, so neither the attacker nor the client keeps
a working token, and the user must log in again. No refresh token outlives its family's absolute lifetime.

A FAPI 2.0 client's refresh tokens are not rotated (FAPI 2.0 Security Profile section 5.3.2.1 allows it; its tokens
are sender-constrained instead): each use moves the token's idle expiry on. A public client's refresh token
bound to a DPoP key is used only with a proof of that key (RFC 9449 section 5).
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from ... import clock
from ...provider import current_provider
from ...store import audit, read_outside_a_transaction
from ...store import commit as commit_store
from ...store import grants as grant_store
from ...store import rollback as rollback_store
from ...store.models import RefreshToken, User
from ..dpop import check_refresh_token_binding
from ..fapi import client_profile
from ..tokens import token_issued_event, token_response
from .client_methods import ALL_METHODS

log = logging.getLogger(__name__)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Authlib's grant: the presented token is read with its grant and user and judged here
    (:meth:`authenticate_refresh_token`; Authlib checks the client and the scope), then the whole answer is made,
    the ID token included, and only then is the token rotated, with its successor, the audit row and the ledger's
    record of what the new ID token released (:func:`grant_store.rotate_refresh_token`). The rotation is
    conditional on the token being unrotated: of two uses that both read it unrotated, the first to write wins, and
    the other finds it rotated, a replay. Nothing is written before the answer is made, so an answer that could not
    be made leaves the token usable.

    The read and the write are each whole by themselves (on PostgreSQL the write is one statement), so they run
    outside a transaction there: no BEGIN and COMMIT around them, two round trips that would protect nothing.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        read_outside_a_transaction()
        token = grant_store.find_refresh_token(refresh_token)
        if token is None:
            return None
        if token.rotated_at is not None:
            self._revoke_family(token)
            return None
        now = clock.now()
        if token.expires_at <= now or not grant_store.is_grant_active(token.grant, now) or token.grant.user is None:
            return None
        check_refresh_token_binding(self.request.client, token)
        return token

    @property
    def rotates(self) -> bool:
        return client_profile(self.request.client).rotates_refresh_tokens

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
        grant = self.request.refresh_token.grant
        self.request.idp_grant = grant
        token = token_response(client=self.client, user=user, scope=scope or "", grant=grant)
        if not self.rotates:
            token["refresh_token"] = self.request.form["refresh_token"]  # the same again, which the client keeps
            return token
        self._successor = grant_store.new_refresh_token(grant, current_provider().config.tokens.refresh_token_idle_ttl)
        token["refresh_token"] = self._successor.token
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        # Written with the rotation, once the whole answer is made (create_token_response).
        self._audit_row = token_issued_event(token, self.request)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        # Done by the rotation, once the whole answer is made (create_token_response).
        return None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        answer = super().create_token_response()  # the ID token included (Authlib's after-hook)
        presented: RefreshToken = self.request.refresh_token
        release = getattr(self.request, "idp_release", None)  # what the new ID token released (the ledger's)
        if not self.rotates:
            idle_ttl = current_provider().config.tokens.refresh_token_idle_ttl
            if not grant_store.extend_refresh_token(presented, idle_ttl, self._audit_row, release):
                raise InvalidGrantError("The refresh token is no longer valid.")  # its account was deleted since
            audit.announce(self._audit_row)
            return answer
        if not grant_store.rotate_refresh_token(presented, self._successor, self._audit_row, release):
            # Another use rotated it since it was read: of the two, this one is the replay (RFC 9700 4.14.2).
            self._revoke_family(presented)
            raise InvalidGrantError("The refresh token was already used.")
        audit.announce(self._audit_row)
        return answer

    def _revoke_family(self, presented: RefreshToken) -> None:
        grant_id, user_id, client_id = presented.grant_id, presented.grant.user_id, presented.grant.client_id
        # Out of whatever the session holds, into a transaction of its own: the revocation and its audit row are
        # written together.
        rollback_store()
        if grant_store.revoke_grant_by_id(grant_id, "refresh_token_replayed"):
            audit.record("refresh_token.replayed", user_id=user_id, client_id=client_id, grant_id=grant_id)
            log.warning("refresh token replayed; family %s of client %s revoked", grant_id, client_id)
        commit_store()
