"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) on Authlib's ``EndSessionEndpoint``.

Only this browser's login is ever ended. With an ``id_token_hint`` naming that very login (its ``sid``, and the
``sub`` the client sees for its user) the logout happens at once and the browser goes back to the registered
``post_logout_redirect_uri`` (exact match) with ``state``; an expired hint still names it (section 2). A hint that
names another login (another user, another browser) or none is no reason to log this browser out unasked: the
user confirms first, as without a hint, since a bare logout link is a way to log people out against their will
(sections 4 and 6). A browser with no login left has nothing to end, and a valid hint still sends it back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint as _EndSessionEndpoint
from authlib.oidc.rpinitiated import EndSessionRequest
from flask import g

from ...config import SIGNING_ALGORITHMS
from ...provider import current_provider
from ...store.models import Client
from ...web import login_state
from ..claims import subject_for
from ..tokens import read_id_token_hint


def names_this_login(claims: dict[str, Any], client: Client | None) -> bool:
    """Whether an ID token's claims are about this browser's login: there is none to end, or it is the one the
    token's ``sid`` names and its user is the token's ``sub`` at the token's client."""
    login = login_state.current_session()
    if login is None:
        return True
    if client is None or claims.get("sid") != login.id:
        return False
    return claims.get("sub") == subject_for(login.user, client)


class EndSessionEndpoint(_EndSessionEndpoint):
    def validate_request(self, request: Any) -> EndSessionRequest:
        hint = request.payload.data.get("id_token_hint")
        # Authlib checks the signature; we also refuse our access tokens and tokens of another issuer.
        if hint and read_id_token_hint(hint) is None:
            raise InvalidRequestError("The 'id_token_hint' is not an ID token issued by this provider.")
        end_request = super().validate_request(request)
        claims = end_request.id_token_claims
        if claims is not None and not names_this_login(claims, end_request.client):
            # As if there were no hint: the user is asked, and returned only once they have confirmed.
            return dataclasses.replace(end_request, id_token_claims=None, redirect_uri=None)
        return end_request

    def get_server_jwks(self) -> dict[str, Any]:
        return current_provider().keys.jwks()

    def get_algorithms(self) -> list[str]:
        return list(SIGNING_ALGORITHMS)

    def is_post_logout_redirect_uri_legitimate(
        self, request: Any, post_logout_redirect_uri: str, client: Any, logout_hint: str | None
    ) -> bool:
        # Without a hint of this login we redirect only after the user confirmed on our own page (CSRF-protected).
        return bool(g.get("logout_confirmed_by_user"))

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        login_state.log_out(reason="rp_initiated_logout")
