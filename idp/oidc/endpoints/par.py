"""Pushed authorization requests (RFC 9126).

The client POSTs its authorization request to ``pushed_authorization_request_endpoint``, authenticated as at the
token endpoint, and gets a ``request_uri`` (a URN) that lives :data:`REQUEST_URI_TTL` seconds. The browser then
carries only ``client_id`` and ``request_uri`` to the authorization endpoint, which takes the pushed parameters
from the key-value store, once, for that client only (:mod:`idp.oidc.pushed_requests`). Nothing of the request can
be read or altered in the browser's address bar.

The pushed request is checked as the authorization endpoint would check it, and errors are answered here in
JSON (section 2.3). A ``request`` parameter (a signed request object, RFC 9101) is unpacked first; a ``DPoP``
proof binds the code that will be issued to its key (RFC 9449 section 10.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.endpoint import Endpoint, EndpointRequest
from flask import request as flask_request
from werkzeug.datastructures import MultiDict

from ...store.models import Client
from .. import dpop
from ..claims import parse_claims_request
from ..grants.client_methods import ALL_METHODS
from ..pushed_requests import REQUEST_URI_TTL, keep_pushed_request
from ..request_object import unpack_request_object
from ..resource_indicators import check_authorization_resources
from ..server import authorization_server
from .authorize import ParamsRequest, check_request_parameters, required_acr

#: Client authentication, not part of the authorization request.
CLIENT_AUTHENTICATION = ("client_assertion", "client_assertion_type", "client_secret")


@dataclass
class PushedRequest(EndpointRequest):
    params: MultiDict[str, str] | None = None


class PushedAuthorizationEndpoint(Endpoint):
    ENDPOINT_NAME = "pushed_authorization_request"

    def validate_request(self, request: OAuth2Request) -> PushedRequest:
        client = self.server.authenticate_client(request, ALL_METHODS, self.ENDPOINT_NAME)
        dpop.check_client_sent_proof(client, required=False)
        form = MultiDict(flask_request.form)
        if "request_uri" in form:
            raise InvalidRequestError("A pushed request cannot itself refer to a request_uri (RFC 9126 section 2.1).")
        for name in CLIENT_AUTHENTICATION:
            form.poplist(name)
        if form.get("client_id", client.client_id) != client.client_id:
            raise InvalidRequestError("The client_id is not the client that authenticated.")
        form["client_id"] = client.client_id
        params = unpack_request_object(form, client)
        if params.get("client_id", client.client_id) != client.client_id:
            raise InvalidRequestError("The request object's client_id is not the client that authenticated.")
        params = MultiDict(params)
        params["client_id"] = client.client_id
        check_pushed_parameters(params, client)
        return PushedRequest(request=request, client=client, params=params)

    def create_response(self, validated_request: EndpointRequest) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        assert isinstance(validated_request, PushedRequest) and validated_request.params is not None
        request_uri = keep_pushed_request(validated_request.client, validated_request.params)
        body = {"request_uri": request_uri, "expires_in": REQUEST_URI_TTL}
        return 201, body, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


def check_pushed_parameters(params: MultiDict[str, str], client: Client) -> None:
    """The checks of the authorization endpoint that need no user, answered as errors of this endpoint."""
    dpop_jkt = dpop.check_pushed_key(params.get("dpop_jkt"))
    if dpop_jkt is not None:
        params["dpop_jkt"] = dpop_jkt
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri or len(params.getlist("redirect_uri")) > 1 or not client.check_redirect_uri(redirect_uri):
        raise InvalidRequestError("The redirect_uri is missing or not registered for this client.")
    check_request_parameters(params)
    server = authorization_server()
    request = ParamsRequest(params)
    try:
        grant = server.get_authorization_grant(request)
        grant.validate_no_multiple_request_parameter(request)
        grant.validate_authorization_request()  # response_type, scope, PKCE (S256 only), nonce
    except OAuth2Error as error:
        error.redirect_uri = None  # Authlib would answer by redirecting: here it is the client that asked
        raise
    required_acr(params, parse_claims_request(params.get("claims")))
    check_authorization_resources(client, params)
