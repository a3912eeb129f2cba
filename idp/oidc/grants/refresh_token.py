"""The refresh token grant (RFC 6749 section 6), with rotation on every use (RFC 9700 section 4.14.2).

Each use marks the presented token rotated and returns a new one in the same family (the grant). A rotated
token presented again is a replay: the whole family is revoked, so neither the attacker nor the client keeps
a working token, and the user must log in again. No refresh token outlives its family's absolute lifetime.

A FAPI 2.0 client's refresh token is not rotated (FAPI 2.0 Security Profile section 5.3.2.1: a client whose answer
was lost must be able to retry): it is sender-constrained by the client's authentication instead, and each use
moves its idle expiry (:meth:`RefreshTokenGrant._kept_token`).
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Error, grants

from ... import clock
from ...provider import current_provider
from ...store import audit
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
    """Claim the presented token first (on PostgreSQL one statement that checks it, marks it rotated and writes
    its successor and the audit row), then make the answer (access token, refresh token, ID token). If the answer
    cannot be made, the claim is withdrawn, so the client's retry works; a token claimed by a request whose worker
    then died is spent (the client's retry counts as a replay), as when an answer is lost on its way."""

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self) -> None:
        # Authlib's, with its three steps (find the token, check the client, check the scope) made by the claim.
        client = self._validate_request_client()
        self.request.client = client
        presented = self.request.form.get("refresh_token")
        if presented is None:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        check_refresh_token_binding(client, presented)
        if not client_profile(client).rotates_refresh_tokens:
            self._claim = None
            self.request.refresh_token = self._kept_token(client, presented)
            return
        self._claim = grant_store.claim_refresh_token(
            presented,
            client_id=client.client_id,
            scope=self.request.payload.scope or None,
            idle_ttl=current_provider().config.tokens.refresh_token_idle_ttl,
            audit_row=audit.event_row("token.issued", client_id=client.client_id),
        )
        try:
            self.request.refresh_token = self._checked(self._claim, client, presented)
        except OAuth2Error:
            self._withdraw()  # a claim this check refuses: cannot happen while the claim's SQL and this agree
            raise

    def _checked(self, claim: grant_store.RefreshClaim, client: Any, presented: str) -> RefreshToken:
        """The presented token, as it was before the claim, checked as Authlib's grant and ours would."""
        row = claim.presented
        if row is None:
            raise InvalidGrantError()
        if row.rotated_at is not None:
            self._revoke_family(row)
            raise InvalidGrantError()
        if (
            not row.check_client(client)
            or not grant_store.is_grant_active(row.grant, claim.at)
            or row.expires_at <= claim.at
            or row.grant.user is None
        ):
            raise InvalidGrantError()
        self._validate_token_scope(row)
        if not claim.rotated:
            # Usable as it was read, yet not rotated by this claim: a concurrent use of it rotated it first. Of
            # the two, this one is treated as the replay (RFC 9700 section 4.14.2). Read again first, so that a
            # disagreement between the claim's SQL and these checks could never revoke a family.
            now_stored = grant_store.find_refresh_token(presented)
            if now_stored is not None and now_stored.rotated_at is not None:
                self._revoke_family(row)
            else:
                log.error("a refresh token the checks accept was not claimed; refused, its family left alone")
            raise InvalidGrantError("The refresh token was already used.")
        return row

    def _kept_token(self, client: Any, presented: str) -> RefreshToken:
        """The presented token of a client whose tokens are not rotated, checked, its idle expiry moved on."""
        row = grant_store.find_refresh_token(presented)
        if row is None or row.rotated_at is not None or not row.check_client(client):
            raise InvalidGrantError()
        if not grant_store.is_grant_active(row.grant) or row.expires_at <= clock.now() or row.grant.user is None:
            raise InvalidGrantError()
        self._validate_token_scope(row)
        grant_store.extend_refresh_token(row, current_provider().config.tokens.refresh_token_idle_ttl)
        return row

    def _revoke_family(self, row: RefreshToken) -> None:
        grant_id, user_id, client_id = row.grant_id, row.grant.user_id, row.grant.client_id
        # Out of whatever the session holds: the revocation and its audit row are written together.
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
        # Not rotated: the same token again, which the client keeps (RFC 6749 section 6).
        token["refresh_token"] = self._claim.successor.token if self._claim else self.request.form["refresh_token"]
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        # The token.issued row was written with the claim; a kept token's is written with its new expiry.
        if self._claim is None:
            audit.write(token_issued_event(token, self.request))

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        try:
            answer = super().create_token_response()  # the ID token included (Authlib's after-hook)
        except BaseException:
            self._withdraw()
            raise
        if self._claim is not None:
            audit.announce(self._claim.audit_row)
        return answer

    def _withdraw(self) -> None:
        """Undo this request's claim, if it rotated the token: its answer will not be given."""
        if self._claim is None:
            return
        try:
            grant_store.withdraw_claim(self._claim)
        except Exception:
            # The store failed as well (the error being answered is likely the same failure): the presented
            # token stays spent, and the client must sign in again.
            log.exception("a refresh whose answer failed could not be withdrawn; its token stays spent")

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        # Done by the claim, with the new token's write, before the answer was made.
        return None
