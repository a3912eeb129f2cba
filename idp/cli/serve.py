"""``idp serve``: run the provider under gunicorn."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext
from gunicorn.app.base import BaseApplication

from ..provider import current_provider
from ..store.schema import schema_is_current


class ProviderApplication(BaseApplication):
    """Gunicorn running our app factory in each worker (nothing shared across a fork but the config)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from .. import create_app

        return create_app()


def ensure_signing_keys() -> list[str]:
    """Generate a key for each configured algorithm that has none (first start); returns the new kids."""
    provider = current_provider()
    made = []
    for alg in dict.fromkeys([provider.config.keys.id_token_alg, provider.config.keys.access_token_alg]):
        row = provider.keys.generate(alg)
        if row is not None:
            made.append(row.kid)
    return made


@click.command(help="Run the provider with gunicorn.")
@click.option("--host", help="Address to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: server.port).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Worker processes.")
@with_appcontext
def serve(host: str | None, port: int | None, workers: int) -> None:
    provider = current_provider()
    if workers > 1 and not provider.store.shared_between_processes:
        raise click.ClickException(
            "the in-process store keeps codes and sessions inside one process, so several workers would not "
            "see each other's; set redis.url (or IDP_REDIS_URL) to serve with more than one worker"
        )
    if not schema_is_current():
        raise click.ClickException("the database schema is not up to date; run `idp db upgrade` first")
    for kid in ensure_signing_keys():
        click.echo(f"generated signing key {kid}")
    bind = f"{host or provider.config.server.host}:{port or provider.config.server.port}"
    click.echo(f"Hoviyat at {provider.issuer} (listening on {bind}, {workers} worker(s))")
    ProviderApplication({"bind": bind, "workers": workers, "accesslog": "-", "errorlog": "-"}).run()
