"""Signed request objects (RFC 9101, JAR): an authorization request sent as a JWT the client signed, by value in
the ``request`` parameter, at the authorization endpoint or in a pushed request (RFC 9126).

Authlib's :class:`~authlib.oauth2.rfc9101.JWTAuthenticationRequest` finds the object, verifies its signature with
the client's registered keys (idp.oidc.client_keys) and checks that its ``client_id`` is the request's and that
it holds no ``request`` or ``request_uri``. We add what it leaves to the server: the algorithms the client may
use (``--request-object-alg``, or its profile's), and the claims FAPI 2.0 and RFC 9101 section 10.8 rely on
against replay: ``iss`` the client, ``aud`` the issuer, ``exp`` and ``nbf`` at most an hour apart, and a ``jti``
that works once, whichever instance sees it. Only the object's parameters count: any sent beside it are ignored
(section 5). A ``request_uri`` pointing elsewhere is not fetched: only pushed requests' URNs are accepted.
"""

from __future__ import annotations

import json
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9101 import JWTAuthenticationRequest
from authlib.oauth2.rfc9101.errors import InvalidRequestObjectError, RequestUriNotSupportedError
from joserfc import jwt
from werkzeug.datastructures import MultiDict

from .. import clock
from ..provider import current_provider
from ..security import sha256_hex
from ..store.models import Client
from . import paths
from .client_keys import ClientKeyResolver
from .errors import quoted
from .fapi import client_profile
from .server import authorization_server

#: RFC 9101 section 10.8 and FAPI 2.0 Message Signing section 5.3.1: a request object lives an hour at most.
MAX_LIFETIME = 3600
LEEWAY = 10
#: Claims of the JWT itself, not parameters of the authorization request.
JWT_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "jti")


class SignedRequestObject(JWTAuthenticationRequest):
    """Authlib's request-object support, with the client's keys and algorithms and the claims we require."""

    def __init__(self) -> None:
        super().__init__(support_request=True, support_request_uri=False)

    @property
    def claims_validator(self) -> jwt.JWTClaimsRegistry:  # type: ignore[override]
        return jwt.JWTClaimsRegistry(
            now=clock.timestamp,
            leeway=LEEWAY,
            client_id={"essential": True},
            iss={"essential": True},
            aud={"essential": True, "value": current_provider().issuer},
            exp={"essential": True},
            nbf={"essential": True},
            jti={"essential": True},
        )

    def resolve_client_public_key(self, client: Client) -> ClientKeyResolver:
        return current_provider().client_keys.resolver(client, self.get_request_object_signing_algorithms(client))

    def get_request_object_signing_algorithms(self, client: Client) -> list[str]:
        return client_profile(client).request_object_algorithms(client)

    def get_server_metadata(self) -> dict[str, Any]:
        return {"require_signed_request_object": False}

    def get_client_require_signed_request_object(self, client: Client) -> bool:
        return False


_request_objects = SignedRequestObject()


def unpack_request_object(params: MultiDict[str, str], client: Client) -> MultiDict[str, str]:
    """The parameters of the request object in ``params`` (``params`` itself when there is none), checked; raises
    ``invalid_request_object`` (or ``invalid_request`` for a request that also has ``request_uri``)."""
    if "request" not in params:
        return params
    if "request_uri" in params:
        raise InvalidRequestError("The 'request' and 'request_uri' parameters are mutually exclusive.")
    if len(params.getlist("request")) > 1:
        raise InvalidRequestError("The 'request' parameter appears more than once.")
    request = OAuth2Request("GET", current_provider().url(paths.AUTHORIZE))
    request.payload = BasicOAuth2Payload({key: params[key] for key in params})
    try:
        if not client.jwks and not client.jwks_uri:
            raise InvalidRequestObjectError("The client has no registered keys to verify a request object with.")
        _request_objects.parse_authorization_request(authorization_server(), request)
    except (InvalidRequestObjectError, RequestUriNotSupportedError):
        raise
    except OAuth2Error as error:
        # Authlib says invalid_request for an algorithm the client may not use and for a client_id that is not
        # the request's: both are faults of the object (RFC 9101 section 6.3).
        raise InvalidRequestObjectError(error.description) from None
    claims = dict(request.payload.data)
    _check_claims(claims, client)
    return _parameters(claims)


def _check_claims(claims: dict[str, Any], client: Client) -> None:
    if claims["iss"] != client.client_id:
        raise InvalidRequestObjectError("The request object's 'iss' must be the client_id.")
    if not isinstance(claims["nbf"], int | float) or claims["exp"] - claims["nbf"] > MAX_LIFETIME:
        raise InvalidRequestObjectError(f"The request object may be valid for {MAX_LIFETIME} s at most (exp - nbf).")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 256:
        raise InvalidRequestObjectError("The request object's 'jti' must be a unique string.")
    ttl = max(int(claims["exp"]) - clock.timestamp(), 0) + LEEWAY + 1
    key = f"request-object:{sha256_hex(client.client_id)}:{sha256_hex(claims['jti'])}"
    if not current_provider().store.add(key, {}, ttl):
        raise InvalidRequestObjectError("This request object was used before (its 'jti' is spent).")


def _parameters(claims: dict[str, Any]) -> MultiDict[str, str]:
    """The request object's claims as authorization request parameters (strings; several values for a list)."""
    pairs: list[tuple[str, str]] = []
    for name, value in claims.items():
        if name in JWT_CLAIMS:
            continue
        if isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, bool):
            raise InvalidRequestObjectError(f"The request object's {quoted(name)} must not be a boolean.")
        elif isinstance(value, int | float):
            pairs.append((name, str(int(value)) if float(value).is_integer() else str(value)))
        elif isinstance(value, dict):
            pairs.append((name, json.dumps(value)))  # the claims parameter (OpenID Connect Core section 6.1)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            pairs.extend((name, item) for item in value)  # resource (RFC 8707 section 2.1)
        else:
            raise InvalidRequestObjectError(f"The request object's {quoted(name)} has a value of an unexpected type.")
    return MultiDict(pairs)
