"""The commands every app of the provider carries on ``app.cli`` (``idp`` runs them inside the app it builds)."""

from __future__ import annotations

from flask import Flask


def register_commands(app: Flask) -> None:
    from .audit import audit
    from .clients import clients
    from .keys import keys
    from .serve import serve
    from .support import support
    from .users import users

    for command in (serve, keys, clients, users, audit, support):
        app.cli.add_command(command)
