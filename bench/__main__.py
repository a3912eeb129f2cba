"""Hoviyat benchmarks: ``.venv/bin/python -m bench [--quick] [--duration S] [--backend sqlite|postgres|both]
[--scenarios a,b] [--skip-node] [--profile DIR]``. See bench/README.md."""

# ruff: noqa: S603 - a benchmark harness runs its tools (wrk, taskset, idp, npm, node, psql) by design

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import wrk
from .floor import measure as measure_floor
from .loadgen import (
    BenchUser,
    DPoPSigner,
    FlowError,
    Generator,
    Outbox,
    RawHttp,
    Result,
    Target,
    closed_loop,
    open_loop,
)
from .servers import PASSWORD, RAISED_LIMITS, REDIRECT_URI, Hoviyat, NodeProvider, cpu_seconds, get_json, rss_kib

SCENARIOS = [
    "discovery",
    "jwks",
    "client_credentials",
    "refresh",
    "refresh_dpop",
    "introspection",
    "userinfo",
    "userinfo_dpop",
    "code_flow",
    "sms_login",
]
#: Each DPoP scenario beside its bearer one (the report gives their ratio, ours and node-oidc-provider's).
DPOP_SCENARIOS = {"refresh_dpop": "refresh", "userinfo_dpop": "userinfo"}
#: More proofs per second of a DPoP run than any server here answers: each request takes a new one (a proof works
#: once), made before the run so the load generator only sends them.
PROOFS_PER_SECOND = 5000
#: Targets (one worker, one core, PostgreSQL + Redis) as ratios to node-oidc-provider in the same run, since the
#: machine's speed moves between runs; the code flow's is in flows per second.
TARGET_RATIOS = {
    "discovery": 1.5,
    "jwks": 1.2,
    "client_credentials": 0.5,
    "refresh": 0.6,
    "introspection": 0.6,
    "userinfo": 0.5,
}
TARGET_RATES = {"code_flow": 25}
HALF_PEAK = ["client_credentials", "refresh", "introspection"]
HALF_P99_TARGET = 0.020
RSS_TARGET_MB = 150
SESSION_TARGET_BYTES = 1024
WRK_CONNECTIONS = 8
FLOW_WORKERS = 8


@dataclass
class Row:
    system: str  # "sqlite", "postgres", "node"
    scenario: str
    mode: str  # "peak" or "50%"
    rate: float | None
    p50: float | None
    p99: float | None
    errors: int
    tool: str
    note: str = ""
    #: The serving process's CPU time (user and system, all threads) per successful operation, in seconds: where
    #: a request's time goes, beside node-oidc-provider's in the same run. The machine's slower phases raise it as
    #: much as they lower the rate (the same instructions take longer), so it is no steadier across runs.
    cpu: float | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def cpu_ms(row: Row) -> str:
    return "–" if row.cpu is None else f"{row.cpu * 1000:.2f}"


def peak_target(scenario: str, row: Row, ratio: float | None) -> tuple[str, str]:
    """The target of a peak row and whether it is met: a ratio to node-oidc-provider, or a rate."""
    if scenario in TARGET_RATIOS:
        goal = TARGET_RATIOS[scenario]
        met = "n/a" if ratio is None else ("yes" if ratio >= goal and not row.errors else "NO")
        return f"≥ {goal:g}× node", met
    if scenario in TARGET_RATES:
        goal = TARGET_RATES[scenario]
        return f"≥ {goal:,}/s", "yes" if (row.rate or 0) >= goal and not row.errors else "NO"
    return "–", "–"


def wrk_row(system: str, scenario: str, result: wrk.WrkResult, cpu: float | None) -> Row:
    """The peak row of a wrk run (its failures counted and noted) and the CPU time per request measured around it."""
    note = f"{result.bad} failed" if result.bad else ""
    return Row(system, scenario, "peak", result.rate, result.p50, result.p99, result.bad, "wrk", note, cpu)


