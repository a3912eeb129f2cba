"""A relying party written with a library nobody here wrote logs in unchanged under the FAPI 2.0 profile:
panva's openid-client v6 for Node (tests/node/openid_client_rp.mjs) pushes its request, authenticates with
private_key_jwt and binds its tokens with DPoP, against a served instance. openid-client is installed from npm
into a temporary folder, never into the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from .helpers import REDIRECT_URI, UserInfo, create_test_user, find_form, serve
from .high_assurance import ClientKeys, fapi_client

SCRIPT = Path(__file__).resolve().parent / "node" / "openid_client_rp.mjs"


@pytest.fixture(scope="session")
def openid_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with openid-client v6 installed from npm, and the relying party's script."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed to run openid-client")
    folder = tmp_path_factory.mktemp("openid-client")
    (folder / "package.json").write_text('{"name": "hoviyat-openid-client-test", "private": true, "type": "module"}')
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "openid-client@6"],  # noqa: S607
        cwd=folder, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, f"npm install openid-client@6 failed: {installed.stderr[-2000:]}"
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def browse_to_callback(url: str, user: UserInfo) -> str:
    """A person's browser at the authorization URL: log in, allow, and stop at the redirect to the client."""
    session = requests.Session()
    response = session.get(url, timeout=15)
    form = find_form(response.text, field_name="password")
    data = {**form.fields, "national_code": user.national_code, "password": user.password}
    response = session.post(urljoin(response.url, form.action), data=data, timeout=15, allow_redirects=False)
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(REDIRECT_URI):
                return location
            response = session.get(location, timeout=15, allow_redirects=False)
        else:
            form = find_form(response.text, action_contains="/consent")
            data = {**form.fields, "decision": "allow"}
            response = session.post(urljoin(response.url, form.action), data=data, timeout=15, allow_redirects=False)
    raise AssertionError("the browser never came back to the client")


def run_relying_party(folder: Path, issuer: str, client_id: str, keys: ClientKeys, user: UserInfo) -> dict[str, Any]:
    key = keys.key.as_dict(private=True) | {"kid": keys.kid}
    env = {
        **os.environ,
        "ISSUER": issuer,
        "CLIENT_ID": client_id,
        "CLIENT_KEY": json.dumps(key),
        "REDIRECT_URI": REDIRECT_URI,
        "SCOPE": "openid profile",
    }
    process = subprocess.Popen(  # noqa: S603 - our own script, run with node
        ["node", SCRIPT.name],  # noqa: S607
        cwd=folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdin is not None
        first = process.stdout.readline()
        if not first:
            raise AssertionError(f"openid-client failed before the browser: {process.stderr.read()[-3000:]}")
        url = json.loads(first)["authorization_url"]
        assert url.startswith(issuer + "/authorize?") and "request_uri=" in url and "scope=" not in url
        process.stdin.write(browse_to_callback(url, user) + "\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"openid-client failed: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def assert_logged_in(issuer: str, result: dict[str, Any]) -> None:
    assert result["token_type"].lower() == "dpop"
    keys = KeySet.import_key_set(requests.get(issuer + "/jwks.json", timeout=15).json())
    access = jwt.decode(result["access_token"], keys, algorithms=["ES256", "PS256"]).claims
    assert len(access["cnf"]["jkt"]) == 43
    claims = result["id_token_claims"]
    assert claims["iss"] == issuer and claims["sub"] == result["userinfo"]["sub"]
    assert result["userinfo"]["given_name"]
    # Refreshed with DPoP; the refresh token is kept, not rotated (FAPI 2.0).
    assert result["refreshed_token_type"].lower() == "dpop"
    assert result["refreshed_refresh_token"] == result["refresh_token"]
    refreshed = jwt.decode(result["refreshed_access_token"], keys, algorithms=["ES256", "PS256"]).claims
    assert refreshed["cnf"] == access["cnf"]


def test_openid_client_logs_in_with_par_dpop_and_private_key_jwt(app, openid_client):
    rp, keys = fapi_client(app)
    user = create_test_user(app)
    with serve(app) as issuer:
        assert_logged_in(issuer, run_relying_party(openid_client, issuer, rp.client_id, keys, user))


def test_openid_client_follows_dpop_nonces(app_with, openid_client):
    app = app_with(oauth={"dpop_require_nonce": True})
    rp, keys = fapi_client(app)
    user = create_test_user(app)
    with serve(app) as issuer:
        assert_logged_in(issuer, run_relying_party(openid_client, issuer, rp.client_id, keys, user))
