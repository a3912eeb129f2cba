# ruff: noqa: S603, S607 - the harness runs taskset and gunicorn by design
"""The serving floor: what `idp serve`'s HTTP server alone allows on this machine at this moment.

A WSGI app that answers a fixed 2.5 KB JSON body (the size of our discovery document) with no work at all, run
by gunicorn with the settings of ``idp serve`` (idp.cli.gunicorn_settings: the gthread worker, keep-alive 5 s),
one worker of 4 threads, on core 0 and loaded exactly like the scenarios. No endpoint of ours can be faster than
this, so the figure tells how much of a gap is the server's and how much is ours, and, taken before each
backend's run, how fast the shared machine was at the time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from idp.cli.serve import GUNICORN_SETTINGS

from . import wrk
from .servers import free_port, wait_http

BODY = b'{"floor":"' + b"x" * 2500 + b'"}'


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def measure(duration: float, warmup: float, connections: int) -> wrk.WrkResult:
    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "gunicorn", "--config", f"python:{GUNICORN_SETTINGS}",
         "--workers", "1", "--threads", "4", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
         "bench.floor:app"],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url)
        env = {"BENCH_METHOD": "GET"}
        wrk.run(url, warmup, connections, "request.lua", env)
        return wrk.run(url, duration, connections, "request.lua", env)
    finally:
        server.terminate()
        server.wait(timeout=30)
