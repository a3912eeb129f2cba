"""The authorization server: Authlib's Flask server with our grants, client authentication and endpoints."""

from __future__ import annotations

import logging
from typing import Any

from authlib.common.urls import add_params_to_uri, url_decode, urlparse
from authlib.integrations.flask_oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload
from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc9207 import IssuerParameter as _IssuerParameter
from flask import Request, Response, current_app, g
from flask import request as flask_request

from ..ops.metrics import count_audit_event
from ..provider import current_provider
from ..store import audit
from . import dpop
from .tokens import token_issued_event

log = logging.getLogger(__name__)


def add_issuer(response: Response) -> Response:
    """Add ``iss`` (RFC 9207) to an authorization response's redirect, once."""
    location = response.location
    if location:
        query = dict(url_decode(urlparse.urlparse(location).query))
        if "iss" not in query:
            response.location = add_params_to_uri(location, {"iss": current_provider().issuer})
    return response


class IssuerParameter(_IssuerParameter):
    def add_issuer_parameter(self, authorization_server: Any, response: Response) -> None:
        add_issuer(response)

    def get_issuer(self) -> str:
        return current_provider().issuer


class IssuerURLRequest(OAuth2Request):
    """The Flask request as Authlib's ``FlaskOAuth2Request`` presents it, with its URL as clients see it: under
    the issuer.

    Behind a TLS-terminating proxy the app sees plain http, and Authlib would refuse every request as
    ``insecure_transport``; the issuer is https (or loopback) by configuration, so its URL is the true one.
    ``FlaskOAuth2Request`` takes the URL from the request itself, so this is an ``OAuth2Request`` given that URL,
    with the Flask request's payload, arguments and form as ``FlaskOAuth2Request`` has them.
    """

    def __init__(self, request: Request) -> None:
        uri = current_provider().url(request.full_path.rstrip("?"))
        super().__init__(method=request.method, uri=uri, headers=request.headers)
        self.payload = FlaskOAuth2Payload(request)
        self._flask_request = request

    @property
    def args(self) -> Any:
        return self._flask_request.args

    @property
    def form(self) -> Any:
        return self._flask_request.form


class AuthorizationServer(_AuthorizationServer):
    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        # The authorization endpoint passes a request rebuilt from stored parameters when it resumes.
        if isinstance(request, OAuth2Request):
            return request
        # The request object itself, not Flask's proxy of it: Authlib reads the form through it a few times a request.
        return IssuerURLRequest(flask_request._get_current_object())

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        client = super().authenticate_client(request, methods, endpoint)
        if endpoint == "token":
            dpop.check_client_sent_proof(client)
        return client

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        # The code and refresh grants write their token.issued row with their own rows (their save_token); this is
        # for the others. The token view commits once the whole response is made.
        if request.payload.grant_type == "client_credentials":
            # A machine's token for itself concerns no person: counted and logged, not written to the audit
            # table, which keeps this grant free of database writes (it is the one relying parties call most).
            count_audit_event("token.issued", {"grant_type": "client_credentials"})
            # Logged on the request's access line (one line, one write, per token), not on a line of its own.
            g.access_detail = {"client_id": request.client.client_id, "grant_type": "client_credentials"}
            return
        audit.write(token_issued_event(token, request))


def redirect_with_error(error: OAuth2Error, redirect_uri: str, state: str | None) -> Response:
    """An authorization error, sent back to the client's verified redirect URI with ``state`` and ``iss``."""
    error.redirect_uri = redirect_uri
    error.redirect_fragment = False
    error.state = state
    return add_issuer(authorization_server().handle_error_response(None, error))


def authorization_server() -> AuthorizationServer:
    return current_app.extensions["idp.authorization_server"]
