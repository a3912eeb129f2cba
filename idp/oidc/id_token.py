"""OpenID Connect on top of the OAuth grants, as Authlib layers it: extensions that add an ID token to the
token response of the code grant (Core section 3.1.3.3) and the refresh grant (Core section 12.2)."""

from __future__ import annotations

from typing import Any

from authlib.oidc.core import grants as oidc_grants

from .tokens import issue_id_token


class OpenIDCode(oidc_grants.OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # The nonce protects the relying party, which checks it in the ID token. Refusing a nonce seen before
        # would only break a user who presses Back and signs in again with the same request.
        return False

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        return _id_token_for(token, request, nonce=request.authorization_code.get_nonce(), purpose="login")


class OpenIDRefresh(oidc_grants.OpenIDToken):
    """A fresh ID token on refresh: same ``sub``, ``aud`` and ``auth_time``, new ``iat``, no ``nonce``."""

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        return _id_token_for(token, request, nonce=None, purpose="refresh")


def _id_token_for(token: dict[str, Any], request: Any, nonce: str | None, purpose: str) -> str:
    """The ID token for a token response; the grant made or used for it is ``request.idp_grant``. What it releases
    is left as ``request.idp_release`` for the grant to write with its rows (idp.store.disclosures)."""
    issued = issue_id_token(
        client=request.client,
        user=request.user,
        grant=request.idp_grant,
        scope=token["scope"],
        nonce=nonce,
        access_token=token["access_token"],
        purpose=purpose,
    )
    request.idp_release = issued.release
    return issued.jwt