def cpu_note(row: Row) -> str:
    return "" if row.cpu is None else f" CPU {row.cpu * 1000:.2f} ms/op"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration = args.duration
        self.warmup = args.warmup
        self.rows: list[Row] = []
        self.extra: list[str] = []
        self.serving = "?"
        self.rss_start = 0.0
        self.have_wrk = wrk.ensure_wrk(log)
        if not self.have_wrk:
            raise SystemExit("wrk is needed (Debian: apt-get install -y wrk) and could not be installed")

    # -- helpers -----------------------------------------------------------------------------------------

    def run_async(self, coro):
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)

    async def _with_gen(self, target: Target, fn):
        async with Generator(target) as gen:
            return await fn(gen)

    def with_gen(self, target: Target, fn):
        return self.run_async(self._with_gen(target, fn))

    def users_for(self, server: Hoviyat | None, count: int = 64) -> list[BenchUser]:
        if server is None:
            return [BenchUser(f"user{i}", "", "any") for i in range(count)]
        return [BenchUser(code, mobile, PASSWORD) for code, mobile in server.bench_users]

    def code_flows(self, target: Target, users: list[BenchUser], count: int, offline: bool = True) -> list[dict]:
        """``count`` whole code flows with a password login (for refresh chains and userinfo tokens)."""

        async def go(gen: Generator) -> list[dict]:
            queue: asyncio.Queue = asyncio.Queue()
            for user in users:
                queue.put_nowait(user)
            out: list[dict] = []

            async def one() -> None:
                user = await queue.get()
                try:
                    out.append(await gen.code_flow(gen.password_login(user), offline=offline))
                finally:
                    queue.put_nowait(user)

            pending = list(range(count))
            while pending:
                batch, pending = pending[:8], pending[8:]
                await asyncio.gather(*(one() for _ in batch))
            return out

        return self.with_gen(target, go)

    @staticmethod
    def wrk_costed(
        pid: int, url: str, seconds: float, script: str, env: dict[str, str]
    ) -> tuple[wrk.WrkResult, float | None]:
        """A measured wrk run and the serving process's CPU seconds per successful request during it."""
        before = cpu_seconds(pid)
        result = wrk.run(url, seconds, WRK_CONNECTIONS, script, env)
        used = cpu_seconds(pid) - before
        return result, (used / result.ok if result.ok and used > 0 else None)

    def dpop_wrk(
        self,
        pid: int,
        url: str,
        env: dict[str, str],
        proofs: Callable[[Path, int], None],
        chains: Callable[[], list[str]] | None = None,
    ) -> tuple[wrk.WrkResult, float | None]:
        """A warm-up and a measured wrk run of bench/wrk/dpop.lua, each with proofs (and refresh chains) of its
        own, made by ``proofs(path, count)`` (and ``chains()``) just before it."""
        tmp = Path(tempfile.gettempdir())
        result: tuple[wrk.WrkResult, float | None] | None = None
        for phase in ("warmup", "measure"):
            seconds = self.duration if phase == "measure" else self.warmup
            proof_file = tmp / f"bench-dpop-proofs-{os.getpid()}-{phase}.txt"
            chain_file = tmp / f"bench-dpop-chains-{os.getpid()}-{phase}.txt"
            phase_env = {**env, "BENCH_PROOFS": str(proof_file)}
            try:
                if chains is not None:
                    chain_file.write_text("\n".join(chains()) + "\n")
                    phase_env["BENCH_TOKENS"] = str(chain_file)
                proofs(proof_file, int(PROOFS_PER_SECOND * max(1, round(seconds))) + 500)
                result = self.wrk_costed(pid, url, seconds, "dpop.lua", phase_env)
            finally:
                proof_file.unlink(missing_ok=True)
                chain_file.unlink(missing_ok=True)
        assert result is not None
        return result

    def wrk_or_python(
        self, system: str, scenario: str, url: str, env: dict[str, str], script: str, op_factory, pid: int
    ) -> tuple[Row, int]:
        """A closed-loop peak run of one request; returns the row and how many succeeded in all."""
        if self.have_wrk:
            wrk.run(url, self.warmup, WRK_CONNECTIONS, script, env)
            result, cpu = self.wrk_costed(pid, url, self.duration, script, env)
            return wrk_row(system, scenario, result, cpu), result.ok
        res = self.run_async(self._python_closed(op_factory, WRK_CONNECTIONS))
        return self.row_from(system, scenario, "peak", res, "python"), res.ok

    async def _python_closed(self, op_factory, workers: int) -> Result:
        async def go(gen: Generator) -> Result:
            op = op_factory(gen)
            return await closed_loop(op, workers, self.duration, self.warmup)

        target = op_factory.target  # type: ignore[attr-defined]
        return await self._with_gen(target, go)

    def row_from(self, system: str, scenario: str, mode: str, res: Result, tool: str) -> Row:
        note = ""
        if res.errors:
            note = f"{res.errors} failed; e.g. {res.error_samples[0][:120]}" if res.error_samples else ""
        if mode == "50%" and res.send_lag_p99 > 0.002:
            note = (note + "; " if note else "") + f"generator lag p99 {res.send_lag_p99 * 1000:.1f} ms"
        return Row(system, scenario, mode, res.rate, res.pct(50), res.pct(99), res.errors, tool, note)

    # -- one provider ------------------------------------------------------------------------------------

    def measure(self, system: str, target: Target, meta: dict, server: Hoviyat | None, pid: int) -> None:
        scenarios = self.args.scenarios
        base = target.base
        paths = {
            "discovery": "/.well-known/openid-configuration",
            "jwks": urlsplit(meta["jwks_uri"]).path,
            "token": urlsplit(meta["token_endpoint"]).path,
            "introspection": urlsplit(meta["introspection_endpoint"]).path,
            "userinfo": urlsplit(meta["userinfo_endpoint"]).path,
        }
        auth = target.auth
        users = self.users_for(server)
        peaks: dict[str, float] = {}
        self.cc_issued = 0
        profile = self.args.profile

        def simple_op(method: str, path: str, data=None, headers=None, check: Callable[[bytes], bool] | None = None):
            def factory(gen: Generator):
                async def op(_: int) -> bool:
                    body = await gen.simple(method, path, data, headers)
                    return check(body) if check else True

                return op

            factory.target = target  # type: ignore[attr-defined]
            return factory

        def record(row: Row) -> None:
            self.rows.append(row)
            log(
                f"  {system:8} {row.scenario:18} {row.mode:4} {row.rate or 0:8.1f}/s p50 {ms(row.p50)} ms "
                f"p99 {ms(row.p99)} ms{cpu_note(row)} {row.note}"
            )

        def profiled(scenario: str):
            """Two py-spy recorders: every sample of a serving thread (wall clock, waits on PostgreSQL and
            Redis included) and only samples holding the GIL (Python CPU time; C code that releases the GIL,
            such as Argon2, drops out)."""
            if not profile or system == "node":
                return None
            folder = Path(profile)
            folder.mkdir(parents=True, exist_ok=True)
            procs = []
            spy = str(Path(sys.executable).parent / "py-spy")
            seconds = str(max(1, round(self.duration)))
            for suffix, extra in (("", []), ("-gil", ["--gil"])):
                out = str(folder / f"{system}-{scenario}{suffix}.txt")
                cmd = ["taskset", "-c", "1", spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                       *extra, "--duration", seconds, "--output", out, "--nonblocking"]  # fmt: skip
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return procs

        def stop_profile(procs) -> None:
            for proc in procs or []:
                proc.wait()

        for name in ("discovery", "jwks"):
            if name in scenarios:
                row, _ = self.wrk_or_python(
                    system, name, base + paths[name], {"BENCH_METHOD": "GET"}, "request.lua",
                    simple_op("GET", paths[name]), pid,
                )  # fmt: skip
                record(row)
                peaks[name] = row.rate or 0

        cc_body = {"grant_type": "client_credentials"}
        if "client_credentials" in scenarios:
            env = {"BENCH_METHOD": "POST", "BENCH_BODY": "grant_type=client_credentials", "BENCH_AUTH": auth}
            wrk.run(base + paths["token"], self.warmup, WRK_CONNECTIONS, "request.lua", env)
            proc = profiled("client_credentials")
            res, cpu = self.wrk_costed(pid, base + paths["token"], self.duration, "request.lua", env)
            stop_profile(proc)
            row = wrk_row(system, "client_credentials", res, cpu)
            self.cc_issued += res.ok * (1 + self.warmup / self.duration)
            record(row)
            peaks["client_credentials"] = row.rate or 0

        if "introspection" in scenarios:
            token = self.with_gen(target, lambda gen: gen.token(cc_body))["access_token"]
            check = self.with_gen(
                target,
                lambda gen: gen.simple("POST", paths["introspection"], {"token": token}, {"Authorization": auth}),
            )
            if b'"active": true' not in check and b'"active":true' not in check:
                raise RuntimeError(f"introspection does not say active: {check[:200]!r}")
            env = {"BENCH_METHOD": "POST", "BENCH_BODY": f"token={token}", "BENCH_AUTH": auth}
            wrk.run(base + paths["introspection"], self.warmup, WRK_CONNECTIONS, "request.lua", env)
            proc = profiled("introspection")
            res, cpu = self.wrk_costed(pid, base + paths["introspection"], self.duration, "request.lua", env)
            stop_profile(proc)
            row = wrk_row(system, "introspection", res, cpu)
            record(row)
            peaks["introspection"] = row.rate or 0

        if "userinfo" in scenarios:
            token = self.code_flows(target, users, 1, offline=False)[0]["access_token"]
            env = {"BENCH_METHOD": "GET", "BENCH_AUTH": f"Bearer {token}"}
            row, _ = self.wrk_or_python(system, "userinfo", base + paths["userinfo"], env, "request.lua", None, pid)
            record(row)

        if "userinfo_dpop" in scenarios:
            # An access token bound to the signer's key (a refresh with a proof), then userinfo with the DPoP scheme
            # and a new proof each time, with its ath.
            signer = DPoPSigner()
            token_url, userinfo_url = base + paths["token"], base + paths["userinfo"]
            seed = self.code_flows(target, users, 1)[0]
            bound = self.with_gen(
                target,
                lambda gen: gen.token(
                    {"grant_type": "refresh_token", "refresh_token": seed["refresh_token"]},
                    {"DPoP": signer.proof("POST", token_url)},
                ),
            )
            if str(bound.get("token_type", "")).lower() != "dpop":
                raise RuntimeError(f"the token endpoint did not bind the access token: {bound.get('token_type')}")
            access = bound["access_token"]
            res, cpu = self.dpop_wrk(
                pid, userinfo_url, {"BENCH_MODE": "userinfo", "BENCH_AUTH": f"DPoP {access}"},
                lambda path, count: signer.write_proofs(path, count, "GET", userinfo_url, access),
            )  # fmt: skip
            record(wrk_row(system, "userinfo_dpop", res, cpu))

        if "refresh" in scenarios:
            # Chains for the warm-up, then fresh ones for the measured run: node-oidc-provider's in-memory
            # adapter is an LRU cache that would forget chains left idle during the warm-up.
            chains = 2 * WRK_CONNECTIONS
            tmp = Path(tempfile.gettempdir())
            env = {"BENCH_AUTH": auth}
            for phase in ("warmup", "measure"):
                seeds = self.code_flows(target, users, chains)
                tokens = [s["refresh_token"] for s in seeds if s.get("refresh_token")]
                if len(tokens) < chains:
                    raise RuntimeError(f"code flows gave {len(tokens)} refresh tokens of {chains}")
                f = tmp / f"bench-refresh-{os.getpid()}-{phase}.txt"
                f.write_text("\n".join(tokens) + "\n")
                try:
                    proc = profiled("refresh") if phase == "measure" else None
                    seconds = self.duration if phase == "measure" else self.warmup
                    res, cpu = self.wrk_costed(pid, base + paths["token"], seconds, "refresh.lua",
                                               {**env, "BENCH_TOKENS": str(f)})  # fmt: skip
                    stop_profile(proc)
                finally:
                    f.unlink(missing_ok=True)
            row = wrk_row(system, "refresh", res, cpu)
            record(row)
            peaks["refresh"] = row.rate or 0

        if "refresh_dpop" in scenarios:
            # As refresh, each request with a new proof: the access token it gets is bound to the signer's key.
            signer = DPoPSigner()
            token_url = base + paths["token"]

            def chains() -> list[str]:
                seeds = self.code_flows(target, users, 2 * WRK_CONNECTIONS)
                tokens = [s["refresh_token"] for s in seeds if s.get("refresh_token")]
                if len(tokens) < 2 * WRK_CONNECTIONS:
                    raise RuntimeError(f"code flows gave {len(tokens)} refresh tokens of {2 * WRK_CONNECTIONS}")
                return tokens

            res, cpu = self.dpop_wrk(
                pid, token_url, {"BENCH_MODE": "refresh", "BENCH_AUTH": auth},
                lambda path, count: signer.write_proofs(path, count, "POST", token_url), chains,
            )  # fmt: skip
            record(wrk_row(system, "refresh_dpop", res, cpu))

        # -- whole browser flows (Python generator, closed loop) -----------------------------------------
        if "code_flow" in scenarios:
            proc_holder: list = []

            async def go(gen: Generator) -> Result:
                queue: asyncio.Queue = asyncio.Queue()
                for user in users:
                    queue.put_nowait(user)

                async def op(_: int) -> bool:
                    user = await queue.get()
                    try:
                        tokens = await gen.code_flow(gen.password_login(user))
                        return "id_token" in tokens
                    finally:
                        queue.put_nowait(user)

                async def start_profile() -> None:
                    await asyncio.sleep(self.warmup)
                    proc_holder.append(profiled("code_flow"))

                asyncio.get_running_loop().create_task(start_profile())
                return await closed_loop(op, FLOW_WORKERS, self.duration, self.warmup)

            res = self.with_gen(target, go)
            for p in proc_holder:
                stop_profile(p)
            record(self.row_from(system, "code_flow", "peak", res, "python"))

        if "sms_login" in scenarios:
            if server is None:
                record(Row(system, "sms_login", "peak", None, None, None, 0, "", "n/a: no SMS login"))
            else:
                outbox = Outbox(server.outbox)
                outbox.refresh()

                async def go_sms(gen: Generator) -> Result:
                    queue: asyncio.Queue = asyncio.Queue()
                    for user in users:
                        queue.put_nowait(user)

                    async def op(_: int) -> bool:
                        user = await queue.get()
                        try:
                            # otp.resend_interval is 1 s at least: one code per mobile and second.
                            wait = user.last_sms + 1.05 - time.monotonic()
                            if wait > 0:
                                await asyncio.sleep(wait)
                            tokens = await gen.code_flow(gen.sms_login(user, outbox))
                            return "id_token" in tokens
                        finally:
                            queue.put_nowait(user)

                    return await closed_loop(op, FLOW_WORKERS, self.duration, self.warmup)

                res = self.with_gen(target, go_sms)
                record(self.row_from(system, "sms_login", "peak", res, "python"))

        # -- half-peak fixed-rate runs -----------------------------------------------------------------------
        if not self.args.no_half:
            for name in HALF_PEAK:
                if name not in scenarios or not peaks.get(name):
                    continue
                rate = peaks[name] / 2
                res = self.run_async(self._half(name, target, paths, rate, users))
                if name == "client_credentials":
                    self.cc_issued += res.ok * (1 + self.warmup / self.duration)
                record(self.row_from(system, name, "50%", res, "python"))

    async def _half(self, name: str, target: Target, paths: dict, rate: float, users: list[BenchUser]) -> Result:
        raw = RawHttp(target.base, keepalive=True)
        form = {"Authorization": target.auth, "Content-Type": "application/x-www-form-urlencoded"}

        async def post(path: str, body: str) -> bytes:
            status, payload = await raw.request("POST", path, form, body.encode())
            if status != 200:
                raise FlowError(f"POST {path} {status}: {payload[:200]!r}")
            return payload

        try:
            if name == "client_credentials":

                async def op(_: int) -> bool:
                    return b"access_token" in await post(target.token_path, "grant_type=client_credentials")

            elif name == "introspection":
                token = json.loads(await post(target.token_path, "grant_type=client_credentials"))["access_token"]

                async def op(_: int) -> bool:
                    return b"true" in await post(paths["introspection"], f"token={token}")

            else:  # refresh: a pool of chains; each request takes a free chain and puts back the new token
                chains: asyncio.Queue = asyncio.Queue()
                needed = max(16, int(rate * 0.05) + 8)
                async with Generator(target) as gen:
                    sem = asyncio.Semaphore(8)

                    async def seed(i: int) -> None:
                        async with sem:
                            user = users[i % len(users)]
                            tokens = await gen.code_flow(gen.password_login(user), offline=True)
                            chains.put_nowait(tokens["refresh_token"])

                    await asyncio.gather(*(seed(i) for i in range(needed)))

                async def op(_: int) -> bool:
                    token = await chains.get()
                    body = await post(target.token_path, f"grant_type=refresh_token&refresh_token={token}")
                    chains.put_nowait(json.loads(body)["refresh_token"])
                    return True

            return await open_loop(op, rate, self.duration, self.warmup)
        finally:
            raw.close()

    # -- memory --------------------------------------------------------------------------------------------

    def memory(self, system: str, target: Target, meta: dict, pid: int) -> str:
        goal = self.args.rss_tokens
        token_url = target.base + urlsplit(meta["token_endpoint"]).path
        env = {"BENCH_METHOD": "POST", "BENCH_BODY": "grant_type=client_credentials", "BENCH_AUTH": target.auth}
        before = rss_kib(pid) / 1024
        issued = int(self.cc_issued)
        while issued < goal and self.have_wrk:
            res = wrk.run(token_url, 10 if goal - issued > 5000 else 2, WRK_CONNECTIONS, "request.lua", env)
            issued += res.ok
            if res.ok == 0:
                break
        rss = rss_kib(pid) / 1024
        met = "met" if rss < RSS_TARGET_MB else "NOT met"
        return (
            f"{system}: worker RSS {rss:.1f} MB after {issued:,} client-credentials tokens "
            f"(target < {RSS_TARGET_MB} MB: {met}); {self.rss_start:.1f} MB at start, {before:.1f} MB after "
            "all scenarios, before the token run"
        )

    # -- whole run -----------------------------------------------------------------------------------------

    def run_hoviyat(self, backend: str) -> None:
        log(f"== Hoviyat, {backend} == (load average {os.getloadavg()[0]:.2f})")
        self.extra.append(f"{backend}: 1-min load average before the run {os.getloadavg()[0]:.2f}")
        if self.have_wrk:
            floor = measure_floor(self.duration, self.warmup, WRK_CONNECTIONS)
            line = (
                f"{backend}: serving floor just before (gunicorn's gthread worker as `idp serve` runs it, 4 threads, "
                f"a fixed 2.5 KB answer and nothing else; bench/floor.py): {floor.rate:,.0f} req/s, "
                f"p50 {ms(floor.p50)} ms, "
                f"p99 {ms(floor.p99)} ms"
            )
            self.extra.append(line)
            log("  " + line)
        server = Hoviyat(backend, users=self.args.users)
        try:
            server.setup(log)
            server.start()
            meta = get_json(server.base + "/.well-known/openid-configuration")
            target = Target(
                server.base, server.client_id, server.client_secret, REDIRECT_URI,
                token_path=urlsplit(meta["token_endpoint"]).path,
                authorize_path=urlsplit(meta["authorization_endpoint"]).path,
            )  # fmt: skip
            pid = server.worker_pid()
            self.rss_start = rss_kib(pid) / 1024
            log(f"  worker pid {pid}, RSS at start {self.rss_start:.1f} MB; {server.serving_line()}")
            self.serving = server.serving_line()
            self.measure(backend, target, meta, server, pid)
            if not self.args.skip_memory:
                line = self.memory(backend, target, meta, server.worker_pid())
                self.extra.append(line)
                log("  " + line)
            sessions = server.session_bytes()
            if sessions is not None:
                count, mean = sessions
                met = "met" if 0 < mean < SESSION_TARGET_BYTES else "NOT met"
                line = (
                    f"{backend}: {count} logged-in browser sessions in Redis, MEMORY USAGE mean {mean:.0f} bytes "
                    f"per session (target < {SESSION_TARGET_BYTES} B: {met})"
                )
                self.extra.append(line)
                log("  " + line)
            errors = server.count_5xx()
            if errors:
                self.extra.append(f"{backend}: the server answered {errors} requests with 5xx (see its log)")
        finally:
            server.teardown()

    def run_node(self) -> None:
        log(f"== node-oidc-provider == (load average {os.getloadavg()[0]:.2f})")
        node = NodeProvider()
        try:
            node.setup(log)
            node.start()
            meta = get_json(node.base + "/.well-known/openid-configuration")
            target = Target(
                node.base, node.client_id, node.client_secret, REDIRECT_URI,
                token_path=urlsplit(meta["token_endpoint"]).path,
                authorize_path=urlsplit(meta["authorization_endpoint"]).path,
                scope="openid profile", node=True,
            )  # fmt: skip
            self.node_version = node.installed_version
            self.measure("node", target, meta, None, node.worker_pid())
        finally:
            node.teardown()

    def main(self) -> int:
        backends = {"both": ["sqlite", "postgres"], "none": []}.get(self.args.backend, [self.args.backend])
        failed = False
        for backend in backends:
            try:
                self.run_hoviyat(backend)
            except Exception:
                failed = True
                log(traceback.format_exc())
                self.extra.append(f"{backend}: the run failed (see above)")
        self.node_version = ""
        if not self.args.skip_node:
            try:
                self.run_node()
            except Exception:
                failed = True
                log(traceback.format_exc())
                self.extra.append("node: the run failed (see above)")
        print(self.report(backends))
        return 1 if failed else 0

    def report(self, backends: list[str]) -> str:
        a = self.args
        lines = [
            f"Hoviyat benchmark, {time.strftime('%Y-%m-%d %H:%M')}: `taskset -c 0 idp serve --workers 1` "
            f"({self.serving}), load generator on core 1; {a.duration:g} s per figure "
            f"after {a.warmup:g} s warm-up; closed loop with {WRK_CONNECTIONS} connections (wrk) or "
            f"{FLOW_WORKERS} browsers (flows); '50%' rows are fixed-rate (open-loop) runs at half the measured "
            "peak, latency counted from each request's scheduled start.",
            "Rate limits RAISED for the bench: "
            + "; ".join(
                f"[{s}] " + ", ".join(f"{k}={v}" for k, v in vals.items()) for s, vals in RAISED_LIMITS.items()
            ),
            "",
        ]
        systems = backends + (["node"] if not a.skip_node else [])
        node_rows = {(r.scenario, r.mode): r for r in self.rows if r.system == "node"}
        header = (
            "| scenario | mode | backend | req/s | p50 ms | p99 ms | CPU ms/op | target | met "
            "| node req/s | ours/node |"
        )
        lines += [header, "|" + " --- |" * 11]
        for scenario in a.scenarios:
            for mode in ("peak", "50%"):
                for system in backends:
                    row = next(
                        (r for r in self.rows if r.system == system and r.scenario == scenario and r.mode == mode),
                        None,
                    )
                    if row is None:
                        continue
                    node = node_rows.get((scenario, mode))
                    ratio = row.rate / node.rate if node and node.rate and row.rate else None
                    if mode == "peak":
                        target, met = peak_target(scenario, row, ratio)
                    else:
                        target = f"p99 < {HALF_P99_TARGET * 1000:.0f} ms"
                        met = "yes" if row.p99 is not None and row.p99 < HALF_P99_TARGET and not row.errors else "NO"
                    if system != "postgres" and met != "–":
                        met += " (target is for PG+Redis)" if system == "sqlite" else ""
                    node_rate = (
                        "–" if "node" not in systems else ("n/a" if not node or not node.rate else f"{node.rate:,.0f}")
                    )
                    rate = "–" if row.rate is None else f"{row.rate:,.0f}"
                    if row.errors:
                        rate += f" ({row.errors} err)"
                    lines.append(
                        f"| {scenario} | {mode} | {system} | {rate} | {ms(row.p50)} | {ms(row.p99)} | {cpu_ms(row)} "
                        f"| {target} "
                        f"| {met} | {node_rate} | {'–' if ratio is None else f'{ratio:.2f}'} |"
                    )
        node_lines = [r for r in self.rows if r.system == "node"]
        if node_lines:
            lines += [
                "",
                f"node-oidc-provider {self.node_version} alone (one node process on core 0, keep-alive):",
                "| scenario | mode | req/s | p50 ms | p99 ms | CPU ms/op | note |",
                "|" + " --- |" * 7,
            ]
            for r in node_lines:
                rate = "n/a" if r.rate is None else f"{r.rate:,.0f}"
                lines.append(
                    f"| {r.scenario} | {r.mode} | {rate} | {ms(r.p50)} | {ms(r.p99)} | {cpu_ms(r)} | {r.note} |"
                )
        lines += self.dpop_lines(systems)
        notes = [r for r in self.rows if r.note and r.system != "node"]
        if notes or self.extra:
            lines.append("")
            for r in notes:
                lines.append(f"- {r.system} {r.scenario} {r.mode}: {r.note}")
            for extra in self.extra:
                lines.append(f"- {extra}")
        return "\n".join(lines)

    def dpop_lines(self, systems: list[str]) -> list[str]:
        """What DPoP costs beside the bearer token, for ours and node-oidc-provider, from the peak rows."""
        peak = {(r.system, r.scenario): r for r in self.rows if r.mode == "peak"}
        lines = []
        for dpop, bearer in DPOP_SCENARIOS.items():
            for system in systems:
                with_proof, without = peak.get((system, dpop)), peak.get((system, bearer))
                if not with_proof or not without or not with_proof.rate or not without.rate:
                    continue
                lines.append(
                    f"- {system} {dpop}: {with_proof.rate:,.0f}/s, {with_proof.rate / without.rate:.2f} of {bearer} "
                    f"with a bearer token ({without.rate:,.0f}/s); CPU {cpu_ms(with_proof)} against {cpu_ms(without)} "
                    "ms/op"
                )
        return ["", "DPoP beside bearer tokens (peak):", *lines] if lines else []


