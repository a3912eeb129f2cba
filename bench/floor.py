# ruff: noqa: S603, S607 - the harness runs taskset and gunicorn by design
"""The serving floor: what gunicorn alone allows on this machine at this moment.

A WSGI app that answers a fixed 2.5 KB JSON body (the size of our discovery document) with no work at all, run
by gunicorn with the worker settings of ``idp serve`` (one asyncio worker on uvloop where installed, the app in
a pool of 4 threads through idp.ops.asgi_bridge, keep-alive 5 s) on core 0 and loaded exactly like the
scenarios. No endpoint of ours that runs in the pool can be faster than this (discovery, JWKS and /healthz run
on the event loop itself and can), so the figure tells how much of a gap is the server's and how much is ours,
and, taken before each backend's run, how fast the shared machine was at the time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from idp.ops.asgi_bridge import WsgiOnAsgi

from . import wrk
from .servers import free_port, wait_http

BODY = b'{"floor":"' + b"x" * 2500 + b'"}'


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


asgi_app = WsgiOnAsgi(app, threads=4, max_body=64 * 1024)


def measure(duration: float, warmup: float, connections: int) -> wrk.WrkResult:
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        ["taskset", "-c", "0", gunicorn, "--workers", "1", "--worker-class", "asgi", "--asgi-loop", "auto",
         "--http-parser", "python", "--keep-alive", "5", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
         "bench.floor:asgi_app"],
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
        server.wait(timeout=20)
