"""Resource indicators (RFC 8707): an access token names the resource server it is for, so one resource server
refuses another's tokens; anything else is invalid_target."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from .helpers import Browser, authorization_params, create_test_client, exchange_code, get_code, pkce_pair, query_of

BANK = "https://bank.example/api"
INSURER = "https://insurer.example/api"


def audience(client: Any, token: str) -> Any:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return jwt.decode(token, keys, algorithms=["RS256", "PS256", "ES256"]).claims["aud"]


@pytest.fixture
def rp(app) -> Any:
    return create_test_client(
        app, resources=[BANK, INSURER], grant_types=["authorization_code", "refresh_token", "client_credentials"]
    )


def test_the_access_token_is_for_the_resource_asked_for(client, issuer, user, rp):
    code, verifier, _ = get_code(Browser(client, issuer), rp, user, resource=BANK)
    tokens = exchange_code(client, rp, code, verifier).get_json()
    assert audience(client, tokens["access_token"]) == BANK
    answer = client.post(
        "/token/introspect", data={"token": tokens["access_token"]}, auth=(rp.client_id, rp.client_secret)
    ).get_json()
    assert answer["active"] and answer["aud"] == BANK
    # It is not a token for userinfo.
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_several_resources_and_narrowing_at_the_token_endpoint(client, issuer, user, rp):
    browser = Browser(client, issuer)
    verifier, challenge = pkce_pair()
    params = [*authorization_params(rp, challenge).items(), ("resource", BANK), ("resource", INSURER)]
    response = browser.get("/authorize?" + urlencode(params))
    response = browser.login(response, user)
    if b'name="decision"' in response.data:
        response = browser.consent(response)
    code = query_of(response.location)["code"]
    tokens = exchange_code(client, rp, code, verifier, resource=INSURER).get_json()
    assert audience(client, tokens["access_token"]) == INSURER
    # The refresh token covers both; a refresh may name either, or gets both.
    auth = (rp.client_id, rp.client_secret)
    refreshed = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
    ).get_json()
    assert sorted(audience(client, refreshed["access_token"])) == sorted([BANK, INSURER])
    refused = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "resource": "https://x.example/",
        },
        auth=auth,
    )
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_target"


@pytest.mark.parametrize(
    "resource", ["https://unregistered.example/api", "https://bank.example/api#frag", "relative/path", "urn:"]
)
def test_a_resource_not_registered_or_malformed_is_invalid_target(client, issuer, rp, resource):
    response = Browser(client, issuer).authorize(authorization_params(rp, pkce_pair()[1], resource=resource))
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "invalid_target" and query["iss"] == issuer


def test_client_credentials_with_a_resource(client, rp):
    auth = (rp.client_id, rp.client_secret)
    response = client.post("/token", data={"grant_type": "client_credentials", "resource": BANK}, auth=auth)
    assert response.status_code == 200, response.get_json()
    assert audience(client, response.get_json()["access_token"]) == BANK
    response = client.post(
        "/token", data={"grant_type": "client_credentials", "resource": "https://other.example/"}, auth=auth
    )
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_target"


def test_without_a_resource_the_token_is_the_clients_as_before(client, issuer, user, rp):
    code, verifier, _ = get_code(Browser(client, issuer), rp, user)
    tokens = exchange_code(client, rp, code, verifier).get_json()
    assert audience(client, tokens["access_token"]) == rp.client_id
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
