"""The authorization server put together at start-up: our grants, client authentication methods, extensions and
endpoints on Authlib's Flask server (:mod:`idp.oidc.server`)."""

from __future__ import annotations

from flask import Flask

from ..store.clients import get_client
from . import dpop
from .client_auth import PrivateKeyJWT, authenticate_client_secret_basic
from .endpoints.end_session import EndSessionEndpoint
from .endpoints.introspection import IntrospectionEndpoint
from .endpoints.par import PushedAuthorizationEndpoint
from .endpoints.revocation import RevocationEndpoint
from .endpoints.userinfo import UserInfoEndpoint, build_resource_protector
from .grants.authorization_code import AuthorizationCodeGrant
from .grants.client_credentials import ClientCredentialsGrant
from .grants.refresh_token import RefreshTokenGrant
from .id_token import OpenIDCode, OpenIDRefresh
from .pkce import RequiredS256CodeChallenge
from .server import AuthorizationServer, IssuerParameter


def build_authorization_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer()
    server.init_app(app, query_client=get_client, save_token=None)
    server.register_grant(
        AuthorizationCodeGrant,
        [RequiredS256CodeChallenge(), OpenIDCode(require_nonce=False), dpop.CodeBinding()],
    )
    server.register_grant(RefreshTokenGrant, [OpenIDRefresh()])
    server.register_grant(ClientCredentialsGrant)
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
    server.register_extension(IssuerParameter())
    server.register_endpoint(PushedAuthorizationEndpoint)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(UserInfoEndpoint(resource_protector=build_resource_protector()))
    server.register_endpoint(EndSessionEndpoint)
    return server
