"""The client credentials grant (RFC 6749 section 4.4): a confidential client acting for itself."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants

from ..scope_rules import check_client_scopes
from ..tokens import token_response
from .client_methods import CONFIDENTIAL_METHODS


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_METHODS

    def validate_requested_scope(self) -> None:
        self.request.scope = " ".join(check_client_scopes(self.request.client, self.request.payload.scope))

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        # Authlib passes the raw requested scope; the checked one (with the default applied) is on the request.
        return token_response(client=self.client, user=None, scope=self.request.scope, grant=None)
