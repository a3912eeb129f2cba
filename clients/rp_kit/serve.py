"""Serving an example site with gunicorn (one worker: these are demonstrations, not load tests)."""

from __future__ import annotations

import argparse
import sys

from gunicorn.app.wsgiapp import run


def serve(app_spec: str, default_port: int) -> None:
    parser = argparse.ArgumentParser(description=f"Serve {app_spec} with gunicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    sys.argv = ["gunicorn", "--bind", f"{args.host}:{args.port}", "--workers", "1", "--access-logfile", "-", app_spec]
    run()