def machine() -> str:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    model = next(
        (ln.split(":", 1)[1].strip() for ln in out(["lscpu"]).splitlines() if ln.startswith("Model name")), "?"
    )
    # tools/native_argon2.py leaves this marker when the Argon2 bindings were compiled for this CPU.
    argon2 = "built for this CPU" if (Path(sys.prefix) / ".argon2-native").exists() else "portable wheel"
    return (
        f"{model}, {os.cpu_count()} cores; Linux {platform.release()}; Python {platform.python_version()} "
        f"({interpreter()}); Node {out(['node', '--version']) if shutil.which('node') else '-'}; Argon2 {argon2}"
    )


def interpreter() -> str:
    """Which CPython build serves: most of a request's CPU time is the interpreter's, and builds differ by a fifth
    (docs/deployment.md, "Which Python"). An executable that loads libpython as a shared library is a build without
    the distributions' static, profile-guided one (pyenv's default)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    linked = "libpython shared" if "libpython" in maps else "libpython static"
    return f"{os.path.realpath(sys.executable)}, {linked}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per figure (default 10)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each (default 2)")
    p.add_argument("--backend", choices=["sqlite", "postgres", "both", "none"], default="both")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    p.add_argument("--skip-node", action="store_true", help="do not measure node-oidc-provider")
    p.add_argument("--quick", action="store_true", help="short runs for a smoke check (2 s, small memory run)")
    p.add_argument("--users", type=int, default=None, help="accounts to create (default 64; 24 with --quick)")
    p.add_argument("--rss-tokens", type=int, default=None, help="tokens before reading the RSS (default 100000)")
    p.add_argument("--skip-memory", action="store_true", help="no RSS run")
    p.add_argument("--no-half", action="store_true", help="no fixed-rate runs at half the peak")
    p.add_argument("--profile", metavar="DIR", help="py-spy raw profiles of the worker into DIR")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2.0)
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.users is None:
        args.users = 24 if args.quick else 64
    if args.rss_tokens is None:
        args.rss_tokens = 5000 if args.quick else 100_000
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log(f"machine: {machine()}")
    return Bench(args).main()


if __name__ == "__main__":
    sys.exit(main())
