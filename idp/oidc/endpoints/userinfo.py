"""The UserInfo endpoint (OpenID Connect Core section 5.3): GET or POST, the access token in the
``Authorization`` header or, for POST, in the form body (RFC 6750 sections 2.1 and 2.2).

A DPoP-bound access token comes as ``Authorization: DPoP <token>`` with a proof of its key over this request
(RFC 9449 section 7); sent as a bearer token, it is refused (section 7.2). A token meant for other resource
servers (RFC 8707) is not for userinfo.

What the answer releases is written to the disclosure ledger before it is given (idp.oidc.disclosures)."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    MissingAuthorizationError,
    OAuth2Error,
    TokenValidator,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from authlib.oidc.core import UserInfo
from authlib.oidc.core import UserInfoEndpoint as _UserInfoEndpoint
from flask import request as flask_request

from ...provider import current_provider
from .. import dpop, paths
from ..claims import released_claim_names, user_claims
from ..disclosures import record_before_answering, release_of
from ..resource_indicators import audience_includes
from ..tokens import AccessToken, read_access_token

REALM = "hoviyat"


def is_for_userinfo(token: AccessToken) -> bool:
    """A token without resource indicators is the client's, for userinfo; one for other resource servers is not."""
    audience = token.claims.get("aud")
    return audience_includes(audience, token.client.client_id) or audience_includes(
        audience, current_provider().url(paths.USERINFO)
    )


class AccessTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> AccessToken | None:
        return read_access_token(token_string)

    def validate_token(self, token: AccessToken | None, scopes: Any, request: Any) -> None:
        super().validate_token(token, scopes, request)
        assert token is not None
        if dpop.bound_key(token.claims) is not None:
            # RFC 9449 section 7.2: a DPoP-bound token is never accepted as a bearer token.
            raise InvalidTokenError(
                "This access token is DPoP-bound: send it as Authorization: DPoP with a proof.", realm=REALM
            )
        if not is_for_userinfo(token):
            raise InvalidTokenError("This access token is for another resource server.", realm=REALM)


class DPoPTokenValidator(TokenValidator):
    """``Authorization: DPoP <token>`` with a ``DPoP`` proof (RFC 9449 section 7.1)."""

    TOKEN_TYPE = "dpop"

    def authenticate_token(self, token_string: str) -> AccessToken | None:
        return read_access_token(token_string)

    def validate_token(self, token: AccessToken | None, scopes: Any, request: Any) -> None:
        if token is None or token.is_expired() or token.is_revoked():
            raise dpop.DPoPChallenge("invalid_token", "The access token is expired, revoked or not one of ours.")
        bound = dpop.bound_key(token.claims)
        if bound is None:
            raise dpop.DPoPChallenge("invalid_token", "This access token is not DPoP-bound: send it as Bearer.")
        # The token as the request sent it, for the proof's ath (the header was parsed into this validator).
        token_string = flask_request.headers.get("Authorization", "").split(None, 1)[-1]
        dpop.verify_resource_proof(token_string, bound)
        if not is_for_userinfo(token):
            raise dpop.DPoPChallenge("invalid_token", "This access token is for another resource server.")
        if self.scope_insufficient(token.get_scope(), scopes):
            raise InsufficientScopeError()


class BearerChallenge(OAuth2Error):
    """No bearer token at all: 401 with a bare ``Bearer`` challenge and no error code (RFC 6750 section 3.1)."""

    error = "invalid_request"
    description = "An access token is required."
    status_code = 401

    def get_headers(self) -> list[tuple[str, str]]:
        # Both schemes are offered (RFC 9449 section 7.2), with no error code (RFC 6750 section 3.1).
        return [
            *super().get_headers(),
            ("WWW-Authenticate", f'Bearer realm="{REALM}"'),
            ("WWW-Authenticate", dpop.dpop_challenge()),
        ]


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
    protector.register_token_validator(DPoPTokenValidator(realm=REALM))
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
        claims = user_claims(user, client, names, claims_request, "userinfo")
        if not record_before_answering(release_of(claims, client, "userinfo"), token.grant.id):
            raise InvalidTokenError(realm=REALM)  # the account was deleted since its grant was read
        return UserInfo(claims)


__all__ = ["UserInfoEndpoint", "build_resource_protector"]
