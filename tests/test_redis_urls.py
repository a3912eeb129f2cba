"""Redis URLs: the forms redis.url accepts and refuses, and the store, a login and Flask-Limiter working through
a real Sentinel and a real Cluster (private redis-server processes on free ports, stopped afterwards)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from idp.config import ConfigError, load_config
from idp.extensions import db
from idp.store.kv import RedisStore
from idp.store.redis_url import RedisTarget, RedisURLError, parse_redis_url

from .conftest import Backend, free_port, make_app
from .helpers import Browser, create_test_client, create_test_user, exchange_code, get_code

# -- parsing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget(kind="plain", url="redis://127.0.0.1:6379/0")),
        (
            "rediss://:pw@cache.example:6380/1",
            RedisTarget(kind="plain", url="rediss://:pw@cache.example:6380/1", tls=True),
        ),
        ("unix:///run/redis.sock?db=2", RedisTarget(kind="plain", url="unix:///run/redis.sock?db=2")),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            RedisTarget(
                kind="sentinel",
                url="redis+sentinel://s1:26379,s2:26380/mymaster",
                nodes=(("s1", 26379), ("s2", 26380)),
                service_name="mymaster",
            ),
        ),
        (
            "redis+sentinel://:secret@s1/mymaster/3",
            RedisTarget(
                kind="sentinel",
                url="redis+sentinel://:secret@s1/mymaster/3",
                nodes=(("s1", 26379),),
                service_name="mymaster",
                db=3,
                password="secret",
            ),
        ),
        (
            "redis+cluster://n1:7000,n2:7001,[::1]:7002",
            RedisTarget(
                kind="cluster",
                url="redis+cluster://n1:7000,n2:7001,[::1]:7002",
                nodes=(("n1", 7000), ("n2", 7001), ("::1", 7002)),
            ),
        ),
        (
            "rediss+cluster://user:p%40ss@n1",
            RedisTarget(
                kind="cluster",
                url="rediss+cluster://user:p%40ss@n1",
                nodes=(("n1", 6379),),
                username="user",
                password="p@ss",
                tls=True,
            ),
        ),
    ],
)
def test_accepted_forms(url, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_redis_url(url) == expected
    assert load_config(environ={}, overrides={"redis": {"url": url}}).redis.url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "must be a URL such as redis://"),
        ("http://cache:6379/0", "must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"),
        ("memcached://cache", "must start with redis://"),
        ("redis+sentinel://s1:26379", "must name the service"),
        ("redis+sentinel://s1:26379/", "must name the service"),
        ("redis+sentinel://s1:26379/mymaster/zero", "/service_name or /service_name/db"),
        ("redis+sentinel://s1:26379/a/1/2", "/service_name or /service_name/db"),
        ("redis+sentinel://:pw@/mymaster", "names no host"),
        ("redis+cluster://n1:7000/0", "has no path"),
        ("redis+cluster://n1:seven", "'n1:seven': the port is not a number"),
        ("redis+cluster://n1:7000,n2:99999", "'n2:99999': the port is out of range"),
        ("redis+cluster://n1:7000,:7001", "':7001' is not host:port"),
    ],
)
def test_refused_forms_say_what_is_wrong(url, message, tmp_path, monkeypatch):
    with pytest.raises(RedisURLError) as raised:
        parse_redis_url(url)
    assert message in str(raised.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:  # a start with it stops, naming the key
        load_config(environ={"IDP_REDIS_URL": url})
    assert "redis.url" in str(refused.value) and message in str(refused.value)


# -- private Redis servers ----------------------------------------------------------------------------------------

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
needs_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None, reason="redis-server and redis-cli are not on PATH"
)


@dataclass
class Servers:
    processes: list[subprocess.Popen]
    folder: Path

    def start(self, *args: str, port: int) -> None:
        with (self.folder / f"redis-{port}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - redis-server from PATH, our own arguments
                    [REDIS_SERVER, *args], cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
                )
            )
        wait_for(lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), f"redis-server on {port}")

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_for(check, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready in {timeout} s")
        time.sleep(0.05)


def private(port: int) -> list[str]:
    """Options of a throwaway server: this port, loopback only, nothing written to disk."""
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A master and one Sentinel watching it as "m"; yields (redis+sentinel URL, master port)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are not on PATH")
    folder = tmp_path_factory.mktemp("sentinel")
    servers = Servers([], folder)
    try:
        master, sentinel_port = free_port(), free_port()
        servers.start(*private(master), port=master)
        conf = folder / "sentinel.conf"  # a Sentinel rewrites its configuration file: it must be its own
        conf.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor m 127.0.0.1 {master} 1\nsentinel down-after-milliseconds m 5000\n"
        )
        servers.start(str(conf), "--sentinel", port=sentinel_port)
        wait_for(
            lambda: redis.Redis(port=sentinel_port).execute_command("SENTINEL", "get-master-addr-by-name", "m"),
            "the Sentinel",
        )
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/m", master
    finally:
        servers.stop()


def cluster_port() -> int:
    """A free port a Cluster node accepts (Redis refuses ports above 55535 for Cluster nodes)."""
    while True:
        port = free_port()
        if port <= 55535:
            return port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[int]]]:
    """Three masters in a Cluster; yields (redis+cluster URL naming two of them, all ports)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are not on PATH")
    folder = tmp_path_factory.mktemp("cluster")
    servers = Servers([], folder)
    try:
        ports = [cluster_port() for _ in range(3)]
        for port in ports:
            servers.start(
                *private(port),
                "--cluster-enabled",
                "yes",
                "--cluster-port",  # the bus port; by default port + 10000, which may be taken
                str(free_port()),
                "--cluster-config-file",
                str(folder / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "5000",
                port=port,
            )
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(  # noqa: S603 - redis-cli from PATH, our own arguments
            [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in ports:
            wait_for(
                lambda port=port: b"cluster_state:ok" in redis.Redis(port=port).execute_command("CLUSTER", "INFO"),
                f"cluster node {port}",
            )
        yield f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", ports
    finally:
        servers.stop()


# -- the store and the app through them ---------------------------------------------------------------------------


def exercise_store(store: RedisStore) -> list[str]:
    """put/get/add/consume/incr/delete/ping through ``store``; returns the full keys written."""
    keys = [f"record-{n}" for n in range(12)]
    for number, key in enumerate(keys):
        store.put(key, {"n": number, "text": "سلام"}, 60)
    assert [store.get(key)["n"] for key in keys] == list(range(12))
    assert store.get("absent") is None
    assert store.add("once", {"v": 1}, 60) is True
    assert store.add("once", {"v": 2}, 60) is False
    assert store.get("once") == {"v": 1}
    assert store.consume("once") == {"v": 1}
    assert store.consume("once") is None
    assert [store.incr("counter", 60) for _ in range(3)] == [1, 2, 3]
    store.put("gone", {"v": 1}, 60)
    store.delete("gone")
    assert store.get("gone") is None
    assert store.ping() is True
    return [store.prefix + key for key in [*keys, "counter"]]


def exercise_announcements(url: str, prefix: str) -> int:
    """Two stores as two workers: a value the first remembers is forgotten within moments of the second's write and
    announcement of its key. Returns how many of 6 keys the first remembered (answered from memory)."""
    first, second = RedisStore(url, prefix), RedisStore(url, prefix)
    try:
        remembered = 0
        for n in range(6):  # keys over several hash slots
            key = f"grant:{n}"
            value, ticket = first.remembered(key)
            assert value is None
            if ticket is not None:
                first.remember(key, "active", ticket, remember_for=60)
            remembered += first.remembered(key)[0] == "active"
            second.put(key, {}, ttl=60)
            second.announce([key])
            deadline = time.monotonic() + 1  # same pass of Redis's loop as the answer; far inside the 60 s
            while first.remembered(key)[0] is not None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert first.remembered(key)[0] is None
            assert second.get(key) == {}
        return remembered
    finally:
        for store in (first, second):
            if store.absences is not None:
                store.absences.close()


@contextlib.contextmanager
def app_on(url: str, tmp_path: Path, **overrides: dict) -> Iterator:
    """An app on a SQLite file of its own and the Redis at ``url`` (not through conftest's app fixtures, whose
    clean-up reads the Redis URL with redis.Redis.from_url)."""
    prefix = f"idp-urls-{secrets.token_hex(4)}:"
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'urls.sqlite3'}", url, prefix)
    app = make_app(backend, tmp_path, **overrides)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def login_and_rate_limit(app) -> None:  # type: ignore[no-untyped-def]
    """A password login with its browser session and pending request in the store, a code exchange, then the
    token endpoint's limit (2 per minute per address) counted by Flask-Limiter in the same Redis."""
    user, rp = create_test_user(app), create_test_client(app)
    client = app.test_client()
    code, verifier, _ = get_code(Browser(client, app.extensions["idp"].issuer), rp, user)
    exchanged = exchange_code(client, rp, code, verifier)
    assert exchanged.status_code == 200, exchanged.get_json()
    again = exchange_code(client, rp, code, verifier)  # a used code: refused, and counted
    assert again.status_code == 400
    limited = exchange_code(client, rp, code, verifier)
    assert limited.status_code == 429, limited.get_json()


@needs_redis_server
def test_store_through_sentinel(sentinel):
    url, master_port = sentinel
    store = RedisStore(url, f"idp-urls-{secrets.token_hex(4)}:")
    assert store.target.kind == "sentinel"
    written = exercise_store(store)
    master = redis.Redis(port=master_port)
    assert all(master.exists(key) for key in written)  # the records are on the master the Sentinel names
    assert store.delete_prefix() == len(written)
    assert exercise_announcements(url, store.prefix) == 6  # each key remembered until its announcement
    assert store.delete_prefix() == 6


@needs_redis_server
def test_login_and_rate_limit_through_sentinel(sentinel, tmp_path):
    url, master_port = sentinel
    with app_on(url, tmp_path, limits={"token_per_ip": "2 per minute"}) as app:
        prefix = app.extensions["idp"].config.redis.key_prefix
        login_and_rate_limit(app)
        master = redis.Redis(port=master_port)
        assert any(master.scan_iter(match=f"{prefix}browser-session:*"))
        assert any(master.scan_iter(match=f"LIMITS:*{prefix}*"))


@needs_redis_server
def test_sentinel_url_with_a_database_number_works_for_the_rate_limits_too(sentinel, tmp_path):
    url, _ = sentinel
    with app_on(url + "/1", tmp_path, limits={"token_per_ip": "2 per minute"}) as app:
        login_and_rate_limit(app)


@needs_redis_server
def test_store_through_cluster(cluster):
    url, ports = cluster
    store = RedisStore(url, f"idp-urls-{secrets.token_hex(4)}:")
    assert store.target.kind == "cluster"
    written = exercise_store(store)
    # The records are spread over the nodes by hash slot: this really went through the Cluster.
    holding = [port for port in ports if redis.Redis(port=port).dbsize() > 0]
    assert len(holding) >= 2, holding
    assert store.delete_prefix() == len(written)
    assert sum(redis.Redis(port=port).dbsize() for port in ports) == 0
    # Nothing remembered in a Cluster: an announcement may reach another node's subscribers after the writer's
    # answer, so every lookup asks.
    assert exercise_announcements(url, store.prefix) == 0
    assert store.delete_prefix() == 6


@needs_redis_server
def test_login_and_rate_limit_through_cluster(cluster, tmp_path):
    url, ports = cluster
    with app_on(url, tmp_path, limits={"token_per_ip": "2 per minute"}) as app:
        prefix = app.extensions["idp"].config.redis.key_prefix
        login_and_rate_limit(app)
        nodes = [redis.Redis(port=port) for port in ports]
        assert any(any(node.scan_iter(match=f"{prefix}browser-session:*")) for node in nodes)
        assert any(any(node.scan_iter(match=f"LIMITS:*{prefix}*")) for node in nodes)
