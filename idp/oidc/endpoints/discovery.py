"""The published documents: provider metadata (OpenID Connect Discovery 1.0 and RFC 8414, one document served at
both addresses) and the JWKS, built and served here.

They depend on nothing in the request, so :class:`PublishedDocuments`, a WSGI layer in front of the Flask app,
serves their cached bytes (with ETag, conditional 304, CORS, caching and security headers, a request id, the
metrics and the access line) without the session, CSRF and page machinery every other request goes through.
Anything unusual (another method, a failure while re-reading the keys) is passed to the Flask app, whose error
handling then answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from flask import Flask, Request, Response

from ...config import SIGNING_ALGORITHMS
from ...ops.logs import REQUEST_ID, new_request_id
from ...provider import Provider
from ...scopes import ACR_VALUES, SCOPE_CLAIMS, all_claims
from .. import dpop, fapi, paths
from ..grants.client_methods import ALL_METHODS, CONFIDENTIAL_METHODS

SIGNING_ALGS = list(SIGNING_ALGORITHMS)
DOCUMENT_PATHS = {paths.DISCOVERY: "discovery", paths.OAUTH_METADATA: "discovery", paths.JWKS: "jwks"}


def provider_metadata(provider: Provider) -> dict[str, Any]:
    url = provider.url
    return {
        "issuer": provider.issuer,
        "authorization_endpoint": url(paths.AUTHORIZE),
        "token_endpoint": url(paths.TOKEN),
        "userinfo_endpoint": url(paths.USERINFO),
        "jwks_uri": url(paths.JWKS),
        "end_session_endpoint": url(paths.END_SESSION),
        "revocation_endpoint": url(paths.REVOCATION),
        "introspection_endpoint": url(paths.INTROSPECTION),
        "scopes_supported": list(SCOPE_CLAIMS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": SIGNING_ALGS,
        "token_endpoint_auth_methods_supported": ALL_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": ALL_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": all_claims(),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        # Signed request objects by value (RFC 9101), at the authorization endpoint and in pushed requests.
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(fapi.CLIENT_ALGORITHMS),
        # request_uri: only the URNs of pushed requests (RFC 9126); none is fetched from another host, and no
        # client can register any (OpenID Connect Discovery section 3).
        "request_uri_parameter_supported": True,
        "require_request_uri_registration": True,
        "pushed_authorization_request_endpoint": url(paths.PUSHED_AUTHORIZATION_REQUEST),
        "require_pushed_authorization_requests": provider.config.oauth.require_par,
        "dpop_signing_alg_values_supported": list(dpop.ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": list(ACR_VALUES),
        "ui_locales_supported": ["fa", "en"],
        "claims_locales_supported": ["fa"],
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        # OpenID Connect for Identity Assurance 1.0, section 8.
        "verified_claims_supported": True,
        "trust_frameworks_supported": [provider.config.identity.trust_framework],
        "evidence_supported": ["electronic_record"],
        "claims_in_verified_claims_supported": ["national_id", "given_name", "family_name", "birthdate"],
    }


@lru_cache(maxsize=16)
def discovery_document(provider: Provider) -> dict[str, Any]:
    """The metadata document; it depends only on the configuration, so it is built once per provider."""
    return provider_metadata(provider)


class SerialisedDocument:
    """A JSON document's bytes and ETag, remade only when the dict it came from is replaced (key reload)."""

    def __init__(self) -> None:
        self.source: dict | None = None
        self.body = b""
        self.etag = ""

    def of(self, document: dict) -> SerialisedDocument:
        if document is not self.source:
            body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
            self.body, self.etag, self.source = body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', document
        return self


def document_of_kind(provider: Provider, kind: str) -> tuple[dict[str, Any], int]:
    """The document of ``kind`` ("discovery" or "jwks") and its Cache-Control max-age."""
    if kind == "jwks":
        # No longer than a new key waits before it signs (keys.publish_before_use), so a cached copy always holds
        # every key in use; relying parties also refetch on an unknown kid.
        return provider.keys.jwks(), provider.config.keys.jwks_max_age
    return discovery_document(provider), 3600


def document_response(provider: Provider, request: Request) -> Response:
    """The document at ``request.path`` as a Flask response (when a request reaches the app after all)."""
    document, max_age = document_of_kind(provider, DOCUMENT_PATHS[request.path])
    served = SerialisedDocument().of(document)
    response = Response(served.body, mimetype="application/json", headers={"Access-Control-Allow-Origin": "*"})
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["ETag"] = served.etag
    return response.make_conditional(request)


class PublishedDocuments:
    def __init__(self, wsgi_app: Callable[..., Any], flask_app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.flask_app = flask_app
        self.serialised = {"discovery": SerialisedDocument(), "jwks": SerialisedDocument()}
        self.ready: set[str] = set()  # kinds built once with an app context (discovery is built on first use)
        self.counted: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        kind = DOCUMENT_PATHS.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        if kind is None or method not in ("GET", "HEAD"):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        provider = self.flask_app.extensions["idp"]
        if provider.keys.fresh and kind in self.ready:
            document, max_age = document_of_kind(provider, kind)  # from memory: no app context to set up
        else:
            try:
                with self.flask_app.app_context():  # the keys are re-read from the database
                    document, max_age = document_of_kind(provider, kind)
            except Exception:  # the keys could not be re-read: let the app answer (503 and its logging)
                return self.wsgi_app(environ, start_response)
            self.ready.add(kind)
        served = self.serialised[kind].of(document)
        not_modified = served.etag in environ.get("HTTP_IF_NONE_MATCH", "")
        status = 304 if not_modified else 200
        offered = environ.get("HTTP_X_REQUEST_ID", "")
        trusted = environ.get("idp.trusted_proxy") and REQUEST_ID.match(offered)
        request_id = offered if trusted else new_request_id()
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", f"public, max-age={max_age}"),
            ("ETag", served.etag),
            ("Access-Control-Allow-Origin", "*"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Request-Id", request_id),
        ]
        if provider.config.uses_https:
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        body = b"" if not_modified or method == "HEAD" else served.body
        if not not_modified:
            headers.append(("Content-Length", str(len(served.body))))
        start_response("304 Not Modified" if not_modified else "200 OK", headers)
        self._account(environ, method, status, started, request_id)
        return [body]

    def _account(self, environ: dict[str, Any], method: str, status: int, started: float, request_id: str) -> None:
        from ...ops.logs import access_log, log_access_line
        from ...ops.metrics import LATENCY, REQUESTS

        path = environ["PATH_INFO"]
        elapsed = time.perf_counter() - started
        counters = self.counted.get((path, method, status))
        if counters is None:  # a handful of combinations: the metrics' children, looked up once
            counters = REQUESTS.labels(endpoint=path, method=method, status=str(status)), LATENCY.labels(endpoint=path)
            self.counted[(path, method, status)] = counters
        counters[0].inc()
        counters[1].observe(elapsed)
        if access_log.isEnabledFor(20):
            log_access_line(method, path, status, elapsed, environ.get("REMOTE_ADDR"), path, request_id)
