"""Bad input of any kind gets a clear error, never a 500: random values for every parameter of every endpoint."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import REDIRECT_URI, create_test_client, pkce_pair

AUTHORIZE_PARAMS = [
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt", "max_age", "claims",
    "id_token_hint", "login_hint", "ui_locales", "acr_values", "code_challenge", "code_challenge_method",
    "response_mode", "request", "request_uri", "registration", "display",
]  # fmt: skip
TOKEN_PARAMS = [
    "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "refresh_token", "scope",
    "client_assertion", "client_assertion_type",
]  # fmt: skip

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
claim_specs = json_values | st.fixed_dictionaries(
    {"essential": json_values}, optional={"values": json_values, "value": json_values, "claims": json_values}
)
claims_values = st.builds(
    lambda target, name, spec: json.dumps({target: {name: spec}}),
    st.sampled_from(["id_token", "userinfo", "other"]),
    st.sampled_from(["acr", "national_id", "verified_claims", "sub", "x"]),
    claim_specs,
)
param_value = text | claims_values | st.sampled_from(["code", "S256", "plain", "none", "openid", "login consent", ""])

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _params(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), param_value, max_size=len(names))


@pytest.fixture
def registered(app):
    return create_test_client(app)


@SETTINGS
@given(extra=_params(AUTHORIZE_PARAMS))
def test_authorize_never_fails_with_a_server_error(client, registered, extra):
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    for method in (client.get, client.post):
        response = (
            method("/authorize", query_string=params) if method == client.get else method("/authorize", data=params)
        )
        assert response.status_code < 500, (params, response.get_data(as_text=True)[:300])


@SETTINGS
@given(claims=claims_values)
def test_claims_parameter_never_fails_with_a_server_error(client, registered, claims):
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "claims": claims,
    }
    response = client.get("/authorize", query_string=params)
    assert response.status_code < 500, (claims, response.get_data(as_text=True)[:300])


@SETTINGS
@given(data=_params(TOKEN_PARAMS))
def test_token_endpoint_never_fails_with_a_server_error(client, registered, data):
    for auth in (None, (registered.client_id, registered.client_secret)):
        response = client.post("/token", data=data, auth=auth)
        assert response.status_code < 500, (data, response.get_data(as_text=True)[:300])
        assert "error" in response.get_json()


@SETTINGS
@given(data=st.dictionaries(st.sampled_from(["token", "token_type_hint", "client_id"]), param_value))
def test_revocation_and_introspection_never_fail_with_a_server_error(client, registered, data):
    for path in ("/token/revoke", "/token/introspect"):
        response = client.post(path, data=data, auth=(registered.client_id, registered.client_secret))
        assert response.status_code < 500, (path, data, response.get_data(as_text=True)[:300])


@SETTINGS
@given(
    token=text | st.text(alphabet=string.ascii_letters + ".-_", min_size=1, max_size=80),
    data=st.dictionaries(st.sampled_from(["access_token", "x"]), param_value),
)
def test_userinfo_never_fails_with_a_server_error(client, token, data):
    header_safe = token.encode("latin-1", "ignore").decode("latin-1").replace("\n", "").replace("\r", "")
    for kwargs in ({"headers": {"Authorization": f"Bearer {header_safe}"}}, {"data": data}):
        response = client.post("/userinfo", **kwargs)
        assert response.status_code < 500, (kwargs, response.get_data(as_text=True)[:300])


@SETTINGS
@given(
    data=st.dictionaries(
        st.sampled_from(["id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales", "confirm"]),
        param_value,
    )
)
def test_logout_never_fails_with_a_server_error(client, data):
    assert client.get("/logout", query_string=data).status_code < 500
    assert client.post("/logout", data=data).status_code < 500


@SETTINGS
@given(data=st.dictionaries(st.sampled_from(["national_code", "password", "tx", "csrf_token"]), param_value))
def test_login_never_fails_with_a_server_error(app, data):
    app.config["WTF_CSRF_ENABLED"] = False  # reach the validation behind the CSRF check
    client = app.test_client()
    response = client.post("/login", data=data)
    assert response.status_code < 500, (data, response.get_data(as_text=True)[:300])
    assert client.get("/login", query_string={"tx": data.get("tx", "")}).status_code < 500
