"""Our WSGI app served by gunicorn's asyncio (ASGI) worker: one hand-off to a thread per request, or none.

Why not gunicorn's gthread worker: each request on a kept-alive connection passes from its poller thread to a
pool thread and back, and on this kind of machine that machinery alone held a worker to 3,500-4,500 requests a
second answering a fixed body (a bare ASGI app on the asyncio worker: 15,000). Why not the a2wsgi bridge: it
sends every response message from the thread back to the event loop and waits for it (three crossings per
request): 2,400 a second, below gthread. Here the whole request body is read on the event loop first (it is
small: the app refuses more than ``MAX_CONTENT_LENGTH``), the app runs once with a buffered input, its whole
answer is collected (every answer of ours is small and finite), and the loop sends it: 7,100-12,700 a second
through a thread as the machine varied (bench/floor.py measures it before every benchmark), 11,000 on the loop
itself.

Running on the loop itself blocks every other connection of the worker for the time of the request, so only
requests that never wait on anything but our own PostgreSQL and Redis are run there (``inline_paths``): the
published documents and health checks. Pages (an Argon2 check takes ~30 ms, an SMS gateway may take seconds)
and the protocol endpoints (the token endpoint may fetch a client's ``jwks_uri``) go to the thread pool.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_SPECIAL_HEADERS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_SERVER_ERROR = b'{"error":"server_error"}'
#: How much of a body over the app's limit is read (and dropped) so that the client gets to read the 413.
DRAIN_LIMIT = 1024 * 1024


class _Answer:
    """What the WSGI app said: status, headers and the whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        # Nothing is sent before the app returns, so a second call (an error page replacing a response that
        # failed half-way, exc_info set) simply replaces the first.
        self.status = int(status[:3])
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return self.body.append  # PEP 3333's legacy write()


class WsgiOnAsgi:
    """An ASGI app running a WSGI app: ``WsgiOnAsgi(flask_app, threads=4, max_body=65536)``."""

    def __init__(self, app: WsgiApp, *, threads: int, max_body: int, inline_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.inline_paths = frozenset(inline_paths)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":  # none of ours: refuse the handshake
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # gunicorn has let the open requests finish; nothing is left in the pool but idle threads.
                self.executor.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        body = await self._read_body(scope, receive)
        if body is None:
            return  # the client went away before sending its whole request
        environ = self.environ(scope, body)
        if scope["path"] in self.inline_paths:
            answer = self._run(environ)
        else:
            answer = await asyncio.get_running_loop().run_in_executor(self.executor, self._run, environ)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": b"".join(answer.body)})

    async def _read_body(self, scope: dict[str, Any], receive: Callable) -> bytes | None:
        """The request body, kept up to just past the app's limit: the app itself then answers 413 in its own
        format (it refuses a length over the limit before reading; see environ()). The rest of a body too long
        is read and dropped, up to DRAIN_LIMIT: a server that answers and closes while the client is still
        sending resets the connection, and the client never reads the 413. None when the client went away."""
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is None and not any(name == b"transfer-encoding" for name, _ in scope["headers"]):
            return b""  # HTTP/1.1: no length and not chunked, no body
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            if int(declared) <= DRAIN_LIMIT and not await self._drain(receive, DRAIN_LIMIT):
                return None
            return b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
            if size > self.max_body:
                if not await self._drain(receive, DRAIN_LIMIT - size):
                    return None
                break
        return b"".join(chunks)

    @staticmethod
    async def _drain(receive: Callable, most: int) -> bool:
        """Read and drop the rest of a body, to its last message, giving up past ``most`` bytes (the server then
        closes the connection after the answer); False when the client went away."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            most -= len(message.get("body", b""))
            if not message.get("more_body", False) or most < 0:
                return True

    @staticmethod
    def environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
        """The PEP 3333 environ of an ASGI HTTP scope (what gunicorn's own WSGI workers build)."""
        root_path = scope.get("root_path", "")
        path = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        server = scope.get("server") or ("localhost", 80)
        client = scope.get("client")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            # WSGI strings are bytes in latin-1 clothing; ASGI's path is already decoded as UTF-8.
            "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
            "PATH_INFO": path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "SERVER_NAME": str(server[0]),
            "SERVER_PORT": str(server[1]) if server[1] is not None else "0",
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.get("scheme", "http"),
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if client:
            environ["REMOTE_ADDR"] = str(client[0])
            environ["REMOTE_PORT"] = str(client[1])
        for name, value in scope["headers"]:
            key = _SPECIAL_HEADERS.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        if body and "CONTENT_LENGTH" not in environ:
            # A chunked body, read whole and no longer chunked: its length is known now. Past the limit (read only
            # to just past it) the app refuses it with 413 without reading it, exactly as a declared length.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(len(body))
        return environ

    def _run(self, environ: dict[str, Any]) -> _Answer:
        answer = _Answer()
        try:
            iterable = self.app(environ, answer.start_response)
            try:
                answer.body.extend(chunk for chunk in iterable if chunk)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except Exception:
            # Flask turns the app's own errors into pages; this is a fault of the machinery around it.
            log.exception("request failed outside the app's error handling")
            answer.status = 500
            answer.headers = [(b"content-type", b"application/json")]
            answer.body = [_SERVER_ERROR]
        return answer
