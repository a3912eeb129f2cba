"""A served instance (`idp serve`, over real sockets): what its HTTP server refuses, keeps and finishes.

Bad requests get their 4xx from the server and never reach a hang; the request smuggling shapes are refused and
the request sent after one on the same connection is never served; kept-alive connections serve request after
request; a body over the app's 64 KiB limit gets 413 (JSON on protocol paths); SIGTERM lets the requests in
flight finish, refuses new connections and exits 0; every request is one JSON access line.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from idp.cli.serve import MALLOC_TUNABLES

from .conftest import free_port
from .instances_support import deployment

IDP = str(Path(sys.executable).parent / "idp")


@dataclass
class Served:
    """One `idp serve` process group and where it writes its log."""

    port: int
    process: subprocess.Popen
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log_text()[-3000:]
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, self.log_text()[-3000:]
            time.sleep(0.1)

    def worker_environments(self) -> list[dict[str, str]]:
        """The environment each worker process started with (the server's: they are forked from it)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        environments = []
        for pid in children:
            items = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace").split("\0")
            environments.append(dict(item.split("=", 1) for item in items if "=" in item))
        return environments

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # never leave a worker behind
        if self.process.poll() is None:
            self.process.wait(timeout=5)


def _serve_on_sqlite(root: Path) -> Served:
    """`idp serve --workers 1` on SQLite and the in-process store, logging JSON."""
    port = free_port()
    (root / "config.toml").write_text(
        f"""
[server]
issuer = "http://127.0.0.1:{port}"
host = "127.0.0.1"
port = {port}
var_dir = "{root / "var"}"
secret_key = "served-secret"
pairwise_salt = "served-salt"
[database]
url = "sqlite:///{root / "idp.sqlite3"}"
[keys]
dir = "{root / "keys"}"
[observability]
log_format = "json"
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")} | {"IDP_CONFIG": str(root / "config.toml")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([IDP, "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True, timeout=60)  # noqa: S603
    log = root / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own idp
            [IDP, "serve", "--workers", "1"], env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Served(port, process, log)


@contextlib.contextmanager
def serving(backend: str, root: Path) -> Iterator[Served]:
    """`idp serve --workers 1` on ``backend`` (sqlite: SQLite and the in-process store; postgres: PostgreSQL and
    Redis), ready, and stopped on the way out."""
    if backend == "sqlite":
        served = _serve_on_sqlite(root)
        try:
            served.wait_ready()
            yield served
        finally:
            served.stop()
        return
    with deployment(root) as setup:
        instance = setup.start(workers=1)
        served = Served(instance.port, instance.process, instance.log_path)
        served.wait_ready()
        yield served


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(request.param, tmp_path_factory.mktemp(f"served-{request.param}")) as instance:
        yield instance


def _raw_statuses(address: str, data: bytes) -> list[int]:
    """The status of every answer to ``data`` sent as is on one connection, until the server closes or goes quiet."""
    host, port = address.split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=2) as connection:
        connection.sendall(data)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
    # An answer's status line follows the previous answer's body directly (none of these bodies holds one).
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", received)]


def test_one_kept_alive_connection_serves_request_after_request(served: Served):
    """Pages and protocol answers, one after another on the same connection."""
    asked = [
        ("GET", "/.well-known/openid-configuration", None, 200),
        ("POST", "/token", "grant_type=client_credentials", 401),
        ("GET", "/jwks.json", None, 200),
        ("GET", "/login", None, 200),
        ("GET", "/healthz", None, 200),
    ]
    with contextlib.closing(http.client.HTTPConnection(served.address, timeout=5)) as connection:
        connection.connect()
        local = connection.sock.getsockname()
        for method, path, body, expected in asked:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            assert response.status == expected, (path, content[:300])
            assert response.getheader("Connection", "").lower() != "close"
            assert connection.sock is not None and connection.sock.getsockname() == local  # not a new connection


def test_pipelined_requests_are_answered_in_order(served: Served):
    pipelined = b"".join(
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in (b"/healthz", b"/nowhere", b"/jwks.json", b"/healthz")
    )
    assert _raw_statuses(served.address, pipelined) == [200, 404, 200, 200]


def test_a_persian_page_and_a_too_large_request_s_json_error_come_back_whole(served: Served):
    with contextlib.closing(http.client.HTTPConnection(served.address, timeout=5)) as connection:
        connection.request("GET", "/login", headers={"Accept-Language": "fa"})
        response = connection.getresponse()
        page = response.read().decode("utf-8")
        assert response.status == 200 and 'dir="rtl"' in page and page.rstrip().endswith("</html>")
        assert int(response.getheader("Content-Length")) == len(page.encode("utf-8"))
        too_large = "grant_type=" + "x" * 70_000
        connection.request(
            "POST", "/token", body=too_large, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read())["error"] == "invalid_request"
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        response.read()


_FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"
_NEXT = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "refusals"),
    [
        pytest.param(b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414, 431}, id="long-url"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
            {431},
            id="too-many-headers",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", {400, 431}, id="long-header"
        ),
        pytest.param(b"HELLO\r\n\r\n", {400}, id="not-http"),
        pytest.param(b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505}, id="unknown-version"),
        pytest.param(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", {400}, id="bad-length"),
    ],
)
def test_malformed_and_oversized_requests_get_their_http_error_and_never_reach_a_hang(
    served: Served, request_bytes: bytes, refusals: set[int]
):
    statuses = _raw_statuses(served.address, request_bytes)
    assert len(statuses) == 1 and statuses[0] in refusals, statuses


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", id="length-and-chunked"),
        pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n", id="gzip-then-chunked"),
        pytest.param(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", id="chunked-twice"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n", id="bad-chunk-size"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"3;x\nabc\r\n0\r\n\r\n", id="chunk-line-bare-line-feed"),
        pytest.param(b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd", id="two-lengths"),
        pytest.param(b"Content-Length: +3\r\n", b"abc", id="signed-length"),
        pytest.param(b"X-A: b\r\n c\r\n", b"", id="folded-header"),
        pytest.param(b"X-A: b\x00c\r\n", b"", id="nul-in-header"),
        # A header line ended by a bare line feed: a front proxy that reads it as part of X-A's value and a server
        # that reads a Transfer-Encoding header there would frame the body differently.
        pytest.param(b"X-A: b\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", id="bare-line-feed-in-headers"),
    ],
)
def test_request_smuggling_shapes_are_refused_and_the_request_after_them_never_served(
    served: Served, headers: bytes, body: bytes
):
    statuses = _raw_statuses(
        served.address, b"POST /token HTTP/1.1\r\nHost: x\r\n" + headers + _FORM + b"\r\n" + body + _NEXT
    )
    assert statuses == [400], statuses


def test_a_malformed_chunk_after_a_good_one_never_reaches_the_app_as_a_whole_body(served: Served):
    """A body broken half-way is refused, not handed to the app as if it ended where the damage begins (here the
    app would answer the first chunk's grant type: invalid_client)."""
    grant = b"grant_type=client_credentials"
    request = (
        b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + _FORM + b"\r\n"
        + b"%x\r\n%s\r\nzz\r\nabc\r\n0\r\n\r\n" % (len(grant), grant)
    )  # fmt: skip
    host, port = served.address.split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=2) as connection:
        connection.sendall(request)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
    assert re.match(rb"HTTP/1\.[01] 400 ", received), received[:300]
    assert b"invalid_client" not in received


@pytest.mark.parametrize(
    ("chunks", "statuses"),
    [
        # 80 KiB in ten chunks, then a request on the same connection: refused whole (never cut to the limit and
        # served), and the connection goes on or is closed, never left hanging.
        pytest.param([b"x" * 0x2000] * 10, ([413, 200], [413]), id="over-the-limit"),
        pytest.param([b"grant_type=client_credentials"], ([401, 200],), id="within-the-limit"),
    ],
)
def test_a_chunked_body_is_held_to_the_same_limit_as_a_declared_one(served: Served, chunks, statuses):
    request = (
        b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + _FORM + b"\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        + b"0\r\n\r\n" + _NEXT
    )  # fmt: skip
    assert _raw_statuses(served.address, request) in statuses


@pytest.mark.parametrize(("body_size", "status"), [(65_536, 401), (65_537, 413), (70_000, 413)])
def test_a_request_of_64_kib_right_after_an_answer_on_a_kept_alive_connection_is_answered(served, body_size, status):
    """Just within the body limit it is served (401 here: no client), just over it refused with 413; never dropped
    (a parser that keeps too little after a finished message drops some)."""
    body = b"grant_type=client_credentials&x=" + b"x" * (body_size - 32)
    for _ in range(20):
        with contextlib.closing(http.client.HTTPConnection(served.address, timeout=5)) as connection:
            connection.request("GET", "/login", headers={"Accept-Language": "fa"})
            connection.getresponse().read()
            connection.putrequest("POST", "/token")
            connection.putheader("Content-Type", "application/x-www-form-urlencoded")
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            connection.send(body)  # at once, as soon as the answer before it was read
            response = connection.getresponse()
            response.read()
            assert response.status == status


def _log_entries(served: Served, request_ids: set[str], timeout: float = 5) -> list[dict]:
    """Every line of the log after `idp serve`'s banner, as JSON, once the access lines of ``request_ids`` are
    there (lines are written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = served.log_text().splitlines()
        banner = next(i for i, line in enumerate(lines) if line.startswith("Hoviyat at "))
        entries = [json.loads(line) for line in lines[banner + 1 :] if line.strip()]
        if request_ids <= {entry.get("request_id") for entry in entries} or time.monotonic() > deadline:
            return entries


def test_every_request_is_one_json_access_line_and_the_server_s_own_lines_are_json(served: Served):
    asked = [("GET", "/healthz?secret=1"), ("GET", "/nowhere"), ("POST", "/token"), ("GET", "/jwks.json")]
    request_ids = {}
    with requests.Session() as session:
        for method, path in asked:
            response = session.request(method, served.url + path, timeout=5)
            request_ids[response.headers["X-Request-Id"]] = (method, path.split("?")[0], response.status_code)
    # Every line after the banner is one JSON object (json.loads fails on anything else), the server's own too.
    entries = _log_entries(served, set(request_ids))
    mine = [entry for entry in entries if entry.get("request_id") in request_ids]
    assert sorted(entry["request_id"] for entry in mine) == sorted(request_ids)  # one line each
    for entry in mine:
        assert entry["logger"] == "idp.access" and entry["level"] == "info"
        assert (entry["method"], entry["path"], entry["status"]) == request_ids[entry["request_id"]]
        assert isinstance(entry["duration_ms"], float)
    assert not any("secret=1" in json.dumps(entry) for entry in entries)  # never the query string
    # The server's own lines, the master's and a forked worker's.
    messages = [entry["message"] for entry in entries if entry["logger"] == "gunicorn.error"]
    assert any(message.startswith("Listening at: ") for message in messages), messages
    assert any(message.startswith("Booting worker with pid: ") for message in messages), messages


def test_the_workers_get_glibc_s_malloc_tunables_and_a_metrics_folder_of_their_own(served: Served):
    """What `idp serve` puts in its server's environment reaches the workers: glibc's tunables that keep Argon2's
    block mapped (tests/test_passwords.py shows what they do) and prometheus_client's multiprocess folder."""
    [environment] = served.worker_environments()
    # glibc (2.36) cuts the copy that /proc shows after the first tunable it parsed; the process has them all.
    assert environment["GLIBC_TUNABLES"] and MALLOC_TUNABLES.startswith(environment["GLIBC_TUNABLES"])
    folder = Path(environment["PROMETHEUS_MULTIPROC_DIR"])
    requests.get(served.url + "/healthz", timeout=5)
    assert list(folder.glob("counter_*.db")), "the worker writes its counters there"


def _send_the_head_and_half_the_body(address: str, body: bytes) -> socket.socket:
    host, port = address.split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(
        b"POST /token HTTP/1.1\r\nHost: x\r\n" + _FORM + b"Content-Length: %d\r\n\r\n" % len(body)
        + body[: len(body) // 2]
    )  # fmt: skip
    return connection


def _answer(connection: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while not re.search(rb"\r\n\r\n.*\}", received, re.S) and (chunk := connection.recv(65536)):
            received += chunk
    return received


def _a_new_connection(address: str) -> str:
    host, port = address.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as late:
            late.sendall(_NEXT)
            return "answered" if late.recv(65536) else "closed without an answer"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "closed without an answer"
    except TimeoutError:
        return "accepted and left hanging"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigterm_finishes_the_requests_in_flight_refuses_new_connections_and_exits_0(backend, tmp_path):
    body = b"grant_type=client_credentials&scope=openid"
    with serving(backend, tmp_path) as served:
        metrics_folder = Path(served.worker_environments()[0]["PROMETHEUS_MULTIPROC_DIR"])
        assert metrics_folder.is_dir()
        in_flight = [_send_the_head_and_half_the_body(served.address, body) for _ in range(3)]
        time.sleep(0.5)  # the server has read the heads and is waiting for the bodies
        served.process.send_signal(signal.SIGTERM)
        try:
            # Within a moment, not after the requests in flight: until the server has seen the signal, a new
            # connection may still be served, or reset if it was waiting to be accepted.
            deadline = time.monotonic() + 10
            while (outcome := _a_new_connection(served.address)) != "refused":
                assert outcome in ("answered", "closed without an answer"), outcome
                assert time.monotonic() < deadline, outcome
                time.sleep(0.2)
            answers = []

            def finish(connection: socket.socket) -> None:
                with connection:
                    connection.sendall(body[len(body) // 2 :])
                    answers.append(_answer(connection))

            finishing = [threading.Thread(target=finish, args=(connection,)) for connection in in_flight]
            for thread in finishing:
                thread.start()
            for thread in finishing:
                thread.join(timeout=30)
            assert len(answers) == 3
            for answer in answers:
                assert re.match(rb"HTTP/1\.1 401 ", answer), answer[:300]
                assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "invalid_client"
            assert served.process.wait(timeout=30) == 0, served.log_text()[-3000:]
            assert not metrics_folder.exists()  # nothing left behind
        finally:
            for connection in in_flight:
                connection.close()
