"""The asyncio load generator (aiohttp) for the stateful scenarios and the fixed-rate (open-loop) runs.

Closed loop: N workers, each repeating one operation (a request or a whole browser flow) back to back.
Open loop: operations are started on a fixed schedule whatever the answers do, and each latency is counted
from the moment the operation was *due*, so a stalled server shows up in p99 (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp
from joserfc import jwt
from joserfc.jwk import ECKey

Op = Callable[[int], Awaitable[bool]]  # worker index -> success


class FlowError(Exception):
    pass


@dataclass
class Result:
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations only
    send_lag_p99: float = 0.0  # open loop: how late the generator itself started operations
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float | None:
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]


def percentile(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))] if data else 0.0


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


_INPUT = re.compile(r"<input\b[^>]*>", re.S)
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)


def forms(html: str) -> list[tuple[str, dict[str, str]]]:
    """(action, {hidden and prefilled field: value}) for each form of a page."""
    out = []
    for attrs, body in _FORM.findall(html):
        action = dict(_ATTR.findall(attrs)).get("action", "")
        fields = {}
        for tag in _INPUT.findall(body):
            a = dict(_ATTR.findall(tag))
            if "name" in a:
                fields[a["name"]] = a.get("value", "").replace("&amp;", "&")
        out.append((action.replace("&amp;", "&"), fields))
    return out


def form_with(html: str, field_name: str) -> tuple[str, dict[str, str]]:
    for action, fields in forms(html):
        if field_name in fields:
            return action, fields
    raise FlowError(f"no form with field {field_name!r}")


class Outbox:
    """Reads the SMS outbox (JSON lines) incrementally; the newest code per (mobile, purpose)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.codes: dict[tuple[str, str], str] = {}

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            self.codes[(record["to"], record["purpose"])] = record["code"]

    async def take(self, mobile: str, purpose: str = "login") -> str:
        for _ in range(50):
            self.refresh()
            code = self.codes.pop((mobile, purpose), None)
            if code is not None:
                return code
            await asyncio.sleep(0.01)
        raise FlowError(f"no SMS code for {mobile}")


@dataclass
class Target:
    base: str  # e.g. http://127.0.0.1:5600
    client_id: str
    client_secret: str
    redirect_uri: str
    token_path: str = "/token"
    authorize_path: str = "/authorize"
    scope: str = "openid profile phone national_id"
    node: bool = False  # node-oidc-provider (devInteractions) instead of Hoviyat's pages

    @property
    def auth(self) -> str:
        return basic_auth(self.client_id, self.client_secret)


