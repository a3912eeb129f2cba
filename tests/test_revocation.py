"""Token revocation (RFC 7009) at POST /token/revoke."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Browser, ClientInfo, create_test_client, exchange_code, get_code


def sign_in(browser: Browser, rp: ClientInfo, user, scope: str = "openid profile") -> dict[str, Any]:
    code, verifier, _ = get_code(browser, rp, user, scope=scope)
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def auth_args(rp: ClientInfo, data: dict[str, str]) -> dict[str, Any]:
    if rp.client_secret:
        return {"data": data, "auth": (rp.client_id, rp.client_secret)}
    return {"data": {**data, "client_id": rp.client_id}}


def revoke(client, rp: ClientInfo, token: str, hint: str | None = None):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return client.post("/token/revoke", **auth_args(rp, data))


def refresh(client, rp: ClientInfo, refresh_token: str):
    return client.post("/token", **auth_args(rp, {"grant_type": "refresh_token", "refresh_token": refresh_token}))


def userinfo_status(client, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def assert_refresh_refused(client, rp: ClientInfo, refresh_token: str) -> None:
    response = refresh(client, rp, refresh_token)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"
    assert "access_token" not in response.get_json()


@pytest.fixture
def browser(client, issuer) -> Browser:
    return Browser(client, issuer)


def test_revoking_refresh_token_revokes_the_grant(app, client, browser, user, rp_client):
    first = sign_in(browser, rp_client, user)
    second = refresh(client, rp_client, first["refresh_token"]).get_json()
    assert userinfo_status(client, second["access_token"]) == 200

    response = revoke(client, rp_client, second["refresh_token"], hint="refresh_token")
    assert response.status_code == 200
    assert_refresh_refused(client, rp_client, second["refresh_token"])
    # Every access token issued under the grant is rejected, the first one included.
    assert userinfo_status(client, second["access_token"]) == 401
    assert userinfo_status(client, first["access_token"]) == 401


def test_revoking_access_token_keeps_refresh_token(app, client, browser, user, rp_client):
    tokens = sign_in(browser, rp_client, user)
    assert userinfo_status(client, tokens["access_token"]) == 200

    response = revoke(client, rp_client, tokens["access_token"], hint="access_token")
    assert response.status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 401

    refreshed = refresh(client, rp_client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    new_access = refreshed.get_json()["access_token"]
    assert new_access != tokens["access_token"]
    assert userinfo_status(client, new_access) == 200
    assert userinfo_status(client, tokens["access_token"]) == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_refresh_token_revoked_whatever_the_hint(app, client, browser, user, rp_client, hint):
    tokens = sign_in(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["refresh_token"], hint=hint).status_code == 200
    assert_refresh_refused(client, rp_client, tokens["refresh_token"])


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_access_token_revoked_whatever_the_hint(app, client, browser, user, rp_client, hint):
    tokens = sign_in(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["access_token"], hint=hint).status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_unknown_token_is_200(app, client, rp_client, hint):
    response = revoke(client, rp_client, "no-such-token-" + "x" * 30, hint=hint)
    assert response.status_code == 200


def test_revoking_twice_is_200(app, client, browser, user, rp_client):
    tokens = sign_in(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["refresh_token"]).status_code == 200
    assert revoke(client, rp_client, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_client_cannot_revoke_another_clients_token(app, client, browser, user, rp_client, which):
    tokens = sign_in(browser, rp_client, user)
    intruder = create_test_client(app, name="Intruder", redirect_uris=["https://intruder.example/cb"])

    response = revoke(client, intruder, tokens[which], hint=which)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json().get("error")
    # The owner's tokens keep working.
    assert userinfo_status(client, tokens["access_token"]) == 200
    refreshed = refresh(client, rp_client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()


@pytest.mark.parametrize("credentials", ["wrong_secret", "unknown_client", "no_credentials"])
def test_bad_client_authentication_is_invalid_client(app, client, browser, user, rp_client, credentials):
    tokens = sign_in(browser, rp_client, user)
    kwargs: dict[str, Any] = {"data": {"token": tokens["refresh_token"]}}
    if credentials == "wrong_secret":
        kwargs["auth"] = (rp_client.client_id, rp_client.client_secret + "x")
    elif credentials == "unknown_client":
        kwargs["auth"] = ("no-such-client", "secret")
    response = client.post("/token/revoke", **kwargs)
    if credentials == "no_credentials":
        assert response.status_code in (400, 401)
    else:
        assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    # Nothing was revoked.
    assert refresh(client, rp_client, tokens["refresh_token"]).status_code == 200


def test_missing_token_parameter_is_invalid_request(app, client, rp_client):
    response = client.post(
        "/token/revoke", data={"token_type_hint": "refresh_token"}, auth=(rp_client.client_id, rp_client.client_secret)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_public_client_revokes_its_own_token_with_client_id(app, client, browser, user, which):
    public = create_test_client(app, name="Mobile App", token_endpoint_auth_method="none")
    assert public.client_secret is None
    tokens = sign_in(browser, public, user)
    response = client.post("/token/revoke", data={"token": tokens[which], "client_id": public.client_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert userinfo_status(client, tokens["access_token"]) == 401
    if which == "refresh_token":
        assert_refresh_refused(client, public, tokens["refresh_token"])
