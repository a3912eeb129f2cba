"""Token revocation (RFC 7009) at POST /token/revoke."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    Browser,
    ClientInfo,
    code_flow_tokens,
    create_test_client,
    create_test_user,
    refresh_grant,
)


def auth_args(rp: ClientInfo, data: dict[str, str]) -> dict[str, Any]:
    if rp.client_secret:
        return {"data": data, "auth": (rp.client_id, rp.client_secret)}
    return {"data": {**data, "client_id": rp.client_id}}


def revoke(client, rp: ClientInfo, token: str, hint: str | None = None):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return client.post("/token/revoke", **auth_args(rp, data))


def userinfo_status(client, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def assert_refresh_refused(client, rp: ClientInfo, refresh_token: str) -> None:
    response = refresh_grant(client, rp, refresh_token)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"
    assert "access_token" not in response.get_json()


@pytest.fixture
def browser(client, issuer) -> Browser:
    return Browser(client, issuer)


def test_revoking_refresh_token_revokes_the_grant(app, client, browser, user, rp_client):
    first = code_flow_tokens(browser, rp_client, user)
    second = refresh_grant(client, rp_client, first["refresh_token"]).get_json()
    assert userinfo_status(client, second["access_token"]) == 200

    response = revoke(client, rp_client, second["refresh_token"], hint="refresh_token")
    assert response.status_code == 200
    assert_refresh_refused(client, rp_client, second["refresh_token"])
    # Every access token issued under the grant is rejected, the first one included.
    assert userinfo_status(client, second["access_token"]) == 401
    assert userinfo_status(client, first["access_token"]) == 401


def test_revoking_access_token_keeps_refresh_token(app, client, browser, user, rp_client):
    tokens = code_flow_tokens(browser, rp_client, user)
    assert userinfo_status(client, tokens["access_token"]) == 200

    response = revoke(client, rp_client, tokens["access_token"], hint="access_token")
    assert response.status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 401

    refreshed = refresh_grant(client, rp_client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    new_access = refreshed.get_json()["access_token"]
    assert new_access != tokens["access_token"]
    assert userinfo_status(client, new_access) == 200
    assert userinfo_status(client, tokens["access_token"]) == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_refresh_token_revoked_whatever_the_hint(app, client, browser, user, rp_client, hint):
    tokens = code_flow_tokens(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["refresh_token"], hint=hint).status_code == 200
    assert_refresh_refused(client, rp_client, tokens["refresh_token"])


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_access_token_revoked_whatever_the_hint(app, client, browser, user, rp_client, hint):
    tokens = code_flow_tokens(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["access_token"], hint=hint).status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_unknown_token_is_200(app, client, rp_client, hint):
    response = revoke(client, rp_client, "no-such-token-" + "x" * 30, hint=hint)
    assert response.status_code == 200


def test_revoking_twice_is_200(app, client, browser, user, rp_client):
    tokens = code_flow_tokens(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["refresh_token"]).status_code == 200
    assert revoke(client, rp_client, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_client_cannot_revoke_another_clients_token(app, client, browser, user, rp_client, which):
    tokens = code_flow_tokens(browser, rp_client, user)
    intruder = create_test_client(app, name="Intruder", redirect_uris=["https://intruder.example/cb"])

    response = revoke(client, intruder, tokens[which], hint=which)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json().get("error")
    # The owner's tokens keep working.
    assert userinfo_status(client, tokens["access_token"]) == 200
    refreshed = refresh_grant(client, rp_client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()


@pytest.mark.parametrize("credentials", ["wrong_secret", "unknown_client", "no_credentials"])
def test_bad_client_authentication_is_invalid_client(app, client, browser, user, rp_client, credentials):
    tokens = code_flow_tokens(browser, rp_client, user)
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
    assert refresh_grant(client, rp_client, tokens["refresh_token"]).status_code == 200


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
    tokens = code_flow_tokens(browser, public, user)
    response = client.post("/token/revoke", data={"token": tokens[which], "client_id": public.client_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert userinfo_status(client, tokens["access_token"]) == 401
    if which == "refresh_token":
        assert_refresh_refused(client, public, tokens["refresh_token"])


def lose_the_store(app) -> None:
    """Everything the key-value store held is gone, as after a Redis restart without persistence (or a FLUSH).
    The in-process store goes with its process: the other app of the test is that process started again."""
    from idp.store.kv import RedisStore

    store = app.extensions["idp"].store
    if isinstance(store, RedisStore):
        assert store.delete_prefix() > 0


def test_a_revoked_access_token_stays_revoked_when_the_store_loses_everything(app_with):
    """Issue 19 item 8, as an attacker holding a stolen access token would try it: the relying party revokes the
    token (and a client-credentials token is revoked too), then Redis loses everything. Neither token comes back,
    at the worker that revoked them nor at a worker started afterwards: introspection says inactive and userinfo
    refuses with invalid_token."""
    first = app_with()
    server = first.extensions["idp"].config.server
    # Another worker on the same database and store; on the in-process store, the provider's process restarted.
    restarted = app_with(server={"issuer": server.issuer, "port": server.port})
    user = create_test_user(first)
    portal = create_test_client(first)
    machine = create_test_client(first, grant_types=["client_credentials"], redirect_uris=[], scope="openid api:read")
    one = first.test_client()
    tokens = code_flow_tokens(Browser(one, server.issuer), portal, user)
    machine_token = one.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(machine.client_id, machine.client_secret)
    ).get_json()["access_token"]
    assert userinfo_status(one, tokens["access_token"]) == 200

    assert revoke(one, portal, tokens["access_token"]).status_code == 200
    assert revoke(one, machine, machine_token).status_code == 200
    lose_the_store(first)

    for worker in (first, restarted):
        client = worker.test_client()
        for rp, token in ((portal, tokens["access_token"]), (machine, machine_token)):
            answer = client.post("/token/introspect", data={"token": token}, auth=(rp.client_id, rp.client_secret))
            assert answer.status_code == 200 and answer.get_json() == {"active": False}, answer.get_json()
        refused = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # The refresh token was not revoked: the relying party keeps its session, with a new access token that works.
    renewed = refresh_grant(restarted.test_client(), portal, tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.get_json()
    assert userinfo_status(restarted.test_client(), renewed.get_json()["access_token"]) == 200


def test_revocations_are_kept_until_the_token_expires_and_then_pruned(app, client, browser, user, rp_client):
    """A revoked access token's row lives as long as the token would have, not forever: the next revocation after
    its expiry removes it."""
    from sqlalchemy import select

    from idp import clock
    from idp.extensions import db
    from idp.store.models import RevokedAccessToken

    def kept() -> int:
        with app.app_context():
            try:
                return len(db.session.scalars(select(RevokedAccessToken)).all())
            finally:
                db.session.remove()

    tokens = code_flow_tokens(browser, rp_client, user)
    assert revoke(client, rp_client, tokens["access_token"]).status_code == 200
    assert revoke(client, rp_client, tokens["access_token"]).status_code == 200  # twice: one row, no error
    assert kept() == 1
    clock.advance(app.extensions["idp"].config.tokens.access_token_ttl - 5)
    newer = refresh_grant(client, rp_client, tokens["refresh_token"]).get_json()
    assert revoke(client, rp_client, newer["access_token"]).status_code == 200
    assert kept() == 2  # the first token has 5 s left: still kept
    clock.advance(10)
    newest = refresh_grant(client, rp_client, newer["refresh_token"]).get_json()
    assert revoke(client, rp_client, newest["access_token"]).status_code == 200
    assert kept() == 2  # the first is gone; the second and the third are kept
    assert userinfo_status(client, newer["access_token"]) == 401
