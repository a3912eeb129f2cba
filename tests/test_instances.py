"""One issuer served by two real `idp serve --workers 2` instances on one PostgreSQL database and one Redis: a
flow split across them works, and one instance's /metrics adds up what all its workers counted.

Both instances have the same issuer (instance A's URL), secrets, pairwise salt and keys folder; requests go to
each instance's own port, as a load balancer would send them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from prometheus_client.mmap_dict import MmapedDict

from .helpers import (
    POST_LOGOUT_URI,
    ClientInfo,
    UserInfo,
    authorization_params,
    create_test_client,
    create_test_user,
    pkce_pair,
    query_of,
)
from .instances_support import Deployment, HttpBrowser, Instance, deployment, metric_value


@dataclass
class TwoInstances:
    deployment: Deployment
    a: Instance
    b: Instance
    user: UserInfo
    rp: ClientInfo

    @property
    def issuer(self) -> str:
        return self.deployment.settings["server"]["issuer"]


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoInstances]:
    with deployment(tmp_path_factory.mktemp("two-instances")) as setup:
        user = create_test_user(setup.app)
        rp = create_test_client(setup.app)
        issuer_port = int(setup.settings["server"]["issuer"].rsplit(":", 1)[1])
        a = setup.start(workers=2, port=issuer_port)
        b = setup.start(workers=2)
        a.wait_ready()
        b.wait_ready()
        yield TwoInstances(setup, a, b, user, rp)


def verify(token: str, jwks: dict) -> dict:
    return dict(jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"]).claims)


def refresh(instance: Instance, rp: ClientInfo, refresh_token: str) -> requests.Response:
    return requests.post(
        instance.url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )


def test_a_flow_split_across_two_instances(two: TwoInstances):
    a, b, rp, user = two.a, two.b, two.rp, two.user
    assert a.url == two.issuer and b.url != two.issuer
    browser = HttpBrowser()
    visited: list[str] = []
    browser.session.hooks["response"].append(lambda response, *args, **kwargs: visited.append(response.url))

    # authorize and password login on A
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, scope="openid profile phone")
    page = browser.get(a.url + "/authorize", **params)
    assert page.status_code == 200 and 'name="national_code"' in page.text, page.text[:500]
    page = browser.submit(page, {"national_code": user.national_code, "password": user.password}, field_name="password")
    assert page.status_code == 200 and 'name="decision"' in page.text, page.text[:500]
    callback = browser.submit(page, {"decision": "allow"}, action_contains="/consent")
    assert callback.status_code == 302
    assert callback.headers["Location"].startswith(rp.redirect_uri)
    query = query_of(callback.headers["Location"])
    assert query["state"] == params["state"] and query["iss"] == two.issuer
    assert visited and all(url.startswith(a.url + "/") for url in visited), visited

    # token exchange and refresh on B
    exchanged = requests.post(
        b.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": rp.redirect_uri,
            "code_verifier": verifier,
        },
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    jwks_b = requests.get(b.url + "/jwks.json", timeout=10).json()
    assert jwks_b == requests.get(a.url + "/jwks.json", timeout=10).json()
    claims = verify(tokens["id_token"], jwks_b)
    assert claims["iss"] == two.issuer and claims["aud"] == rp.client_id and claims["nonce"] == params["nonce"]
    assert claims["amr"] == ["pwd"] and claims["sid"]

    refreshed = refresh(b, rp, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    refreshed_tokens = refreshed.json()
    assert refreshed_tokens["refresh_token"] != tokens["refresh_token"]
    assert verify(refreshed_tokens["id_token"], jwks_b)["sub"] == claims["sub"]

    # userinfo on B, with the access token of the refresh (and the first one, issued on B too)
    for access_token in (tokens["access_token"], refreshed_tokens["access_token"]):
        info = requests.get(b.url + "/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == claims["sub"] and info.json()["phone_number"] == user.mobile
    # A's browser session is seen by B (the same cookie, one Redis): B signs the user in without a password.
    sso = browser.get(b.url + "/authorize", **authorization_params(rp, pkce_pair()[1]))
    assert sso.status_code == 302 and sso.headers["Location"].startswith(rp.redirect_uri), sso.text[:500]

    # RP-initiated logout on A
    logout = browser.get(
        a.url + "/logout", id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI, state="bye"
    )
    assert logout.status_code == 302
    assert logout.headers["Location"] == POST_LOGOUT_URI + "?state=bye"

    # then B refuses the refresh token and the access token, and asks the browser for the password again
    refused = refresh(b, rp, refreshed_tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    after = requests.get(
        b.url + "/userinfo", headers={"Authorization": f"Bearer {refreshed_tokens['access_token']}"}, timeout=10
    )
    assert after.status_code == 401
    again = browser.get(b.url + "/authorize", **authorization_params(rp, pkce_pair()[1]))
    assert again.status_code == 200 and 'name="password"' in again.text


def _healthz_counts_by_worker(metrics_dir: Path) -> dict[int, float]:
    """What each worker's own file says about GET /healthz 200 (prometheus_client multiprocess files)."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "hoviyat_http_requests_total" and labels == {
                "endpoint": "/healthz",
                "method": "GET",
                "status": "200",
            }:
                counts[pid] = counts.get(pid, 0) + value
    return counts


