"""Resource indicators (RFC 8707): which resource servers an access token is for.

A client registered with ``--resource URI`` may name those servers with ``resource`` (repeatable) at the
authorization endpoint (or in a pushed request), and again at the token endpoint to narrow a token to some of
them. The access token's ``aud`` is then the resource (a list when several), so a resource server checking
``aud`` refuses a token meant for another. Without ``resource`` nothing changes: ``aud`` is the client, and the
token is for userinfo. Anything else is ``invalid_target`` (section 2).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import request as flask_request
from werkzeug.datastructures import MultiDict

from ..store.models import Client, Grant
from .errors import quoted

MAX_RESOURCES = 10


class InvalidTargetError(OAuth2Error):
    """RFC 8707 section 2: the resource is invalid, missing, unknown or malformed."""

    error = "invalid_target"
    status_code = 400


def requested_resources(values: list[str]) -> list[str]:
    """The ``resource`` values of a request, each an absolute URI without a fragment (section 2)."""
    if len(values) > MAX_RESOURCES:
        raise InvalidTargetError(f"At most {MAX_RESOURCES} resource values.")
    for value in values:
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or not parts.scheme or not parts.netloc or parts.fragment or "#" in value:
            raise InvalidTargetError(f"The resource {quoted(value)} is not an absolute URI without a fragment.")
    return list(dict.fromkeys(values))


def check_authorization_resources(client: Client, params: MultiDict[str, str]) -> list[str]:
    """The resources an authorization request asks for: each must be registered for the client."""
    resources = requested_resources(params.getlist("resource"))
    registered = set(client.resources or [])
    for resource in resources:
        if resource not in registered:
            raise InvalidTargetError(f"The resource {quoted(resource)} is not registered for this client.")
    return resources


def access_token_audience(client: Client, grant: Grant | None) -> str | list[str]:
    """The ``aud`` of the access token this token request gets: the resources it asks for, within what the grant
    covers (the client's registered resources when the grant names none); all of the grant's when it asks none;
    the client itself when there is no resource at all."""
    requested = requested_resources(flask_request.form.getlist("resource"))
    covered = list(grant.resources or []) if grant is not None and grant.resources else list(client.resources or [])
    for resource in requested:
        if resource not in covered:
            raise InvalidTargetError(f"The resource {quoted(resource)} is not covered by this grant.")
    audience = requested or (list(grant.resources) if grant is not None and grant.resources else [])
    if not audience:
        return client.client_id
    return audience[0] if len(audience) == 1 else audience


def audience_includes(claims_audience: object, audience: str) -> bool:
    return claims_audience == audience or (isinstance(claims_audience, list) and audience in claims_audience)
