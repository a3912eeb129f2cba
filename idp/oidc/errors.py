"""Errors of the protocol endpoints: Authlib's typed OAuth 2.0 errors, plus the OpenID Connect ones it lacks.

An error description may only hold printable ASCII without quote or backslash (RFC 6749 section 5.2);
anything taken from a request goes through :func:`quoted` first.
"""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import OAuth2Error

_SAFE = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]{1,80}$")


def quoted(value: object) -> str:
    """``value`` in single quotes when it is safe to echo in an error description, else a placeholder."""
    text = str(value)
    return f"'{text}'" if _SAFE.match(text) and "'" not in text else "(a value that cannot be shown)"


class RequestNotSupportedError(OAuth2Error):
    """OpenID Connect Core section 3.1.2.6: request objects are not supported here."""

    error = "request_not_supported"


class RequestUriNotSupportedError(OAuth2Error):
    error = "request_uri_not_supported"


class RegistrationNotSupportedError(OAuth2Error):
    error = "registration_not_supported"


class UnmetAuthenticationRequirementsError(OAuth2Error):
    """OpenID Connect Core (errata set 2) / IANA: an essential ``acr`` the provider cannot meet."""

    error = "unmet_authentication_requirements"


class TemporarilyUnavailableError(OAuth2Error):
    error = "temporarily_unavailable"
    status_code = 503


class UnsupportedResponseTypeError(OAuth2Error):
    """RFC 6749 section 4.1.2.1; Authlib's own class echoes the raw value, which may not be ASCII."""

    error = "unsupported_response_type"