def test_metrics_of_one_instance_add_up_all_its_workers(two: TwoInstances):
    a = two.a
    folders = list((two.deployment.root / "tmp").glob("hoviyat-metrics-*"))
    before = requests.get(a.url + "/metrics", timeout=10).text
    healthz = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    start = metric_value(before, "hoviyat_http_requests_total", **healthz)
    workers = set(a.worker_pids())
    assert len(workers) == 2

    def hit(_: int) -> int:
        with requests.Session() as session:  # a new connection each time: the kernel spreads them over workers
            return session.get(a.url + "/healthz", timeout=10).status_code

    sent = 0
    by_worker: dict[int, float] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(10):  # until both workers have served some (almost always the first round)
            assert set(pool.map(hit, range(24))) == {200}
            sent += 24
            by_worker = {}
            for folder in folders:
                for pid, count in _healthz_counts_by_worker(folder).items():
                    by_worker[pid] = by_worker.get(pid, 0) + count
            if all(by_worker.get(pid, 0) > 0 for pid in workers):
                break
    assert all(by_worker.get(pid, 0) > 0 for pid in workers), by_worker
    # Every scrape, whichever worker answers it, reports the whole instance: the sum of all workers' counts.
    for _ in range(6):
        with requests.Session() as session:
            scraped = session.get(a.url + "/metrics", timeout=10).text
        assert metric_value(scraped, "hoviyat_http_requests_total", **healthz) - start == sent
        assert metric_value(scraped, "hoviyat_http_request_duration_seconds_count", endpoint="/healthz") >= sent
    # B is another instance: its own figures, not A's.
    other = requests.get(two.b.url + "/metrics", timeout=10).text
    assert metric_value(other, "hoviyat_http_requests_total", **healthz) == 0


def test_metrics_survive_a_worker_restart(two: TwoInstances):
    instance = two.deployment.start(workers=2)
    try:
        instance.wait_ready()
        first = instance.worker_pids()
        os.kill(first[0], signal.SIGTERM)  # gunicorn replaces a worker that exits
        # The old worker's graceful exit and the new one's start: over 10 s once, with the whole suite running on
        # both cores of the two-core test machine.
        deadline = time.monotonic() + 30
        while not (len(instance.worker_pids()) == 2 and first[0] not in instance.worker_pids()):
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.1)
        for _ in range(8):
            with requests.Session() as session:  # new connections: both workers answer some
                assert session.get(instance.url + "/healthz", timeout=10).status_code == 200
                assert session.get(instance.url + "/metrics", timeout=10).status_code == 200
    finally:
        instance.stop()
