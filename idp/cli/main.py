"""The ``idp`` command line, for admins: serve, database, keys, clients, users, audit.

Every command runs inside the app built from the configuration (``IDP_CONFIG``); ``idp db`` is
Flask-Migrate's. Commands that print data accept ``--json`` for scripts.
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from .. import create_app
from ..config import ConfigError


def _create_app_for_cli() -> Flask:
    try:
        return create_app()
    except ConfigError as error:
        click.echo(f"idp: {error}", err=True)
        sys.exit(2)


cli = FlaskGroup(
    name="idp",
    create_app=_create_app_for_cli,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
    help="Hoviyat identity provider: serve it and administer clients, keys, users, the audit log and support messages.",
)

# The provider builds its own app from the configuration: Flask's --app, --env-file and --debug do not apply.
cli.params = [param for param in cli.params if param.name not in {"app", "env_file", "debug"}]


def main() -> None:
    cli.main(prog_name="idp")
