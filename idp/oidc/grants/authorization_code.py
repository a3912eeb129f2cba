"""The authorization code grant (RFC 6749 section 4.1) with OpenID Connect (Core section 3.1).

Stricter than Authlib's defaults:

- a code lives ``tokens.code_ttl`` seconds (60 by default) in the key-value store, only as a hash;
- a code is consumed atomically the first time its client presents it, whatever happens next, so a
  failed PKCE or redirect check also burns it;
- a code presented again revokes the grant it created and every token issued under it
  (RFC 6749 section 4.1.2, RFC 9700 section 4.2.4);
- no fallback to a registered redirect URI (see ``Client.get_default_redirect_uri``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oidc.core import AuthorizationCodeMixin
from flask import g

from ... import clock
from ...provider import current_provider
from ...security import sha256_hex
from ...store import audit
from ...store import commit as commit_store
from ...store import grants as grant_store
from ...store import users as user_store
from ...store.models import User
from .. import dpop
from ..authorization import EndUserAuthorization
from ..fapi import client_profile
from ..scope_rules import check_user_scopes
from ..tokens import token_issued_event, token_response
from .client_methods import ALL_METHODS

log = logging.getLogger(__name__)

CODE_KEY = "authorization-code:"


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    """An authorization code as kept in the key-value store (never the code itself, only its hash)."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    session_id: str
    auth_time: int
    acr: str
    amr: list[str]
    nonce: str | None
    claims_request: dict[str, Any] | None
    code_challenge: str
    code_challenge_method: str
    expires_at: int
    #: RFC 9449 section 10: only a DPoP proof of this key may exchange the code.
    dpop_jkt: str | None = None
    #: RFC 8707: the resource servers the authorization covers.
    resources: list[str] | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return self.amr


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def validate_requested_scope(self) -> None:
        check_user_scopes(self.request.client, self.request.payload.scope)

    def save_authorization_code(self, code: str, request: Any) -> None:
        authorization: EndUserAuthorization = request.user
        provider = current_provider()
        ttl = client_profile(request.client).code_ttl(provider.config.tokens.code_ttl)
        data = request.payload.data
        session = authorization.session
        record = {
            "client_id": request.client.client_id,
            "redirect_uri": request.payload.redirect_uri,
            "scope": request.scope,
            "user_id": authorization.user.id,
            "session_id": session.id,
            "auth_time": int(session.auth_time.timestamp()),
            "acr": session.acr,
            "amr": list(session.amr),
            "nonce": data.get("nonce"),
            "claims_request": authorization.claims_request,
            "code_challenge": data.get("code_challenge"),
            "code_challenge_method": data.get("code_challenge_method"),
            "expires_at": clock.timestamp() + ttl,
            "dpop_jkt": data.get("dpop_jkt"),
            "resources": data.getlist("resource") or None,
        }
        # The store's TTL only collects garbage; expires_at is what counts (and what tests move past).
        provider.store.put(CODE_KEY + sha256_hex(code), record, ttl + 5)

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if not isinstance(code, str) or not code or len(code) > 200:
            return None
        store = current_provider().store
        code_hash = sha256_hex(code)
        record = store.get(CODE_KEY + code_hash)
        if record is None:
            self._revoke_if_replayed(code_hash, client)
            return None
        if record["client_id"] != client.client_id:
            # Another client's code: refuse without consuming, so the rightful client can still use it.
            audit.record("code.wrong_client", client_id=client.client_id, code_client_id=record["client_id"])
            commit_store()
            return None
        record = store.consume(CODE_KEY + code_hash)
        if record is None:  # a concurrent request consumed it first: this one is a replay
            self._revoke_if_replayed(code_hash, client)
            return None
        g.consumed_code = (CODE_KEY + code_hash, record)
        if record["expires_at"] <= clock.timestamp():
            return None
        return AuthorizationCode(code_hash=code_hash, **record)

    def _revoke_if_replayed(self, code_hash: str, client: Any) -> None:
        grant = grant_store.find_grant_by_code_hash(code_hash)
        if grant is None:
            return
        if grant_store.revoke_grant(grant, "code_replayed"):
            audit.record("code.replayed", user_id=grant.user_id, client_id=grant.client_id, grant_id=grant.id)
            commit_store()
            log.warning("authorization code replayed; grant %s of client %s revoked", grant.id, grant.client_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Nothing to do: the code was consumed atomically in query_authorization_code.
        return None

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        return user_store.get_user(authorization_code.user_id)

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        code: AuthorizationCode = self.request.authorization_code
        config = current_provider().config
        grant = grant_store.new_grant(
            client_id=self.client.client_id,
            user_id=user.id if user else None,
            session_id=code.session_id,
            scope=scope or "",
            claims_request=code.claims_request,
            auth_time=dt.datetime.fromtimestamp(code.auth_time, dt.UTC),
            acr=code.acr,
            amr=code.amr,
            code_hash=code.code_hash,
            lifetime=config.tokens.refresh_token_absolute_ttl,
            dpop_jkt=dpop.refresh_token_binding(self.client),
            resources=code.resources,
        )
        self.request.idp_grant = grant
        token = token_response(client=self.client, user=user, scope=scope or "", grant=grant)
        self._first_refresh_token = None
        if include_refresh_token:
            self._first_refresh_token = grant_store.new_refresh_token(grant, config.tokens.refresh_token_idle_ttl)
            token["refresh_token"] = self._first_refresh_token.token
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        # Written with the grant, once the whole answer is made (create_token_response).
        self._audit_row = token_issued_event(token, self.request)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Make the whole answer (the ID token included, by Authlib's after-hook), then write the grant, its first
        refresh token, the audit row and the ledger's record of what the ID token released together
        (idp.store.grants.write_new_grant), in the request's transaction, which the token view commits: an answer
        that could not be made, or a worker killed before the commit, leaves no grant for an answer nobody
        received, and no release."""
        answer = super().create_token_response()
        release = getattr(self.request, "idp_release", None)  # None without an ID token (no openid scope)
        grant_store.write_new_grant(self.request.idp_grant, self._first_refresh_token, self._audit_row, release)
        audit.announce(self._audit_row)
        return answer


def code_exchange_committed() -> None:
    """The grant made from the consumed code is committed: the code must never come back."""
    g.pop("consumed_code", None)


def restore_consumed_code(error: BaseException) -> None:
    """After a failure of the database (not of the request's content) before the grant was committed, put the
    consumed code back for the rest of its life, so the client's retry works instead of meeting invalid_grant."""
    from ...web.error_pages import unavailable_service

    consumed = g.pop("consumed_code", None)
    if consumed is None or unavailable_service(error) != "database":
        return
    key, record = consumed
    remaining = int(record["expires_at"]) - clock.timestamp()
    if remaining <= 0:
        return
    try:
        current_provider().store.add(key, record, remaining + 5)
    except Exception:  # Redis down as well: the code is lost, the user signs in again
        log.warning("could not put back an authorization code after a database failure")
