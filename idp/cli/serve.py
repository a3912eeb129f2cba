"""``idp serve``: check what serving needs, then run the provider under gunicorn.

gunicorn's gthread worker, not granian: granian 2.8 (hyper's HTTP/1 parser) accepts three request smuggling shapes
that gunicorn refuses (``Transfer-Encoding: gzip, chunked``, ``chunked`` twice, a header line ended by a bare line
feed) and serves the request pipelined after them, and hands the app a chunked body broken half-way as if it ended
there; tests/test_serving.py tries each.

``idp serve`` becomes gunicorn (``exec``) rather than embedding it: the environment set here is then in place from
the first instruction of the server's processes, where glibc reads its malloc tunables (at start) and
prometheus_client its multiprocess folder (at import), and the server is the process that systemd or the shell
signals.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from ..config import generated_secrets
from ..keys import ALGORITHMS
from ..provider import current_provider
from ..store import rollback
from ..store.schema import schema_is_current
from .audit import prune_ledger_if_due

#: gunicorn's settings and hooks (the rest comes from the command line).
GUNICORN_SETTINGS = "idp.cli.gunicorn_settings"

#: Argon2's 19 MiB block (idp.passwords) must stay in the worker's heap between password checks: glibc maps a
#: block that big on its own and unmaps it when freed, and every login would have the kernel fault in and zero its
#: pages afresh. With both thresholds above the block (32 MiB is glibc's largest mmap threshold on 64-bit systems),
#: it comes from the heap of the one thread that runs Argon2 and stays there.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=33554432"


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ensure_signing_keys() -> list[str]:
    """Generate a key for each algorithm the provider signs with that has none (first start); returns the new kids."""
    provider = current_provider()
    made = []
    for alg in ALGORITHMS:
        row = provider.keys.generate(alg)
        if row is not None:
            made.append(row.kid)
    return made


def _check_before_serving(workers: int | None) -> int:
    """What must hold before serving: the number of workers (returned), the database, Redis, the secrets, the
    signing keys."""
    provider = current_provider()
    if workers is None:
        workers = default_workers() if provider.store.shared_between_processes else 1
        if not provider.store.shared_between_processes and default_workers() > 1:
            click.echo("one worker: the in-process store is not shared between processes (set redis.url for more)")
    if workers > 1 and not provider.store.shared_between_processes:
        raise click.ClickException(
            "the in-process store keeps codes and sessions inside one process, so several workers would not "
            "see each other's; set redis.url (or IDP_REDIS_URL) to serve with more than one worker"
        )
    try:
        current = schema_is_current()
    except (OperationalError, InterfaceError) as error:
        raise click.ClickException(
            f"the database cannot be reached ({error.__class__.__name__}); check database.url and that it is up"
        ) from None
    if not current:
        raise click.ClickException("the database schema is not up to date; run `idp db upgrade` first")
    if provider.store.shared_between_processes and not provider.store.ping():
        click.echo("warning: Redis does not answer yet; requests get 503 until it does (see /readyz)", err=True)
    if provider.store.shared_between_processes and generated_secrets(provider.config):
        click.echo(
            "warning: server.secret_key or server.pairwise_salt was generated into this machine's var_dir; "
            "several instances must share both, so set them explicitly (config.production.example.toml)",
            err=True,
        )
    for kid in ensure_signing_keys():
        click.echo(f"generated signing key {kid}")
    _prune_ledger_if_due()
    return workers


def _prune_ledger_if_due() -> None:
    """The disclosure ledger's old rows, deleted at start-up at most once a day (``idp audit prune``). A failure
    here does not stop the provider: the next start, or the command, prunes."""
    try:
        pruned = prune_ledger_if_due()
    except SQLAlchemyError as error:
        rollback()
        click.echo(f"warning: the disclosure ledger could not be pruned ({error.__class__.__name__})", err=True)
        return
    if pruned is not None:
        deleted, before = pruned
        click.echo(f"pruned the disclosure ledger: {deleted} row(s) whose last release was before {before:%Y-%m-%d}")


def server_environment(metrics_folder: str) -> dict[str, str]:
    """The server's environment: this one, with prometheus_client's multiprocess folder (each worker writes its
    figures there and a scrape of any worker adds them up) and glibc's malloc tunables, unless already set."""
    tunables = [tunable for tunable in os.environ.get("GLIBC_TUNABLES", "").split(":") if tunable]
    named = {tunable.split("=", 1)[0] for tunable in tunables}
    tunables += [tunable for tunable in MALLOC_TUNABLES.split(":") if tunable.split("=", 1)[0] not in named]
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_folder, "GLIBC_TUNABLES": ":".join(tunables)}


@click.command(help="Run the provider with gunicorn.")
@click.option("--host", help="Address to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: server.port).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Worker processes (default: the number of cores this process may run on; 1 with the in-process store).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Threads per worker: while one waits for PostgreSQL, Redis or an SMS gateway, another serves.",
)
@with_appcontext
def serve(host: str | None, port: int | None, workers: int | None, threads: int) -> None:
    provider = current_provider()
    workers = _check_before_serving(workers)
    bind = f"{host or provider.config.server.host}:{port or provider.config.server.port}"
    click.echo(f"Hoviyat at {provider.issuer} (listening on {bind}, {workers} worker(s) of {threads} thread(s))")
    # A folder of this server's own: prometheus_client's documentation asks for one emptied between runs.
    metrics_folder = tempfile.mkdtemp(prefix="hoviyat-metrics-")
    command = [
        sys.executable, "-m", "gunicorn", "--config", f"python:{GUNICORN_SETTINGS}", "--bind", bind,
        "--workers", str(workers), "--threads", str(threads),
        "--log-level", provider.config.observability.log_level.lower(),
    ]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, server_environment(metrics_folder))  # noqa: S606 - our own interpreter
    except OSError as error:
        shutil.rmtree(metrics_folder, ignore_errors=True)
        raise click.ClickException(f"gunicorn could not be started: {error}") from None