class DPoPSigner:
    """A client's DPoP key (ES256), making proofs (RFC 9449 section 4.2) for the DPoP scenarios. A proof works
    once, so wrk is given a file of them made before each run (bench/wrk/dpop.lua)."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", private=True)
        self.header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode()).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return jwt.encode(self.header, claims, self.key, algorithms=["ES256"])

    def write_proofs(self, path: Path, count: int, method: str, url: str, access_token: str | None = None) -> None:
        path.write_text("\n".join(self.proof(method, url, access_token) for _ in range(count)) + "\n")


@dataclass
class BenchUser:
    national_code: str
    mobile: str
    password: str
    last_sms: float = 0.0


class Generator:
    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.connector: aiohttp.TCPConnector | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Generator:
        # Keep-alive where the server keeps connections open (gunicorn's workers and node all do).
        self.connector = aiohttp.TCPConnector(limit=0)
        self.http = aiohttp.ClientSession(connector=self.connector, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.http is not None
        await self.http.close()

    def browser(self) -> aiohttp.ClientSession:
        """A fresh browser: its own cookie jar on the shared connector."""
        return aiohttp.ClientSession(
            connector=self.connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=self.timeout,
        )

    # -- single requests ---------------------------------------------------------------------------------

    async def token(self, data: dict[str, str], headers: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.post(
            self.target.base + self.target.token_path,
            data=data,
            headers={"Authorization": self.target.auth, **(headers or {})},
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise FlowError(f"token {resp.status}: {body[:200]!r}")
            return json.loads(body)

    async def simple(self, method: str, path: str, data: dict[str, str] | None = None, headers=None) -> bytes:
        assert self.http is not None
        async with self.http.request(method, self.target.base + path, data=data, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise FlowError(f"{method} {path} {resp.status}: {body[:200]!r}")
            return body

    # -- whole flows -------------------------------------------------------------------------------------

    def _abs(self, url: str, base: str) -> str:
        return urljoin(base, url)

    async def _get(self, b: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
        async with b.get(url, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location", ""), await resp.text()

    async def _post(self, b: aiohttp.ClientSession, url: str, data: dict[str, str]) -> tuple[int, str, str]:
        async with b.post(url, data=data, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location", ""), await resp.text()

    async def _follow(self, b: aiohttp.ClientSession, status: int, location: str, url: str, body: str):
        """Follow redirects inside the provider; stop at the relying party's redirect_uri."""
        for _ in range(10):
            if status not in (301, 302, 303, 307):
                return status, url, body
            url = self._abs(location, url)
            if url.startswith(self.target.redirect_uri):
                return status, url, body
            status, location, body = await self._get(b, url)
        raise FlowError("too many redirects")

    async def code_flow(self, login: Callable[..., Awaitable[tuple[int, str, str]]], *, offline: bool = False):
        """authorize -> login (``login``) -> consent when asked -> code -> token exchange with PKCE S256."""
        t = self.target
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        params = {
            "response_type": "code",
            "client_id": t.client_id,
            "redirect_uri": t.redirect_uri,
            "scope": t.scope + (" offline_access" if offline and t.node else ""),
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if offline and t.node:
            params["prompt"] = "consent"
        async with self.browser() as b:
            url = t.base + t.authorize_path + "?" + urlencode(params)
            status, location, body = await self._get(b, url)
            status, url, body = await self._follow(b, status, location, url, body)
            status, url, body = await login(b, url, body)
            for _ in range(3):  # consent pages (none for a trusted Hoviyat client)
                if url.startswith(t.redirect_uri):
                    break
                status, url, body = await self._consent(b, url, body)
            if not url.startswith(t.redirect_uri):
                raise FlowError(f"flow ended at {url} ({status}): {body[:300]!r}")
            query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            if query.get("state") != state or "code" not in query:
                raise FlowError(f"bad callback {url}")
        return await self.token(
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": t.redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def _consent(self, b, url: str, body: str):
        if self.target.node:
            action, fields = forms(body)[0]
            fields.setdefault("prompt", "consent")
        else:
            action, fields = form_with(body, "decision")
            fields["decision"] = "allow"
        post_url = self._abs(action, url)
        status, location, body = await self._post(b, post_url, fields)
        return await self._follow(b, status, location, post_url, body)

    def password_login(self, user: BenchUser):
        async def login(b, url: str, body: str):
            if self.target.node:  # devInteractions: any login name, the password is not checked
                action, fields = forms(body)[0]
                fields.update(login=user.national_code, password=user.password, prompt="login")
            else:
                action, fields = form_with(body, "national_code")
                fields.update(national_code=user.national_code, password=user.password)
            post_url = self._abs(action, url)
            status, location, body = await self._post(b, post_url, fields)
            return await self._follow(b, status, location, post_url, body)

        return login

    def sms_login(self, user: BenchUser, outbox: Outbox):
        async def login(b, url: str, body: str):
            # The login page links to the SMS login with the pending request (<a id="link-otp-login">).
            match = re.search(r'<a id="link-otp-login" href="([^"]+)"', body)
            if not match:
                raise FlowError("no link-otp-login")
            sms_url = self._abs(match.group(1).replace("&amp;", "&"), url)
            status, location, body = await self._get(b, sms_url)
            action, fields = form_with(body, "national_code")
            fields["national_code"] = user.national_code
            post_url = self._abs(action, sms_url)
            user.last_sms = time.monotonic()
            status, location, body = await self._post(b, post_url, fields)
            if status != 303:
                raise FlowError(f"SMS start answered {status}: {body[:300]!r}")
            verify_url = self._abs(location, post_url)
            status, location, body = await self._get(b, verify_url)
            code = await outbox.take(user.mobile)
            action, fields = form_with(body, "code")
            fields["code"] = code
            post_url = self._abs(action, verify_url)
            status, location, body = await self._post(b, post_url, fields)
            return await self._follow(b, status, location, post_url, body)

        return login


# -- drivers ----------------------------------------------------------------------------------------------


async def closed_loop(op: Op, workers: int, duration: float, warmup: float) -> Result:
    result = Result()
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration

    async def worker(index: int) -> None:
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                return
            try:
                ok = await op(index)
            except Exception as error:
                ok = False
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"{type(error).__name__}: {str(error)[:300]}")
            t1 = time.monotonic()
            if t0 >= measure_from and t1 <= end:
                if ok:
                    result.ok += 1
                    result.latencies.append(t1 - t0)
                else:
                    result.errors += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    result.elapsed = duration
    return result


async def open_loop(op: Op, rate: float, duration: float, warmup: float, max_in_flight: int = 2000) -> Result:
    """Start ``rate`` operations per second; latency counts from the scheduled start."""
    result = Result()
    lags: list[float] = []
    tasks: set[asyncio.Task] = set()
    start = time.monotonic() + 0.05
    total = int((warmup + duration) * rate)
    measure_from = start + warmup
    sem = asyncio.Semaphore(max_in_flight)

    async def one(index: int, due: float) -> None:
        async with sem:
            lags.append(time.monotonic() - due)
            try:
                ok = await op(index)
            except Exception as error:
                ok = False
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"{type(error).__name__}: {str(error)[:300]}")
            done = time.monotonic()
            if due >= measure_from:
                if ok:
                    result.ok += 1
                    result.latencies.append(done - due)
                else:
                    result.errors += 1

    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.elapsed = duration
    result.send_lag_p99 = percentile(lags, 99)
    return result


class RawHttp:
    """A minimal HTTP/1.1 client on asyncio streams, for the fixed-rate runs: aiohttp costs too much CPU
    per request to hold a few thousand requests a second from one core. Keep-alive unless the server closes."""

    def __init__(self, base: str, keepalive: bool, max_connections: int = 64) -> None:
        parts = urlsplit(base)
        # A bounded pool, as real clients have: a burst of new connections would overflow the server's
        # listen backlog and cost 1 s SYN retransmits. Waiting for a free connection counts as latency.
        self.slots = asyncio.Semaphore(max_connections)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.keepalive = keepalive
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        async with self.slots:
            return await self._pooled(method, path, headers, body)

    async def _pooled(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.idle:
            try:
                return await self._request(self.idle.pop(), method, path, headers, body)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                # The server may close an idle keep-alive connection just as it is reused: as any HTTP client
                # does, send the request again on a new connection (only when no answer had started).
                if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                    raise
        conn = await asyncio.open_connection(self.host, self.port)
        return await self._request(conn, method, path, headers, body)

    async def _request(self, conn, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if not self.keepalive:
            head.append("Connection: close")
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            if "content-length" in fields:
                payload = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding") == "chunked":
                payload = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    payload += (await reader.readexactly(size + 2))[:-2]
                    if size == 0:
                        break
            else:
                payload = await reader.read()
        except BaseException:
            writer.close()
            raise
        if self.keepalive and fields.get("connection", "").lower() != "close":
            self.idle.append(conn)
        else:
            writer.close()
        return status, payload

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
