"""gunicorn's settings and hooks for ``idp serve``, which runs ``gunicorn --config python:idp.cli.gunicorn_settings``
with the address, workers, threads and log level of its own command line (idp/cli/serve.py)."""

from __future__ import annotations

import gc
import os
import shutil
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.workers.gthread import ThreadWorker

wsgi_app = "idp.cli.gunicorn_settings:served_app()"

# gunicorn's thread worker (its own HTTP/1.1 parser, strict: the request smuggling shapes are refused; the app in
# `threads` threads; kept-alive connections waiting in a poller rather than in a thread), see ProviderWorker.
worker_class = "idp.cli.gunicorn_settings.ProviderWorker"
# The parser in Python, not gunicorn_h1c's C one (gunicorn[fast]): that one dropped some requests of more than
# 64 KiB sent on a kept-alive connection right after an answer (tests/test_serving.py sends such requests).
http_parser = "python"
# Seconds an idle kept-alive connection waits for its next request.
keepalive = 5
# A worker silent for this many seconds (stuck) is killed and replaced.
timeout = 30
# SIGTERM: the requests in flight have this many seconds to finish.
graceful_timeout = 20
# Connections waiting to be accepted.
backlog = 2048
# Request line, header count and header size keep gunicorn's limits (4094 bytes, 100, 8190 bytes: 414 or 431 past
# them); the body's is the app's (MAX_CONTENT_LENGTH, 413).

# Our own access line (JSON, request id, no query string) replaces gunicorn's; gunicorn's other lines go through
# the same handler (ProviderLogger).
accesslog = None
logger_class = "idp.cli.gunicorn_settings.ProviderLogger"

# X-Forwarded-* are applied by idp.ops.proxy, from server.trusted_proxies only: gunicorn believes no one.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
# gunicorn's control socket lives in one place per user; several instances on a machine would collide.
control_socket_disable = True


def served_app() -> Flask:
    """The app of one worker."""
    from .. import create_app
    from ..ops.body_limit import BodyLimit

    app = create_app()
    app.wsgi_app = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    return app


def post_worker_init(worker: Any) -> None:
    # The app the worker just built (routes, templates, translations, table metadata) lives as long as the worker.
    # Frozen, the collector stops scanning it on each full collection, a pause that would land on a request.
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges must not be added up any more (its counters and histograms still count).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:  # idp serve's own, made for this run
        shutil.rmtree(folder, ignore_errors=True)


class ProviderWorker(ThreadWorker):
    """gunicorn's gthread worker, which also stops listening once it stops accepting to shut down. The master
    closes its copy of the listening socket at once; when every worker has closed its own, new connections are
    refused (a load balancer tries another instance) instead of waiting in the socket's backlog while the requests
    in flight finish, to be reset at the end."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()


class ProviderLogger(glogging.Logger):
    """gunicorn's own lines (start, workers, errors) written by idp.ops.logs in the configured format (JSON or
    text), like every other line; forked workers keep that handler."""

    def setup(self, cfg: Any) -> None:
        from ..config import load_config
        from ..ops import logs

        super().setup(cfg)
        settings = load_config().observability
        logs.configure(settings.log_format, settings.log_level)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
