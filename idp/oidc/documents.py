"""Discovery and JWKS answered before Flask: the two documents every relying party fetches most.

They depend on nothing in the request, so this WSGI layer serves their cached bytes (with ETag, conditional
304, CORS, caching and security headers, a request id, the metrics and the access line) without the session,
CSRF, rate-limit and page machinery every other request goes through. Anything unusual (another method, a
failure while re-reading the keys) is passed to the Flask app, whose error handling then answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from ..ops.logs import REQUEST_ID, new_request_id
from ..provider import Provider
from . import paths

DOCUMENT_PATHS = {paths.DISCOVERY: "discovery", paths.OAUTH_METADATA: "discovery", paths.JWKS: "jwks"}


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
    return provider.metadata, 3600


class PublicDocuments:
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
        from ..ops.logs import access_log, log_access_line
        from ..ops.metrics import LATENCY, REQUESTS

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
