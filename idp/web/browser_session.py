"""Server-side browser sessions in the key-value store.

The cookie holds only a random token; the store keeps the session's data under the token's hash. Unlike
Flask's signed-cookie sessions, a session here can be destroyed on the server, and :func:`regenerate`
gives it a new token at login and logout so a token planted before login is worthless after it
(session fixation).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from ..security import new_token, sha256_hex
from ..store.kv import KeyValueStore, StoreUnavailable

KEY_PREFIX = "browser-session:"

#: Machine-to-machine endpoints and probes: no browser session is read or written there, so they cost no store
#: round trip and keep answering what they can when the store is down.
STATELESS_PATHS = ("/token", "/userinfo", "/jwks.json", "/.well-known/", "/healthz", "/readyz", "/metrics")


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, token: str | None = None) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.token = token
        self.new = token is None
        self.modified = False
        self.old_token: str | None = None
        #: Set when the store could not be read; the request then answers 503 (see ``raise_if_unavailable``).
        self.unavailable: StoreUnavailable | None = None
        self.stateless = False


def regenerate() -> None:
    """Give the current session a new token at the next response; the old one stops working."""
    current: ServerSession = session  # type: ignore[assignment]
    if current.token is not None:
        current.old_token = current.token
        current.token = None
    current.modified = True


class KeyValueSessionInterface(SessionInterface):
    def __init__(self, store: KeyValueStore, cookie_name: str, logged_in_ttl: int, anonymous_ttl: int) -> None:
        self.store = store
        self.cookie_name = cookie_name
        self.logged_in_ttl = logged_in_ttl
        self.anonymous_ttl = anonymous_ttl

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        if request.path.startswith(STATELESS_PATHS):
            stateless = ServerSession()
            stateless.stateless = True
            return stateless
        token = request.cookies.get(self.cookie_name)
        if token and len(token) <= 128:
            try:
                data = self.store.get(KEY_PREFIX + sha256_hex(token))
            except StoreUnavailable as error:
                # Raised from a before_request hook instead, where the error pages can answer it.
                failed = ServerSession(None, token)
                failed.unavailable = error
                return failed
            if data is not None:
                return ServerSession(data, token)
        return ServerSession()

    def save_session(self, app: Flask, session: ServerSession, response: Response) -> None:  # type: ignore[override]
        if session.stateless or session.unavailable is not None:
            return
        try:
            self._save(app, session, response)
        except StoreUnavailable as error:
            # Not saved: this answer is replaced by a 503, whose own save must not fail again.
            session.unavailable = error
            raise

    def _save(self, app: Flask, session: ServerSession, response: Response) -> None:
        if session.old_token is not None:
            self.store.delete(KEY_PREFIX + sha256_hex(session.old_token))
        if not session:
            if session.token is not None and session.modified:
                self.store.delete(KEY_PREFIX + sha256_hex(session.token))
            if session.modified or session.old_token is not None:
                response.delete_cookie(self.cookie_name, path="/")
            return
        if not session.modified and session.token is not None:
            return
        if session.token is None:
            session.token = new_token(32)
        ttl = self.logged_in_ttl if session.get("sid") else self.anonymous_ttl
        self.store.put(KEY_PREFIX + sha256_hex(session.token), dict(session), ttl)
        response.set_cookie(
            self.cookie_name,
            session.token,
            httponly=True,
            secure=self.get_cookie_secure(app),
            samesite="Lax",
            path="/",
        )


def raise_if_unavailable() -> None:
    """before_request: a session that could not be read makes the request a 503 (the store is down)."""
    current = session
    if isinstance(current, ServerSession) and current.unavailable is not None:
        raise current.unavailable
