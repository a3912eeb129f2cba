"""``idp serve``: run the provider under granian (WSGI), one app per worker process.

Granian is embedded through its public API (``granian.Granian``) rather than run as a separate command, so that
``idp serve`` keeps its checks before serving, its hooks around it and its own log format in one process. Its
workers are started with multiprocessing's ``spawn`` method: each is a fresh interpreter that reads the
environment set here (prometheus_client's multiprocess folder, glibc's malloc tunables) as it starts, before any
module is imported, and builds its own app (nothing is shared across a fork: no database connection, no thread).
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import shutil
import tempfile

import click
from flask import Flask
from flask.cli import with_appcontext
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from sqlalchemy.exc import InterfaceError, OperationalError

from ..config import generated_secrets
from ..provider import current_provider
from ..store.schema import schema_is_current

#: The factory granian calls in each worker.
WORKER_APP = "idp.cli.serve:worker_app"

#: Argon2's 19 MiB block (idp.passwords) must stay in the worker's heap between password checks: glibc maps a
#: block that big on its own and unmaps it when freed, and every login then had the kernel fault in and zero
#: ~4,900 pages afresh. With both thresholds above the block (32 MiB is glibc's largest mmap threshold on 64-bit
#: systems), it comes from the heap of the one thread that runs Argon2 and stays there.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=33554432"

#: Connections waiting to be accepted, per worker (on Linux each worker listens on a socket of its own).
BACKLOG = 2048
#: Connections a worker serves at once, kept-alive ones included; more wait in the backlog.
CONNECTIONS_PER_WORKER = 1000
#: Seconds a client has to send a request's headers, and an idle kept-alive connection waits for the next request.
HEADER_READ_TIMEOUT = 5
#: Seconds a stopping worker has to finish the requests in flight before it is killed.
GRACEFUL_TIMEOUT = 20
#: The most a request line and headers may take: a request beyond it is refused (431) before the app sees it.
HEADER_BUFFER = 8 * 1024


def worker_app() -> Flask:
    """The app of one worker: granian calls this in each worker process, once, before serving from it."""
    from prometheus_client import multiprocess

    from .. import create_app
    from ..ops import logs

    app = create_app()
    settings = app.extensions["idp"].config.observability
    logs.configure(settings.log_format, settings.log_level)
    # A worker that exits cleanly drops its live gauges from the sums (its counters and histograms stay counted).
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    # The app just built (routes, templates, translations, table metadata) lives as long as the worker. Frozen,
    # the collector stops scanning it on each full collection, a pause that would land on a request.
    gc.collect()
    gc.freeze()
    return app


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ensure_signing_keys() -> list[str]:
    """Generate a key for each configured algorithm that has none (first start); returns the new kids."""
    provider = current_provider()
    made = []
    for alg in dict.fromkeys([provider.config.keys.id_token_alg, provider.config.keys.access_token_alg]):
        row = provider.keys.generate(alg)
        if row is not None:
            made.append(row.kid)
    return made


def _logging_through_ours() -> dict:
    """Granian's logging set-up, changed so that its own lines go to the root logger, which idp.ops.logs writes
    in the configured format (JSON or text). Its access log stays off: the app writes its own (no query string)."""
    return {"loggers": {"_granian": {"handlers": [], "propagate": True}}}


def _check_before_serving(workers: int | None) -> int:
    """What must hold before serving (the number of workers, the database, Redis, the secrets, the signing keys);
    returns the number of workers."""
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
    return workers


@click.command(help="Run the provider with granian.")
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
    host = host or provider.config.server.host
    port = port or provider.config.server.port
    click.echo(f"Hoviyat at {provider.issuer} (listening on {host}:{port}, {workers} worker(s) of {threads} thread(s))")
    settings = provider.config.observability
    # The workers' environment: read by prometheus_client when a worker imports it, and by glibc when it starts.
    metrics_folder = tempfile.mkdtemp(prefix="hoviyat-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_folder
    os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES]))
    multiprocessing.set_start_method("spawn", force=True)
    server = Granian(
        WORKER_APP,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=threads,
        backlog=BACKLOG,
        backpressure=CONNECTIONS_PER_WORKER,
        http1_settings=HTTP1Settings(
            header_read_timeout=HEADER_READ_TIMEOUT * 1000, keep_alive=True, max_buffer_size=HEADER_BUFFER
        ),
        log_level=settings.log_level.lower(),
        log_dictconfig=_logging_through_ours(),
        log_access=False,
        # Like gunicorn before it: a worker that dies is replaced; one that will not stop is killed.
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT,
    )
    server.on_shutdown(lambda: shutil.rmtree(metrics_folder, ignore_errors=True))
    from ..extensions import db
    from ..ops import logs

    logs.configure(settings.log_format, settings.log_level)
    # Nothing of this process's app is used from here on: its database connections are closed.
    db.session.remove()
    db.engine.dispose()
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)
