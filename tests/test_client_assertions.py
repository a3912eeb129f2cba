"""private_key_jwt (RFC 7523, OpenID Connect Core section 9), hardened: keys from a client's jwks_uri are cached
and fetched again when an assertion names a key the copy lacks; each assertion works once, even when sent many
times at once; PS256 works; what a FAPI 2.0 client may send is narrower (tests/test_fapi.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from .conftest import free_port
from .helpers import create_test_client
from .high_assurance import ClientKeys


class JwksHost:
    """A relying party's jwks_uri, served over HTTP; counts the fetches."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.fetches += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(self.jwks).encode()]


@pytest.fixture
def jwks_host() -> Iterator[JwksHost]:
    host = JwksHost()
    host.thread.start()
    yield host
    host.server.shutdown()


def client_credentials(client: Any, keys: ClientKeys, client_id: str, issuer: str, **claims: Any) -> Any:
    data = {"grant_type": "client_credentials", **keys.auth(client_id, issuer, **claims)}
    return client.post("/token", data=data)


def test_a_rotated_key_is_fetched_when_an_assertion_names_it(app, client, issuer, jwks_host):
    old = ClientKeys()
    jwks_host.jwks = old.public_jwks
    rp = create_test_client(
        app, token_endpoint_auth_method="private_key_jwt", jwks_uri=jwks_host.url,
        grant_types=["client_credentials"], redirect_uris=[], scope="openid",
    )  # fmt: skip
    assert client_credentials(client, old, rp.client_id, issuer).status_code == 200
    assert client_credentials(client, old, rp.client_id, issuer).status_code == 200
    assert jwks_host.fetches == 1  # cached
    new = ClientKeys()
    jwks_host.jwks = new.public_jwks  # the client rotates its key
    response = client_credentials(client, new, rp.client_id, issuer)
    assert response.status_code == 200, response.get_json()
    assert jwks_host.fetches == 2
    # An unknown kid right after does not make us fetch again (at most every 10 s).
    stranger = ClientKeys()
    response = client_credentials(client, stranger, rp.client_id, issuer)
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
    assert jwks_host.fetches == 2


def test_an_unreachable_jwks_uri_is_invalid_client(app, client, issuer):
    keys = ClientKeys()
    rp = create_test_client(
        app, token_endpoint_auth_method="private_key_jwt", jwks_uri=f"http://127.0.0.1:{free_port()}/jwks.json",
        grant_types=["client_credentials"], redirect_uris=[], scope="openid",
    )  # fmt: skip
    response = client_credentials(client, keys, rp.client_id, issuer)
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"


def test_an_assertion_sent_many_times_at_once_works_once(app, issuer):
    keys = ClientKeys()
    rp = create_test_client(
        app, token_endpoint_auth_method="private_key_jwt", jwks=keys.public_jwks,
        grant_types=["client_credentials"], redirect_uris=[], scope="openid",
    )  # fmt: skip
    data = {"grant_type": "client_credentials", **keys.auth(rp.client_id, issuer)}
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        browser = app.test_client()
        barrier.wait()
        statuses.append(browser.post("/token", data=data).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 1 and len(statuses) == 8, statuses
    assert set(statuses) == {200, 400}  # invalid_client for the seven others


def test_ps256_assertions(app, client, issuer):
    keys = ClientKeys(alg="PS256")
    rp = create_test_client(
        app, token_endpoint_auth_method="private_key_jwt", jwks=keys.public_jwks,
        grant_types=["client_credentials"], redirect_uris=[], scope="openid",
    )  # fmt: skip
    response = client_credentials(client, keys, rp.client_id, issuer)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("future", [30, 120])
def test_an_assertion_from_the_future(app, client, issuer, future):
    """FAPI 2.0 section 5.3.2.1: iat up to 10 s ahead is accepted, more than 60 s ahead refused."""
    from idp import clock

    keys = ClientKeys()
    rp = create_test_client(
        app, token_endpoint_auth_method="private_key_jwt", jwks=keys.public_jwks,
        grant_types=["client_credentials"], redirect_uris=[], scope="openid",
    )  # fmt: skip
    response = client_credentials(client, keys, rp.client_id, issuer, iat=clock.timestamp() + future)
    if future <= 30:
        assert response.status_code == 200, response.get_json()
    else:
        assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
