"""Provider metadata (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS document, with their HTTP caching."""

from __future__ import annotations

import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata

DISCOVERY = "/.well-known/openid-configuration"
OAUTH_METADATA = "/.well-known/oauth-authorization-server"
ENDPOINT_KEYS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
)


@pytest.fixture
def document(client):
    response = client.get(DISCOVERY)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_both_addresses_serve_the_same_valid_document(client, document):
    other = client.get(OAUTH_METADATA)
    assert other.status_code == 200
    assert other.get_json() == document
    assert other.data == client.get(DISCOVERY).data
    OpenIDProviderMetadata(document).validate()


def test_issuer_and_endpoints(app, client, document, issuer):
    assert document["issuer"] == app.extensions["idp"].config.server.issuer
    assert document["issuer"] == issuer
    for key in ENDPOINT_KEYS:
        assert document[key].startswith(issuer + "/"), key
    # Every advertised endpoint exists at the advertised path.
    assert client.get(document["jwks_uri"][len(issuer) :]).status_code == 200
    for key in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert client.post(document[key][len(issuer) :]).status_code in {400, 401}, key
    assert client.get(document["userinfo_endpoint"][len(issuer) :]).status_code == 401
    assert client.get(document["authorization_endpoint"][len(issuer) :]).status_code == 400


def test_capabilities(document):
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert {"pairwise", "public"} <= set(document["subject_types_supported"])
    assert {"national_id", "verified_claims", "sub"} <= set(document["claims_supported"])
    assert {"openid", "profile", "phone", "national_id"} <= set(document["scopes_supported"])
    assert set(document["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert "none" not in document["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"} == set(
        document["token_endpoint_auth_methods_supported"]
    )
    assert "client_secret_jwt" not in document["token_endpoint_auth_methods_supported"]
    assert "implicit" not in document["grant_types_supported"]
    assert {"none", "login", "consent"} <= set(document["prompt_values_supported"])
    assert {"fa", "en"} <= set(document["ui_locales_supported"])


def test_jwks_is_public_keys_only(client):
    response = client.get("/jwks.json")
    assert response.status_code == 200
    keys = response.get_json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "PS256", "ES256"}
    for key in keys:
        assert key["kid"] and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)


@pytest.mark.parametrize("path", [DISCOVERY, OAUTH_METADATA, "/jwks.json"])
def test_caching_headers_and_conditional_get(client, path):
    response = client.get(path)
    assert response.status_code == 200
    cache_control = response.headers["Cache-Control"]
    assert "public" in cache_control
    assert "max-age=" in cache_control
    assert int(cache_control.split("max-age=")[1].split(",")[0]) > 0
    assert "no-store" not in cache_control
    etag = response.headers["ETag"]
    assert etag
    assert response.headers["Access-Control-Allow-Origin"] == "*"

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag

    other = client.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert other.data == response.data


def test_jwks_etag_changes_on_rotation(client, runner):
    etag = client.get("/jwks.json").headers["ETag"]
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    response = client.get("/jwks.json", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert len(response.get_json()["keys"]) == 6
