"""``idp serve``: run the provider under gunicorn."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from typing import Any

import click
from flask.cli import with_appcontext
from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import InterfaceError, OperationalError

from ..config import generated_secrets
from ..keys import ALGORITHMS
from ..oidc import paths
from ..ops.asgi_bridge import WsgiOnAsgi
from ..ops.process_id import current_process_id
from ..provider import current_provider
from ..store.schema import schema_is_current

#: Requests answered on the worker's event loop itself, not through its threads: they wait on nothing but our own
#: database for a moment (published documents, liveness), and the hop to a thread would cost more than they do.
INLINE_PATHS = (paths.DISCOVERY, paths.JWKS, "/healthz")


class ProviderApplication(BaseApplication):
    """Gunicorn running our app factory in each worker (nothing shared across a fork but the config)."""

    def __init__(self, options: dict[str, Any], threads: int) -> None:
        self.options = options
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # control_socket_disable exists from gunicorn 24 on
                self.cfg.set(key, value)

    def load(self) -> WsgiOnAsgi:
        from .. import create_app

        app = create_app()
        return WsgiOnAsgi(
            app, threads=self.threads, max_body=app.config["MAX_CONTENT_LENGTH"], inline_paths=INLINE_PATHS
        )


def keep_the_password_block_mapped() -> None:
    """Let Argon2's 19 MiB block stay in the worker's memory between password checks.

    glibc maps a block that big on its own and unmaps it when freed (the earlier setting here made sure of that, to
    keep the worker small): every login then had the kernel fault in and zero its ~4,900 pages afresh, a fifth of
    the worker's CPU time in the whole code flow (perf, this machine). With the mmap and trim thresholds above the
    block, it comes from the heap of the one thread that runs Argon2 (idp.passwords) and stays there: 19 MiB more
    per worker, for good, and nothing per request thread, since they never allocate blocks of that size."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    above_the_block = 32 * 1024 * 1024  # glibc's largest mmap threshold on 64-bit systems
    libc.mallopt(m_mmap_threshold, above_the_block)
    libc.mallopt(m_trim_threshold, above_the_block)


def _post_fork(server: Any, worker: Any) -> None:
    from ..ops import logs

    keep_the_password_block_mapped()

    settings = server.app.observability
    logs.configure(settings.log_format, settings.log_level)


def _post_worker_init(worker: Any) -> None:
    # The app the worker just built (routes, templates, translations, table metadata: ~150,000 objects) lives as
    # long as the worker. Frozen, the collector stops scanning it on each full collection, a pause of ~100 ms
    # that otherwise lands on whichever request is running (measured: one per ~1,000 refreshes).
    gc.collect()
    gc.freeze()


def _child_exit(server: Any, worker: Any) -> None:
    # A dead worker's gauges must not be added up any more (counters and histograms are kept).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _metrics_across_workers() -> str:
    """Switch prometheus_client to multiprocess mode before any worker exists: every metric is labelled, so its
    values are made at first use, in the worker, and then live in files that a scrape of any worker adds up."""
    from prometheus_client import values

    folder = tempfile.mkdtemp(prefix="hoviyat-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.MultiProcessValue(process_identifier=current_process_id)
    return folder


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
    bind = f"{host or provider.config.server.host}:{port or provider.config.server.port}"
    click.echo(f"Hoviyat at {provider.issuer} (listening on {bind}, {workers} worker(s) of {threads} thread(s))")
    metrics_folder = _metrics_across_workers()
    settings = provider.config.observability
    application = ProviderApplication(
        {
            "bind": bind,
            "workers": workers,
            # gunicorn's asyncio worker reads requests and writes answers on its event loop; our WSGI app runs
            # in a pool of `threads` threads beside it (idp.ops.asgi_bridge says why not the gthread worker).
            "worker_class": "asgi",
            "asgi_lifespan": "on",
            "asgi_loop": "auto",  # uvloop where it is installed (a dependency except on Windows)
            # Not gunicorn_h1c's C parser (gunicorn[fast]), though 2-4 % cheaper a request: with 0.6.10, a request of
            # more than about 64 KiB in all (headers and body, so one within our 64 KiB body limit too) sent on a
            # kept-alive connection right after an answer is dropped without an answer, about one time in five here
            # (it seems to be the cap on what that parser holds after a finished message). A test sends such requests.
            "http_parser": "python",
            # Our own access line (JSON, request id, no query string) replaces gunicorn's.
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            # X-Forwarded-* are applied by idp.ops.proxy, from server.trusted_proxies only.
            "forwarded_allow_ips": "127.0.0.1",
            "secure_scheme_headers": {},
            "keepalive": 5,
            "timeout": 30,
            "graceful_timeout": 20,
            "post_fork": _post_fork,
            "post_worker_init": _post_worker_init,
            "child_exit": _child_exit,
            # gunicorn's control socket lives in one place per user; several instances on a machine would collide.
            "control_socket_disable": True,
        },
        threads=threads,
    )
    application.observability = settings
    from ..ops import logs

    logs.configure(settings.log_format, settings.log_level)
    # Workers are forked inside run(), and one that exits unwinds through this function too: nothing below may
    # act in a worker. They must not share the master's database connection either.
    from ..extensions import db

    db.session.remove()
    db.engine.dispose()
    master = os.getpid()
    try:
        application.run()
    finally:
        if os.getpid() == master:
            shutil.rmtree(metrics_folder, ignore_errors=True)
