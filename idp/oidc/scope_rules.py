"""Which scopes a request may carry: only those the client is registered for (RFC 6749 section 3.3)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError

from ..scopes import USER_SCOPES
from ..store.models import Client
from .errors import quoted


def check_user_scopes(client: Client, requested: str | None) -> list[str]:
    """Scopes of a request made on a user's behalf: ``openid`` required, every scope registered."""
    scopes = (requested or "").split()
    if "openid" not in scopes:
        raise InvalidScopeError("The 'openid' scope is required.")
    _check_registered(client, scopes)
    return scopes


def check_client_scopes(client: Client, requested: str | None) -> list[str]:
    """Scopes of a client-credentials request: the client's own API scopes, never a scope about a person.

    Without ``scope`` the token carries every API scope the client is registered for.
    """
    registered = [s for s in client.scopes if s not in USER_SCOPES]
    if not requested:
        return registered
    scopes = requested.split()
    for scope in scopes:
        if scope in USER_SCOPES:
            raise InvalidScopeError(f"The scope {quoted(scope)} needs a user; it cannot be granted to a client alone.")
    _check_registered(client, scopes)
    return scopes


def _check_registered(client: Client, scopes: list[str]) -> None:
    allowed = set(client.scopes)
    for scope in scopes:
        if scope not in allowed:
            raise InvalidScopeError(f"The client is not registered for the scope {quoted(scope)}.")
