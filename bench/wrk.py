"""Running wrk (closed loop, one thread, pinned to the load generator's core) and reading its report."""

# ruff: noqa: S603, S607 - a benchmark harness runs its tools (wrk, taskset, idp, npm, node, psql) by design

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "wrk"
LOAD_CORE = "1"


def ensure_wrk(log) -> bool:
    """wrk from Debian's package when missing; False when it cannot be had (the Python generator is used)."""
    if shutil.which("wrk"):
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        log("  wrk is missing: apt-get install -y wrk ...")
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)
    return shutil.which("wrk") is not None


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bad: int  # non-2xx/3xx answers and socket errors
    p50: float | None  # seconds
    p99: float | None
    raw: str

    @property
    def ok(self) -> int:
        return max(0, self.requests - self.bad)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests = int(match.group(1))
    seconds = float(match.group(2)) * _UNITS[match.group(3)]
    bad = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        bad += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        # connect/write/timeout errors are lost requests; read errors are mostly the server closing the
        # connection between requests, which wrk counts without losing a request.
        bad += int(sock.group(1)) + int(sock.group(3)) + int(sock.group(4))
    pcts = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    return WrkResult(
        requests,
        seconds,
        bad,
        _seconds(pcts["50"]) if "50" in pcts else None,
        _seconds(pcts["99"]) if "99" in pcts else None,
        output,
    )


def run(
    url: str,
    duration: float,
    connections: int,
    script: str = "request.lua",
    env: dict[str, str] | None = None,
) -> WrkResult:
    seconds = max(1, round(duration))
    cmd = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "--timeout", "10s", "-s", str(SCRIPTS / script), url,
    ]  # fmt: skip
    done = subprocess.run(
        cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse(done.stdout)
