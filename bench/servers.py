"""Setting up and tearing down what is measured: a Hoviyat instance per backend, and node-oidc-provider."""

# ruff: noqa: S603, S607 - a benchmark harness runs its tools (wrk, taskset, idp, npm, node, psql) by design

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IDP = str(VENV_BIN / "idp") if (VENV_BIN / "idp").exists() else "idp"
PASSWORD = "bench horse battery staple"
REDIRECT_URI = "http://127.0.0.1:9/callback"
SCOPE = "openid profile phone national_id"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc"]
REDIS_URL = "redis://127.0.0.1:6379/0"

# Everything the bench raises above the defaults (printed with the results). Captcha off; the per-IP
# limits and the failed-login throttles would otherwise stop one load generator on one address within seconds.
RAISED_LIMITS = {
    "limits": {"login_per_ip": "10000000 per minute", "token_per_ip": "10000000 per minute"},
    "otp": {
        "per_mobile": "10000000 per hour",
        "per_mobile_anonymous": "10000000 per hour",
        "per_ip": "10000000 per hour",
        "resend_interval": 1,
    },
    "login": {
        "delay_after_failures": 1000000,
        "captcha_after_failures": 1000000,
        "ip_captcha_after_failures": 1000000,
        "ip_delay_after_failures": 1000000,
    },
    "captcha": {"enabled": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own local server
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        return json.load(resp)


def national_code(n: int) -> str:
    """A valid national code (check digit as idp.rules.national_code computes it) for bench user ``n``."""
    first = f"{900000000 + n:09d}"
    total = sum(int(d) * (10 - i) for i, d in enumerate(first)) % 11
    return first + str(total if total < 2 else 11 - total)


def _toml(data: dict) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
    return "\n".join(lines) + "\n"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, all its threads), from /proc; 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command's closing parenthesis: state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Hoviyat:
    backend: str  # sqlite | postgres
    users: int
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hoviyat-bench-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    client_id: str = ""
    client_secret: str = ""
    bench_users: list[tuple[str, str]] = field(default_factory=list)  # (national code, mobile)
    db_name: str = ""
    redis_prefix: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def outbox(self) -> Path:
        return self.dir / "var" / "sms-outbox.jsonl"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env["IDP_CONFIG"] = str(self.dir / "config.toml")
        return env

    def idp(self, *args: str) -> str:
        done = subprocess.run([IDP, *args], env=self.env(), cwd=self.dir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"idp {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def setup(self, log) -> None:
        tag = f"{os.getpid()}_{int(time.time())}"
        config = {
            "server": {
                "issuer": self.base,
                "var_dir": str(self.dir / "var"),
                "port": self.port,
                "host": "127.0.0.1",
            },
            "keys": {"dir": str(self.dir / "keys")},
            **RAISED_LIMITS,
        }
        if self.backend == "postgres":
            self.db_name = f"hoviyat_bench_{tag}"
            self.redis_prefix = f"hoviyat-bench-{tag}:"
            subprocess.run([*PG_ADMIN, f'CREATE DATABASE "{self.db_name}"'], check=True)
            config["database"] = {"url": PG_URL.format(db=self.db_name)}
            config["redis"] = {"url": REDIS_URL, "key_prefix": self.redis_prefix}
        (self.dir / "config.toml").write_text(_toml(config))
        self.idp("db", "upgrade")
        self.idp("keys", "generate")
        created = json.loads(
            self.idp(
                "clients", "create", "--name", "Bench portal", "--redirect-uri", REDIRECT_URI,
                "--scope", SCOPE, "--grant-type", "client_credentials", "--grant-type", "authorization_code",
                "--grant-type", "refresh_token", "--trusted", "--json",
            )
        )  # fmt: skip
        self.client_id, self.client_secret = created["client_id"], created["client_secret"]
        log(f"  creating {self.users} users with `idp users create` ...")
        people = [(national_code(i), f"0912{5000000 + i:07d}") for i in range(self.users)]

        def make(person: tuple[str, str]) -> None:
            code, mobile = person
            self.idp(
                "users", "create", "--national-code", code, "--mobile", mobile, "--birthdate", "1990-03-21",
                "--given-name", "Bench", "--family-name", f"User {code}", "--password", PASSWORD, "--json",
            )  # fmt: skip

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(make, people))
        self.bench_users = [(code, "+98" + mobile[1:]) for code, mobile in people]

    def start(self) -> None:
        log_file = (self.dir / "serve.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", IDP, "serve", "--workers", "1"],
            env=self.env(), cwd=self.dir, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_http(self.base + "/.well-known/openid-configuration")

    def serving_line(self) -> str:
        """What `idp serve` said about its workers and threads."""
        for line in (self.dir / "serve.log").read_text(errors="replace").splitlines():
            if "worker(s)" in line:
                return line[line.find("(") + 1 : line.rfind(")")]
        return "one worker"

    def worker_pid(self) -> int:
        assert self.process is not None
        kids = children(self.process.pid)
        if not kids:
            raise RuntimeError("no worker found: `idp serve` (gunicorn) has no child process")
        return kids[0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def count_5xx(self) -> int:
        path = self.dir / "serve.log"
        if not path.exists():
            return 0
        # The app's access lines (idp.ops.logs, text format): "... idp.access [request id] METHOD PATH STATUS ...".
        answered_5xx = re.compile(rb" idp\.access \[[^\]]*\] \S+ \S+ 5\d\d\b")
        with path.open("rb") as handle:
            return sum(1 for line in handle if answered_5xx.search(line))

    def session_bytes(self) -> tuple[int, float] | None:
        """(logged-in browser sessions, mean MEMORY USAGE in bytes) under our Redis prefix."""
        if self.backend != "postgres":
            return None
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        sizes = []
        for key in r.scan_iter(match=self.redis_prefix + "browser-session:*", count=1000):
            value = r.get(key)
            if value and b'"sid"' in value:
                sizes.append(r.memory_usage(key, samples=0) or 0)
        return (len(sizes), sum(sizes) / len(sizes)) if sizes else (0, 0.0)

    def teardown(self) -> None:
        self.stop()
        if self.backend == "postgres":
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            # Ours, and the rate-limit counters, which the `limits` package files under "LIMITS:LIMITER/" + our prefix.
            keys = [
                key
                for pattern in (self.redis_prefix + "*", "LIMITS:LIMITER/" + self.redis_prefix + "*")
                for key in r.scan_iter(match=pattern, count=1000)
            ]
            for i in range(0, len(keys), 1000):
                r.delete(*keys[i : i + 1000])
            subprocess.run([*PG_ADMIN, f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class NodeProvider:
    """node-oidc-provider from npm, installed into a temporary folder; the server script lives in bench/node."""

    version: str = "9"
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="oidc-provider-bench-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    client_id: str = "bench-client"
    client_secret: str = "bench-secret-" + "x" * 32
    installed_version: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def setup(self, log) -> None:
        (self.dir / "package.json").write_text('{"name": "oidc-bench", "private": true, "type": "module"}\n')
        log(f"  npm install oidc-provider@{self.version} into {self.dir} ...")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"oidc-provider@{self.version}"],
            cwd=self.dir, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.copy(ROOT / "bench" / "node" / "server.mjs", self.dir / "server.mjs")
        meta = json.loads((self.dir / "node_modules" / "oidc-provider" / "package.json").read_text())
        self.installed_version = meta["version"]

    def start(self) -> None:
        env = dict(os.environ, PORT=str(self.port), CLIENT_ID=self.client_id, CLIENT_SECRET=self.client_secret)
        env["REDIRECT_URI"] = REDIRECT_URI
        env["NODE_ENV"] = "production"
        log_file = (self.dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", "node", "server.mjs"],
            cwd=self.dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_http(self.base + "/.well-known/openid-configuration")

    def worker_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def teardown(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
