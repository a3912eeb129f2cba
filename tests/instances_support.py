"""Real ``idp serve`` processes for the tests of several instances: a PostgreSQL database and a Redis key prefix
of their own, the same secrets and keys folder for every instance, each instance on its own free port.

A :class:`Deployment` is what the instances share (database, Redis prefix, secrets, keys, var folder); an
:class:`Instance` is one ``idp serve`` (gunicorn master and workers) started with that configuration in its
environment (``IDP_<SECTION>_<KEY>``), plus any overrides of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import create_engine, text

from .conftest import POSTGRES_ADMIN_URL, REDIS_URL, _postgres_unavailable, free_port
from .helpers import find_form

IDP = str(Path(sys.executable).parent / "idp")


def require_postgres_and_redis() -> None:
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)


def _env_name(section: str, key: str) -> str:
    return f"IDP_{section.upper()}_{key.upper()}"


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Instance:
    """One ``idp serve`` process group."""

    port: int
    process: subprocess.Popen
    log_path: Path
    workers: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        try:
            text_ = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text_.split()]

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"idp serve on {self.port} exited ({self.process.returncode}):\n{self.log()[-3000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                ready = requests.get(self.url + "/readyz", timeout=2).status_code == 200
                if ready and len(self.worker_pids()) >= self.workers:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"idp serve on {self.port} not ready in {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 3) -> None:
        """SIGTERM, then SIGKILL to the whole process group after ``grace`` seconds: an exiting worker can hang
        until gunicorn's graceful_timeout (20 s; see the report on idp/cli/serve.py), and nothing may be left."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)


@dataclass
class Deployment:
    """What several instances share: the database, the Redis prefix, the secrets, the keys and var folders."""

    root: Path
    database_url: str
    key_prefix: str
    settings: dict[str, dict[str, Any]]
    instances: list[Instance] = field(default_factory=list)
    _app: Flask | None = None

    def env(self, **overrides: dict[str, Any]) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("IDP_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["TMPDIR"] = str(self.root / "tmp")  # where `idp serve` makes its metrics folder
        merged = {section: dict(values) for section, values in self.settings.items()}
        for section, values in overrides.items():
            merged.setdefault(section, {}).update(values)
        for section, values in merged.items():
            for key, value in values.items():
                env[_env_name(section, key)] = _env_value(value)
        return env

    @property
    def app(self) -> Flask:
        """An in-process app on the same configuration, for seeding and inspecting the database."""
        if self._app is None:
            from idp import create_app

            self._app = create_app(self.settings)
            self._app.config["TESTING"] = True
        return self._app

    def idp(self, *args: str, check: bool = True, **overrides: dict[str, Any]) -> subprocess.CompletedProcess:
        done = subprocess.run(  # noqa: S603 - our own idp, our own arguments
            [IDP, *args], env=self.env(**overrides), cwd=self.root, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"idp {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def start(
        self, workers: int = 2, threads: int = 4, port: int | None = None, **overrides: dict[str, Any]
    ) -> Instance:
        port = port or free_port()
        log_path = self.root / f"serve-{port}.log"
        command = [IDP, "serve", "--workers", str(workers), "--threads", str(threads)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own idp, our own arguments
                command,
                env=self.env(**overrides),
                cwd=self.root,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        instance = Instance(port, process, log_path, workers)
        self.instances.append(instance)
        return instance

    def start_all(self, count: int, workers: int = 2, **overrides: dict[str, Any]) -> list[Instance]:
        started = [self.start(workers=workers, **overrides) for _ in range(count)]
        for instance in started:
            instance.wait_ready()
        return started

    def close(self) -> None:
        for instance in self.instances:
            instance.terminate()
        deadline = time.monotonic() + 3
        for instance in self.instances:
            instance.stop(grace=max(0.1, deadline - time.monotonic()))
        self.instances.clear()
        if self._app is not None:
            from idp.extensions import db

            with self._app.app_context():
                db.session.remove()
                db.engine.dispose()
            self._app = None


@contextlib.contextmanager
def deployment(root: Path, **overrides: dict[str, Any]) -> Iterator[Deployment]:
    """A fresh PostgreSQL database (dropped afterwards) and Redis prefix (emptied afterwards), migrated, with
    signing keys; instances started from it are stopped on the way out."""
    require_postgres_and_redis()
    run_id = secrets.token_hex(4)
    name = f"idp_instances_{run_id}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"idp-instances-{run_id}:"
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    settings: dict[str, dict[str, Any]] = {
        "server": {
            "issuer": f"http://127.0.0.1:{free_port()}",
            "secret_key": "instances-secret-key",
            "pairwise_salt": "instances-pairwise-salt",
            "var_dir": str(root / "var"),
        },
        "database": {"url": database_url},
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "keys": {"dir": str(root / "keys"), "publish_before_use": 0},
        "limits": {"login_per_ip": "100000 per minute", "token_per_ip": "1000000 per minute"},
        "captcha": {"enabled": False},
        "observability": {"log_format": "json", "log_level": "INFO"},
    }
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    setup = Deployment(root, database_url, prefix, settings)
    try:
        from idp.extensions import db
        from idp.store.schema import upgrade_schema

        with setup.app.app_context():
            upgrade_schema()
            for alg in ("RS256", "ES256"):
                setup.app.extensions["idp"].keys.generate(alg)
            db.session.commit()
        yield setup
    finally:
        setup.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        for pattern in (f"{prefix}*", f"LIMITS:*{prefix}*"):
            for key in client.scan_iter(match=pattern, count=500):
                client.delete(key)
        client.close()


# -- a browser and a relying party over HTTP -----------------------------------------------------------


class HttpBrowser:
    """A user's browser: one cookie jar, follows redirects that stay on 127.0.0.1, stops at the relying party."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def _follow(self, response: requests.Response) -> requests.Response:
        for _ in range(20):
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303, 307) or not location:
                return response
            url = urljoin(response.url, location)
            if urlsplit(url).hostname != "127.0.0.1":
                response.headers["Location"] = url
                return response
            response = self.session.get(url, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")

    def get(self, url: str, **params: str) -> requests.Response:
        return self._follow(self.session.get(url, params=params or None, allow_redirects=False, timeout=10))

    def submit(self, response: requests.Response, data: dict[str, str], **find: str) -> requests.Response:
        form = find_form(response.text, **find)
        url = urljoin(response.url, form.action)
        return self._follow(self.session.post(url, data={**form.fields, **data}, allow_redirects=False, timeout=10))


# -- Prometheus text -------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    samples = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metric_samples(exposition).items() if n == name and wanted <= ls)
