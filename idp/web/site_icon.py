"""The site's icon: pages link static/favicon.svg; ``/favicon.ico``, which browsers and other tools ask for
without being told, redirects there rather than answering 404."""

from __future__ import annotations

from flask import Flask, Response, redirect, url_for


def favicon() -> Response:
    return redirect(url_for("static", filename="favicon.svg"), 301)


def install(app: Flask) -> None:
    app.add_url_rule("/favicon.ico", "favicon", favicon)
