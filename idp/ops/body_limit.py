"""The app's body size limit (``MAX_CONTENT_LENGTH``) for every request body, however it is sent.

Werkzeug refuses a declared ``Content-Length`` over the limit with 413 without reading the body, but reads a
chunked body (no length) only up to the limit and parses what it read, so an oversized form would be served cut
short; its maintainers leave the limit of such bodies to the server, and gunicorn has none. This WSGI middleware
reads a chunked body before the app runs, to one byte past the limit, and hands it on with its length, which the
app then checks like a declared one.

A body over the limit is also read to its end (up to ``DRAIN_LIMIT``) before the app answers 413: a server that
answers while the client is still sending, and closes, may reset the connection before the client has read the
answer, and gunicorn keeps a connection alive after an unread body only if that body is small.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: How much of a body over the limit is read (and dropped) so that the client gets to read the 413.
DRAIN_LIMIT = 1024 * 1024


def _drain(stream: BinaryIO, most: int) -> None:
    while most > 0 and (chunk := stream.read(min(most, 64 * 1024))):
        most -= len(chunk)


class BodyLimit:
    """``app.wsgi_app = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])``"""

    def __init__(self, app: WsgiApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        declared = environ.get("CONTENT_LENGTH", "")
        if declared.isdigit():
            if self.limit < int(declared) <= DRAIN_LIMIT:
                _drain(stream, int(declared))  # the server's reader stops at the declared length
        elif environ.pop("HTTP_TRANSFER_ENCODING", None) is not None:
            # A broken chunk raises here, and the server answers 400 and closes the connection.
            body = stream.read(self.limit + 1)
            environ["CONTENT_LENGTH"] = str(len(body))
            if len(body) > self.limit:
                _drain(stream, DRAIN_LIMIT - len(body))
                body = b""  # the app refuses the request by its length alone
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)
