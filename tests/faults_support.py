"""Helpers for tests/test_faults.py: a private Redis server, a private PostgreSQL cluster, the provider served by
``idp serve`` in its own process, and a browser over real HTTP.

Nothing here touches the machine's shared Redis or PostgreSQL cluster: the outages the tests cause happen to
servers the tests started themselves, on ports of their own, and every process is ended by its id.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import psycopg
import redis
import requests
from flask import Flask
from sqlalchemy import func, select

from idp.extensions import db

from .conftest import free_port
from .helpers import ClientInfo, UserInfo, authorization_params, find_form, pkce_pair, query_of


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


def _end(process: subprocess.Popen | None, timeout: float = 10, how: int = signal.SIGTERM) -> None:
    """``how`` (SIGTERM), then SIGKILL: end one process we started, by its id."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# -- a private Redis ------------------------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on a free port. Without ``persistent`` killing it loses every record, as a crash of a
    cache-only Redis would; with it every write is in the append-only file first and survives SIGKILL."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        self.persistent = persistent
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary, "redis-server is not on PATH"
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - redis-server from PATH, our own arguments
                [
                    self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
                    "--daemonize", "no", "--dir", str(self.workdir), "--loglevel", "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {_tail(self.log)}")
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(answers, 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """The outage: SIGKILL, no shutdown, no save."""
        assert self.process is not None and self.process.poll() is None, "not running"
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


# -- a private PostgreSQL cluster --------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or what PATH has."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def postgres_cluster_unavailable() -> str | None:
    """Why a private cluster cannot be made here, or None."""
    if postgres_bin_dir() is None:
        return "initdb/pg_ctl not found (looked in /usr/lib/postgresql/*/bin and on PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to own a private cluster"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is not available to start PostgreSQL as `postgres`"
    return None


class PostgresCluster:
    """A throw-away cluster in a temporary folder owned by ``postgres`` (PostgreSQL refuses to run as root),
    listening on 127.0.0.1 and a free port, trust authentication, its socket in the same folder."""

    def __init__(self) -> None:
        bindir = postgres_bin_dir()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hoviyat-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)
        self.running = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        # The postmaster pg_ctl starts must not hold our pipes open, so its output goes to a file.
        with (self.root / "commands.log").open("ab") as out:
            result = subprocess.run(  # noqa: S603 - PostgreSQL's own tools, our own arguments
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, check=False
            )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{_tail(self.root / 'commands.log')}\n"
                f"{_tail(self.log)}"
            )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                  "--locale=C")  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


# -- the provider in its own processes -------------------------------------------------------------------------


