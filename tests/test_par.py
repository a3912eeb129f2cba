"""Pushed authorization requests (RFC 9126): the request goes to the provider directly, the browser carries only
a reference that works once, for a minute, for its client; every refusal with the RFC's error code."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from idp import clock

from .helpers import Browser, create_test_client, exchange_code, page_text, pkce_pair, query_of
from .high_assurance import DPoPKey, authorization_request, code_by_pushed_request, fapi_client, push

URN = "urn:ietf:params:oauth:request_uri:"


def pushed(client: Any, issuer: str, rp: Any, keys: Any = None, **extra: str) -> tuple[dict[str, str], str, str]:
    """Push a request; (its parameters, the request_uri, the PKCE verifier)."""
    verifier, challenge = pkce_pair()
    params = authorization_request(rp, challenge, **extra)
    response = push(client, issuer, rp, keys, params)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["request_uri"].startswith(URN) and body["expires_in"] == 60
    assert response.headers["Cache-Control"] == "no-store"
    return params, body["request_uri"], verifier


def assert_page_error(response: Any, error: str) -> None:
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert f'id="error-code">{error}<' in page_text(response), page_text(response)[:2000]


def test_a_pushed_request_logs_the_user_in(app, client, issuer, user, rp_client):
    params, request_uri, verifier = pushed(client, issuer, rp_client)
    code = code_by_pushed_request(Browser(client, issuer), issuer, rp_client, user, request_uri, params["state"])
    response = exchange_code(client, rp_client, code, verifier)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id_token"]


def test_parameters_sent_beside_the_request_uri_are_ignored(app, client, issuer, user, rp_client):
    params, request_uri, verifier = pushed(client, issuer, rp_client)
    browser = Browser(client, issuer)
    response = browser.authorize(
        {"client_id": rp_client.client_id, "request_uri": request_uri, "redirect_uri": "https://evil.example/cb",
         "state": "forged", "scope": "openid national_id"}
    )  # fmt: skip
    response = browser.login(response, user)
    if b'name="decision"' in response.data:
        response = browser.consent(response)
    assert response.location.startswith(rp_client.redirect_uri + "?")
    query = query_of(response.location)
    assert query["state"] == params["state"]
    tokens = exchange_code(client, rp_client, query["code"], verifier).get_json()
    assert tokens["scope"] == "openid profile"


def test_a_request_uri_works_once(client, issuer, user, rp_client):
    params, request_uri, _ = pushed(client, issuer, rp_client)
    code_by_pushed_request(Browser(client, issuer), issuer, rp_client, user, request_uri, params["state"])
    again = Browser(client, issuer).authorize({"client_id": rp_client.client_id, "request_uri": request_uri})
    assert_page_error(again, "invalid_request_uri")


def test_a_request_uri_used_in_parallel_works_once(app, client, issuer, rp_client):
    _, request_uri, _ = pushed(client, issuer, rp_client)
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        browser = app.test_client()
        barrier.wait()
        query = f"/authorize?client_id={rp_client.client_id}&request_uri={request_uri}"
        statuses.append(browser.get(query).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The one that took it goes on to the login page; every other one is refused.
    assert sorted(statuses) == [302] + [400] * 5, statuses


def test_a_request_uri_expires_after_60_seconds(client, issuer, rp_client):
    _, request_uri, _ = pushed(client, issuer, rp_client)
    clock.advance(61)
    response = Browser(client, issuer).authorize({"client_id": rp_client.client_id, "request_uri": request_uri})
    assert_page_error(response, "invalid_request_uri")


def test_another_clients_request_uri_is_refused_and_not_spent(app, client, issuer, user, rp_client):
    params, request_uri, _ = pushed(client, issuer, rp_client)
    other = create_test_client(app, name="Other")
    response = Browser(client, issuer).authorize({"client_id": other.client_id, "request_uri": request_uri})
    assert_page_error(response, "invalid_request_uri")
    code_by_pushed_request(Browser(client, issuer), issuer, rp_client, user, request_uri, params["state"])


@pytest.mark.parametrize(
    "request_uri", [URN + "made-up", "https://rp.example/request.jwt", URN], ids=["unknown", "other-host", "empty"]
)
def test_unknown_request_uris_are_refused(client, issuer, rp_client, request_uri):
    response = Browser(client, issuer).authorize({"client_id": rp_client.client_id, "request_uri": request_uri})
    error = "request_uri_not_supported" if request_uri.startswith("https:") else "invalid_request_uri"
    assert_page_error(response, error)


def test_a_client_that_requires_par_cannot_skip_it(app, client, issuer, user):
    rp = create_test_client(app, require_par=True)
    params = authorization_request(rp, pkce_pair()[1])
    response = Browser(client, issuer).authorize(params)
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "invalid_request" and query["state"] == params["state"] and query["iss"] == issuer
    # Pushed, it works.
    params, request_uri, _ = pushed(client, issuer, rp)
    code_by_pushed_request(Browser(client, issuer), issuer, rp, user, request_uri, params["state"])


def test_oauth_require_par_makes_every_client_push(app_with):
    app = app_with(oauth={"require_par": True})
    issuer, client = app.extensions["idp"].issuer, app.test_client()
    assert client.get("/.well-known/openid-configuration").get_json()["require_pushed_authorization_requests"]
    rp = create_test_client(app)
    response = Browser(client, issuer).authorize(authorization_request(rp, pkce_pair()[1]))
    assert query_of(response.location)["error"] == "invalid_request"


# -- the pushed request itself ------------------------------------------------------------------------------


def test_pushing_needs_client_authentication(client, issuer, rp_client):
    params = authorization_request(rp_client, pkce_pair()[1])
    response = client.post("/par", data=params)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    response = client.post("/par", data=params, auth=(rp_client.client_id, "wrong secret"))
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"request_uri": URN + "x"}, "invalid_request"),
        ({"client_id": "someone-else"}, "invalid_request"),
        ({"resource": "https://api.example/"}, "invalid_target"),
    ],
    ids=["redirect_uri", "plain", "no-pkce", "response_type", "scope", "nested-request_uri", "client_id", "resource"],
)
def test_a_bad_pushed_request_is_refused_in_json(client, issuer, rp_client, change, error):
    params = authorization_request(rp_client, pkce_pair()[1])
    for name, value in change.items():
        if value is None:
            params.pop(name)
        else:
            params[name] = value
    response = push(client, issuer, rp_client, None, params)
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert response.get_json()["error"] == error


def test_discovery_advertises_par(client, issuer):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["pushed_authorization_request_endpoint"] == issuer + "/par"
    assert document["require_pushed_authorization_requests"] is False
    assert document["request_uri_parameter_supported"] is True
    assert document["require_request_uri_registration"] is True


# -- with DPoP (RFC 9449 section 10.1) --------------------------------------------------------------------------


def test_a_proof_at_par_binds_the_code_to_its_key(app, client, issuer, user):
    rp, keys = fapi_client(app)
    key = DPoPKey()
    verifier, challenge = pkce_pair()
    params = authorization_request(rp, challenge)
    response = push(client, issuer, rp, keys, params, dpop_key=key)
    assert response.status_code == 201, response.get_json()
    code = code_by_pushed_request(
        Browser(client, issuer), issuer, rp, user, response.get_json()["request_uri"], params["state"]
    )
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    data.update(code_verifier=verifier, **keys.auth(rp.client_id, issuer))
    other = DPoPKey()
    refused = client.post("/token", data=data, headers={"DPoP": other.proof("POST", issuer + "/token")})
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"


def test_dpop_jkt_and_a_proof_of_another_key_at_par_are_refused(app, client, issuer):
    rp, keys = fapi_client(app)
    params = authorization_request(rp, pkce_pair()[1], dpop_jkt=DPoPKey().jkt)
    response = push(client, issuer, rp, keys, params, dpop_key=DPoPKey())
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_dpop_proof"
