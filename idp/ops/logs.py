"""Logs: one JSON object per line (or plain text), each with the request id of the request it belongs to.

Every request gets an id: the ``X-Request-Id`` a trusted proxy sent, or a new one; it is echoed in the
response so a user's report, the proxy's log and ours can be matched. The access line carries the path but
never the query string (authorization requests carry ``state``, ``login_hint`` and ID tokens as hints), and
a last filter blanks anything that looks like a credential, in case a message ever carries one.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import random
import re
import sys
import threading
import time
import weakref
from typing import Any

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("idp.access")

#: ``name=value`` pairs and bearer credentials that must never reach a log, whatever a message says.
_SECRET_PATTERNS = [
    re.compile(
        r"(?i)\b(password|passwd|new_password|code|otp|client_secret|secret|access_token|refresh_token|id_token|"
        r"token|id_token_hint|logout_token|code_verifier|client_assertion)=([^&\s\"',]+)"
    ),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # a JWT
    # The same names as keys of a printed dict or JSON object (a library's debug line), quoted either way.
    re.compile(
        r"""(?i)(["'](?:password|new_password|code|otp|client_secret|access_token|refresh_token|id_token|"""
        r"""token|id_token_hint|logout_token|code_verifier|client_assertion)["']\s*:\s*)(["'])(.*?)\2"""
    ),
]


def redact(text: str) -> str:
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}=[redacted]", text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]{m.group(2)}", text)
    return _SECRET_PATTERNS[2].sub("[redacted-jwt]", text)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class JSONFormatter(logging.Formatter):
    FIELDS = ("method", "path", "status", "duration_ms", "remote_addr", "endpoint", "client_id", "grant_type")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def new_request_id() -> str:
    """32 hex digits, unique in practice but not secret: from Python's generator (seeded from the system's and
    re-seeded in each forked worker), which needs no system call per request as uuid4 does."""
    return f"{random.getrandbits(128):032x}"


class BatchedStreamHandler(logging.Handler):
    """Writes log records to a stream from a thread of its own, a batch at a time.

    The logging call only appends its record (with its message already made, so nothing it refers to can change
    under it): formatting, redaction and the write happen on the writer thread, which wakes every
    ``interval`` seconds, at once for a warning or worse, and at exit. Measured under load: a line written in the
    request (the handler's lock and one write system call per line, each handing the GIL to another thread) cost
    an introspection or a client-credentials grant about a sixth of its time, and discovery two fifths. A worker
    killed outright loses at most its last ``interval`` of lines (the audit log itself is in the database).
    """

    def __init__(self, stream: Any, interval: float = 0.05) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._start_writing()
        _batched_handlers.add(self)
        atexit.register(self.flush)

    def _start_writing(self) -> None:
        self._pending: collections.deque[logging.LogRecord] = collections.deque()
        self._wake = threading.Event()
        threading.Thread(target=self._write_batches, name="log-writer", daemon=True).start()

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        record.msg = record.message = record.getMessage()
        record.args = None
        self._pending.append(record)  # atomic: no lock in the caller's way
        if record.levelno >= logging.WARNING:
            self._wake.set()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def _write_batches(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self.lock:  # the writer thread, or the exit
            lines = []
            while self._pending:
                record = self._pending.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # standard error closed or gone: nowhere left to say so
                    pass


_batched_handlers: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def _write_on_in_a_forked_child() -> None:
    # A forked worker keeps its parent's handlers but not their writer threads: each gets a thread of its own, and
    # forgets the parent's pending records, which the parent writes.
    for handler in list(_batched_handlers):
        handler._start_writing()


os.register_at_fork(after_in_child=_write_on_in_a_forked_child)


def configure(log_format: str, level: str) -> None:
    """Send every log record to standard error in ``log_format`` (used by ``idp serve``; tests keep pytest's)."""
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    # A line per request: skip what none of our formats prints (the caller's frame, thread and process), as the
    # logging HOWTO's "Optimization" section suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our access line replaces werkzeug's, which logs query strings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def install(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        offered = request.headers.get("X-Request-Id", "")
        trusted = request.environ.get("idp.trusted_proxy", False)
        g.request_id = offered if trusted and REQUEST_ID.match(offered) else new_request_id()

    @app.after_request
    def log_access(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-Id"] = request_id
        started = g.get("request_started")
        if access_log.isEnabledFor(logging.INFO):
            log_access_line(
                request.method,
                request.path,
                response.status_code,
                time.perf_counter() - started if started else None,
                request.remote_addr,
                request.url_rule.rule if request.url_rule is not None else None,
                request_id,
                g.get("access_detail"),
            )
        return response


def log_access_line(
    method: str,
    path: str,
    status: int,
    seconds: float | None,
    remote_addr: str | None,
    endpoint: str | None,
    request_id: str | None,
    detail: dict[str, str] | None = None,
) -> None:
    """One access line: the path, never the query string; ``detail`` adds what the request did (ids only, e.g.
    the client a client-credentials token went to), as fields and at the end of the message."""
    access_log.info(
        "%s %s %s" + ("".join(f" {name}=%s" for name in detail) if detail else ""),
        method,
        path,
        status,
        *(detail.values() if detail else ()),
        extra={
            **(detail or {}),
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2) if seconds is not None else None,
            "remote_addr": remote_addr,
            "endpoint": endpoint,
            "request_id": request_id,
        },
    )
