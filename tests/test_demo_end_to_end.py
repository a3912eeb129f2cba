"""`make demo` for real: the provider and both example sites start, are registered, and single sign-on works.

Runs ``python -m idp.demo`` (what `make demo` runs) in an empty folder on free ports, as a newcomer would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from idp.demo import DEMO_PASSWORD

from .helpers import find_form


def _three_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no three free ports in a row")


def _wait_for(url: str, seconds: float = 90) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def demo(tmp_path: Path):
    port = _three_free_ports()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "CARMAKER_", "DEVICE_REGISTRY_"))},
        # No issuer given: the demo's is http://localhost:PORT, a host name, so that passkeys work.
        "IDP_SERVER_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "idp.demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def test_make_demo_serves_three_sites_with_single_sign_on(demo):
    port, process = demo
    issuer = f"http://localhost:{port}"
    carmaker, registry = (f"http://127.0.0.1:{port + n}" for n in (1, 2))
    assert _wait_for(issuer + "/.well-known/openid-configuration").json()["issuer"] == issuer
    assert "ورود با هویت" in _wait_for(carmaker + "/").text
    assert "ورود با هویت" in _wait_for(registry + "/").text

    browser = requests.Session()
    page = browser.get(carmaker + "/auth/login", timeout=10)
    assert page.url.startswith(issuer + "/login")
    # The carmaker is registered under FAPI 2.0: its request was pushed, the browser carried only a reference.
    sent = page.history[0].headers["Location"]
    assert sent.startswith(issuer + "/authorize?") and "request_uri=urn" in sent and "scope=" not in sent
    form = find_form(page.text, field_name="password")
    data = {**form.fields, "national_code": "0012345679", "password": DEMO_PASSWORD}
    page = browser.post(issuer + form.action, data=data, timeout=10)
    form = find_form(page.text, action_contains="/consent")
    page = browser.post(issuer + form.action, data={**form.fields, "decision": "allow"}, timeout=10)
    assert page.url == carmaker + "/"
    assert "۰۰۱۲۳۴۵۶۷۹" in page.text  # the verified national ID, from Hoviyat

    page = browser.get(registry + "/auth/login", timeout=10)
    assert 'name="password"' not in page.text  # single sign-on: no password, only the registry's consent
    form = find_form(page.text, action_contains="/consent")
    page = browser.post(issuer + form.action, data={**form.fields, "decision": "allow"}, timeout=10)
    assert page.url.startswith(registry)

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    output = process.stdout.read().decode()
    assert "0012345679" in output and DEMO_PASSWORD in output  # it told the newcomer how to log in
    assert "FAPI 2.0" in output
    for offset in (0, 1, 2):  # and stopped all three
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port + offset}/", timeout=2)
