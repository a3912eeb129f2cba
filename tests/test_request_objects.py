"""Signed request objects (RFC 9101): the authorization request as a JWT the client signed, by value at the
authorization endpoint and in pushed requests; every bad object is refused with invalid_request_object."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .helpers import Browser, create_test_client, exchange_code, pkce_pair, query_of
from .high_assurance import ClientKeys, authorization_request, code_by_pushed_request, push


@pytest.fixture
def signer(app) -> tuple[Any, ClientKeys]:
    keys = ClientKeys()
    rp = create_test_client(app, jwks=keys.public_jwks, token_endpoint_auth_method="private_key_jwt")
    return rp, keys


def signed_request(rp: Any, keys: ClientKeys, issuer: str, **changes: Any) -> tuple[dict[str, str], str, str]:
    verifier, challenge = pkce_pair()
    params = authorization_request(rp, challenge)
    return params, keys.request_object(rp.client_id, issuer, params, **changes), verifier


def refused(client: Any, issuer: str, rp: Any, request: str, params: dict[str, str]) -> str:
    """Send the object with the request's redirect_uri and state outside it; the error the client gets back."""
    outside = {"client_id": rp.client_id, "request": request, "redirect_uri": rp.redirect_uri, "state": params["state"]}
    response = Browser(client, issuer).authorize(outside)
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]
    query = query_of(response.location)
    assert query["state"] == params["state"] and query["iss"] == issuer
    return query["error"]


def test_a_signed_request_logs_the_user_in(client, issuer, user, signer):
    rp, keys = signer
    params, request, verifier = signed_request(rp, keys, issuer)
    browser = Browser(client, issuer)
    # Only the object counts: a scope sent beside it is ignored (RFC 9101 section 5).
    response = browser.authorize({"client_id": rp.client_id, "request": request, "scope": "openid national_id"})
    response = browser.login(response, user)
    if b'name="decision"' in response.data:
        response = browser.consent(response)
    query = query_of(response.location)
    assert response.location.startswith(rp.redirect_uri) and query["state"] == params["state"]
    data = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": rp.redirect_uri}
    data.update(code_verifier=verifier, **keys.auth(rp.client_id, issuer))
    tokens = client.post("/token", data=data).get_json()
    assert tokens["scope"] == "openid profile"


@pytest.mark.parametrize(
    "defect",
    ["bad-signature", "wrong-aud", "expired", "too-long", "no-jti", "not-before", "iss", "client_id", "alg-none"],
)
def test_a_bad_request_object_is_invalid_request_object(client, issuer, signer, defect):
    rp, keys = signer
    now = int(time.time())
    changes: dict[str, Any] = {
        "wrong-aud": {"aud": "https://other-provider.example"},
        "expired": {"exp": now - 60, "nbf": now - 120},
        "too-long": {"exp": now + 7200},
        "no-jti": {"jti": None},
        "not-before": {"nbf": now + 600, "exp": now + 900},
        "iss": {"iss": "someone-else"},
        "client_id": {"client_id": "someone-else"},
    }.get(defect, {})
    params, request, _ = signed_request(rp, keys, issuer, **changes)
    if defect == "bad-signature":
        request = ClientKeys(kid=keys.kid).request_object(rp.client_id, issuer, params)
    if defect == "alg-none":
        _header, payload, _ = request.split(".")
        request = "eyJhbGciOiJub25lIn0." + payload + "."
    assert refused(client, issuer, rp, request, params) == "invalid_request_object"


def test_a_request_object_works_once(client, issuer, user, signer):
    rp, keys = signer
    params, request, _ = signed_request(rp, keys, issuer)
    browser = Browser(client, issuer)
    first = browser.authorize({"client_id": rp.client_id, "request": request})
    assert first.status_code == 200  # the login page
    assert refused(client, issuer, rp, request, params) == "invalid_request_object"


def test_a_registered_algorithm_is_the_only_one(app, client, issuer):
    keys = ClientKeys(alg="PS256")
    rp = create_test_client(
        app, jwks=keys.public_jwks, token_endpoint_auth_method="private_key_jwt", request_object_signing_alg="ES256"
    )
    params, request, _ = signed_request(rp, keys, issuer)
    assert refused(client, issuer, rp, request, params) == "invalid_request_object"


def test_ps256_request_objects_work(app, client, issuer):
    keys = ClientKeys(alg="PS256")
    rp = create_test_client(app, jwks=keys.public_jwks, token_endpoint_auth_method="private_key_jwt")
    _, request, _ = signed_request(rp, keys, issuer)
    response = Browser(client, issuer).authorize({"client_id": rp.client_id, "request": request})
    assert response.status_code == 200 and b'name="national_code"' in response.data


def test_a_client_without_keys_cannot_send_request_objects(client, issuer, rp_client):
    params, request, _ = signed_request(rp_client, ClientKeys(), issuer)
    assert refused(client, issuer, rp_client, request, params) == "invalid_request_object"


def test_request_and_request_uri_together_are_invalid_request(client, issuer, signer):
    rp, keys = signer
    params, request, _ = signed_request(rp, keys, issuer)
    outside = {
        "client_id": rp.client_id,
        "request": request,
        "request_uri": "urn:ietf:params:oauth:request_uri:x",
        "redirect_uri": rp.redirect_uri,
        "state": params["state"],
    }
    response = Browser(client, issuer).authorize(outside)
    assert query_of(response.location)["error"] == "invalid_request"


def test_a_signed_request_can_be_pushed(client, issuer, user, signer):
    rp, keys = signer
    params, request, verifier = signed_request(rp, keys, issuer)
    response = push(client, issuer, rp, keys, {"request": request})
    assert response.status_code == 201, response.get_json()
    code = code_by_pushed_request(
        Browser(client, issuer), issuer, rp, user, response.get_json()["request_uri"], params["state"]
    )
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    data.update(code_verifier=verifier, **keys.auth(rp.client_id, issuer))
    assert client.post("/token", data=data).status_code == 200
    # A bad one is refused at the pushed authorization request endpoint.
    _, expired, _ = signed_request(rp, keys, issuer, exp=int(time.time()) - 60, nbf=int(time.time()) - 120)
    response = push(client, issuer, rp, keys, {"request": expired})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request_object"


def test_discovery_advertises_request_objects(client):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["request_parameter_supported"] is True
    assert set(document["request_object_signing_alg_values_supported"]) == {"RS256", "PS256", "ES256"}
    assert "none" not in document["request_object_signing_alg_values_supported"]


def test_a_plain_request_still_works_beside(client, issuer, user, rp_client):
    verifier, challenge = pkce_pair()
    browser = Browser(client, issuer)
    response = browser.login(browser.authorize(authorization_request(rp_client, challenge)), user)
    if b'name="decision"' in response.data:
        response = browser.consent(response)
    assert exchange_code(client, rp_client, query_of(response.location)["code"], verifier).status_code == 200
