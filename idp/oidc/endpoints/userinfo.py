"""The UserInfo endpoint (OpenID Connect Core section 5.3): GET or POST, the access token in the
``Authorization`` header or, for POST, in the form body (RFC 6750 sections 2.1 and 2.2)."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    MissingAuthorizationError,
    OAuth2Error,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oidc.core import UserInfo
from authlib.oidc.core import UserInfoEndpoint as _UserInfoEndpoint
from flask import request as flask_request

from ..claims import released_claim_names, user_claims
from ..tokens import AccessToken, read_access_token

REALM = "hoviyat"


class AccessTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> AccessToken | None:
        return read_access_token(token_string)


class BearerChallenge(OAuth2Error):
    """No bearer token at all: 401 with a bare ``Bearer`` challenge and no error code (RFC 6750 section 3.1)."""

    error = "invalid_request"
    description = "An access token is required."
    status_code = 401

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("WWW-Authenticate", f'Bearer realm="{REALM}"')]


class BearerResourceProtector(ResourceProtector):
    def parse_request_authorization(self, request: Any) -> tuple[Any, str]:
        body_token = None
        if flask_request.method == "POST" and flask_request.mimetype == "application/x-www-form-urlencoded":
            body_token = flask_request.form.get("access_token")
        if body_token is None:
            try:
                return super().parse_request_authorization(request)
            except (MissingAuthorizationError, UnsupportedTokenTypeError):
                raise BearerChallenge() from None
        if request.headers.get("Authorization"):
            # RFC 6750 section 2: a client MUST NOT use more than one method to send the token.
            raise InvalidRequestError("The access token was sent both in the header and in the body.")
        return self.get_token_validator("bearer"), body_token


def build_resource_protector() -> BearerResourceProtector:
    protector = BearerResourceProtector()
    protector.register_token_validator(AccessTokenValidator(realm=REALM))
    return protector


class UserInfoEndpoint(_UserInfoEndpoint):
    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        token: AccessToken = current_token._get_current_object()
        if user is None or token.grant is None:
            # A client-credentials token has no person behind it, and a deleted account has none any more.
            raise InvalidTokenError(realm=REALM)
        client = token.get_client()
        claims_request = token.grant.claims_request
        names = released_claim_names(scope.split(), claims_request, "userinfo", client)
        return UserInfo(user_claims(user, client, names, claims_request, "userinfo"))


__all__ = ["UserInfoEndpoint", "build_resource_protector"]
