"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) on Authlib's ``EndSessionEndpoint``.

With a valid ``id_token_hint`` the logout happens at once and the browser goes back to the registered
``post_logout_redirect_uri`` (exact match) with ``state``. Without a hint the user confirms first, since a
bare logout link is a way to log people out against their will (section 6).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint as _EndSessionEndpoint
from authlib.oidc.rpinitiated import EndSessionRequest
from flask import g

from ...config import SIGNING_ALGORITHMS
from ...provider import current_provider
from ...web import login_state
from ..tokens import read_id_token_hint


class EndSessionEndpoint(_EndSessionEndpoint):
    def validate_request(self, request: Any) -> EndSessionRequest:
        hint = request.payload.data.get("id_token_hint")
        # Authlib checks the signature; we also refuse our access tokens and tokens of another issuer.
        if hint and read_id_token_hint(hint) is None:
            raise InvalidRequestError("The 'id_token_hint' is not an ID token issued by this provider.")
        return super().validate_request(request)

    def get_server_jwks(self) -> dict[str, Any]:
        return current_provider().keys.jwks()

    def get_algorithms(self) -> list[str]:
        return list(SIGNING_ALGORITHMS)

    def is_post_logout_redirect_uri_legitimate(
        self, request: Any, post_logout_redirect_uri: str, client: Any, logout_hint: str | None
    ) -> bool:
        # Without a hint we redirect only after the user confirmed on our own page (CSRF-protected POST).
        return bool(g.get("logout_confirmed_by_user"))

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        claims = end_session_request.id_token_claims or {}
        login_state.log_out(hinted_session_id=claims.get("sid"), reason="rp_initiated_logout")