def served_environment(app: Flask, **extra: str) -> dict[str, str]:
    """Environment variables (IDP_<SECTION>_<KEY>) that make ``idp serve`` the same provider as ``app``."""
    config = app.extensions["idp"].config
    env = {name: value for name, value in os.environ.items() if not name.startswith("IDP_")}
    env.update(
        {
            "IDP_SERVER_ISSUER": config.server.issuer,
            "IDP_SERVER_HOST": "127.0.0.1",
            "IDP_SERVER_PORT": str(config.server.port),
            "IDP_SERVER_SECRET_KEY": config.server.secret_key,
            "IDP_SERVER_PAIRWISE_SALT": config.server.pairwise_salt,
            "IDP_SERVER_VAR_DIR": config.server.var_dir,
            "IDP_DATABASE_URL": config.database.url,
            "IDP_REDIS_URL": config.redis.url,
            "IDP_REDIS_KEY_PREFIX": config.redis.key_prefix,
            "IDP_KEYS_DIR": config.keys.dir,
            "IDP_KEYS_PUBLISH_BEFORE_USE": "0",
            "IDP_CAPTCHA_ENABLED": "false",
            "IDP_OTP_RESEND_INTERVAL": str(config.otp.resend_interval),
            "IDP_LIMITS_LOGIN_PER_IP": config.limits.login_per_ip,
            "IDP_LIMITS_TOKEN_PER_IP": config.limits.token_per_ip,
            "IDP_OBSERVABILITY_LOG_FORMAT": "json",
            "IDP_OBSERVABILITY_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: the fields after the last ")" are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


class ServedProvider:
    """``idp serve --workers 1`` (gunicorn: a master and one worker) with its log in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, issuer: str) -> None:
        self.env = env
        self.cwd = cwd
        self.issuer = issuer
        self.log = cwd / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        script = Path(sys.executable).parent / "idp"
        command = [str(script)] if script.exists() else [sys.executable, "-c", "from idp.cli.main import main; main()"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                [*command, "serve", "--workers", "1", "--threads", "4"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._healthy, 30, f"`idp serve` to answer /healthz; log:\n{_tail(self.log)}", interval=0.1)

    def _healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"`idp serve` exited:\n{_tail(self.log)}")
        try:
            return requests.get(self.issuer + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def workers(self) -> list[int]:
        """The gunicorn workers: children of the master (the `idp serve` process itself)."""
        assert self.process is not None
        master = self.process.pid
        return [int(name) for name in os.listdir("/proc") if name.isdigit() and _parent_of(int(name)) == master]

    def kill_worker(self) -> int:
        [worker] = self.workers()
        os.kill(worker, signal.SIGKILL)
        return worker

    def wait_for_new_worker(self, killed: int) -> None:
        wait_until(lambda: killed not in self.workers() and self.workers(), 30, "gunicorn to start a new worker")
        wait_until(self._healthy, 30, f"the new worker to answer; log:\n{_tail(self.log)}", interval=0.1)

    def log_text(self) -> str:
        return _tail(self.log, 200_000)

    def stop(self) -> None:
        if self.process is None:
            return
        workers = self.workers() if self.process.poll() is None else []
        _end(self.process, timeout=15, how=signal.SIGINT)  # gunicorn's quick shutdown
        for pid in workers:  # normally gone with the master; never leave one behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- a browser over HTTP ----------------------------------------------------------------------------------------


class HttpBrowser:
    """Keeps cookies, follows the provider's redirects and stops at the first one that leaves it (the RP)."""

    def __init__(self, issuer: str, language: str = "en") -> None:
        self.issuer = issuer
        self.session = requests.Session()
        self.session.headers["Accept-Language"] = language

    def _follow(self, response: requests.Response) -> requests.Response:
        for _ in range(20):
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303) or not location:
                return response
            url = urljoin(response.url, location)
            if not url.startswith(self.issuer):
                response.headers["Location"] = url
                return response
            response = self.session.get(url, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")

    def get(self, path: str) -> requests.Response:
        return self._follow(self.session.get(urljoin(self.issuer, path), allow_redirects=False, timeout=10))

    def form_post(self, page: requests.Response, data: dict[str, str], **find: str) -> tuple[str, dict[str, str]]:
        """The URL and fields a form on ``page`` would send, with ``data`` filled in."""
        form = find_form(page.text, **find)
        return urljoin(page.url, form.action), {**form.fields, **data}

    def submit(self, page: requests.Response, data: dict[str, str], timeout: float = 10, **find: str) -> Any:
        url, values = self.form_post(page, data, **find)
        return self._follow(self.session.post(url, data=values, allow_redirects=False, timeout=timeout))


def http_code_flow(browser: HttpBrowser, rp: ClientInfo, user: UserInfo) -> tuple[str, str]:
    """Authorize, log in and consent as needed; returns (code, code_verifier)."""
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge)
    page = browser.get("/authorize?" + requests.compat.urlencode(params))
    if page.status_code == 200 and 'name="national_code"' in page.text:
        page = browser.submit(
            page, {"national_code": user.national_code, "password": user.password}, field_name="password"
        )
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = browser.submit(page, {"decision": "allow"}, action_contains="/consent")
    assert page.status_code == 302, (page.status_code, page.text[:2000])
    query = query_of(page.headers["Location"])
    assert query.get("state") == params["state"], page.headers["Location"]
    return query["code"], verifier


def token_request(issuer: str, rp: ClientInfo, data: dict[str, str], timeout: float = 10) -> requests.Response:
    return requests.post(issuer + "/token", data=data, auth=(rp.client_id, rp.client_secret), timeout=timeout)


def code_exchange(rp: ClientInfo, code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }


# -- the database as the tests see it ------------------------------------------------------------------------------


def row_counts(app: Flask) -> dict[str, int]:
    """Rows in every table of the provider's schema."""
    with app.app_context():
        try:
            return {
                table.name: db.session.scalar(select(func.count()).select_from(table))
                for table in db.metadata.sorted_tables
            }
        finally:
            db.session.remove()


def dispose(app: Flask) -> None:
    """Close the app's pooled database connections (its servers may be gone: errors are ignored)."""
    with app.app_context(), contextlib.suppress(Exception):
        db.session.remove()
        db.engine.dispose()
