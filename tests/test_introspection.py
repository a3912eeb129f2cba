"""Token introspection (RFC 7662) at POST /token/introspect: for authenticated clients, about their own tokens."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.extensions import db
from idp.store import commit
from idp.store import grants as grant_store
from idp.store.models import Grant

from .helpers import (
    Browser,
    ClientInfo,
    code_flow_tokens,
    create_test_client,
    deafen_announcements,
    exchange_code,
    get_code,
    grant_id_of,
    refresh_grant,
    statements_run,
)


def introspect(client, rp: ClientInfo, token: str, hint: str | None = None):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return client.post("/token/introspect", data=data, auth=(rp.client_id, rp.client_secret))


def id_token_sub(client, id_token: str) -> str:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return jwt.decode(id_token, keys, algorithms=["RS256", "ES256"]).claims["sub"]


def assert_inactive(response) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"active": False}
    assert "no-store" in response.headers.get("Cache-Control", "")


@pytest.fixture
def browser(client, issuer) -> Browser:
    return Browser(client, issuer)


@pytest.fixture
def tokens(app, browser, user, rp_client) -> dict[str, Any]:
    return code_flow_tokens(browser, rp_client, user)


# -- active tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_active_access_token(app, client, issuer, user, rp_client, tokens, hint):
    response = introspect(client, rp_client, tokens["access_token"], hint=hint)
    assert response.status_code == 200
    body = response.get_json()
    assert body["active"] is True
    assert body["client_id"] == rp_client.client_id
    assert body["scope"].split() == ["openid", "profile"]
    assert body["sub"] == id_token_sub(client, tokens["id_token"])
    assert body["sub"] != user.id  # pairwise
    assert body["iss"] == issuer
    assert body["token_type"].lower() in ("bearer", "access_token")
    assert isinstance(body["iat"], int) and isinstance(body["exp"], int)
    assert body["exp"] - body["iat"] == 600
    assert abs(body["iat"] - clock.timestamp()) <= 5
    assert "no-store" in response.headers.get("Cache-Control", "")


def test_active_refresh_token(app, client, issuer, user, rp_client, tokens):
    response = introspect(client, rp_client, tokens["refresh_token"], hint="refresh_token")
    assert response.status_code == 200
    body = response.get_json()
    assert body["active"] is True
    assert body["client_id"] == rp_client.client_id
    assert body["exp"] > clock.timestamp()
    if "sub" in body:
        assert body["sub"] == id_token_sub(client, tokens["id_token"])


def test_refreshed_tokens_are_active(app, client, rp_client, tokens):
    new = refresh_grant(client, rp_client, tokens["refresh_token"]).get_json()
    assert introspect(client, rp_client, new["access_token"]).get_json()["active"] is True
    assert introspect(client, rp_client, new["refresh_token"]).get_json()["active"] is True


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_introspection_reads_once_outside_a_transaction(app, client, rp_client, tokens, which):
    """Guards the benchmark target "introspection" (issue 20). Resource servers introspect on every call they
    serve: one read (an access token's grant and revocation, or a refresh token with its grant and user) and one
    write (the release of ``sub``, in the disclosure ledger, before the answer), and on PostgreSQL no BEGIN and
    ROLLBACK around them (two round trips that protect nothing for statements each whole by itself)."""
    with statements_run(app) as log:
        response = introspect(client, rp_client, tokens[which])
    assert response.get_json()["active"] is True
    if log.dialect == "postgresql":
        # Each committed as it ran: no BEGIN, and no session commit after them (it would send nothing).
        assert log.kinds == ["SELECT", "INSERT"], log.entries
        assert log.autocommit == [True, True], "the read or the write ran inside a transaction"
    else:
        assert log.kinds == ["SELECT", "INSERT", "COMMIT"], log.entries


REVOCATIONS = {
    "the grant (token revocation, code replay)": lambda grant: grant_store.revoke_grant(grant, "test"),
    "by id (refresh replay)": lambda grant: grant_store.revoke_grant_by_id(grant.id, "test"),
    "the session's (logout)": lambda grant: grant_store.revoke_session_grants(grant.session_id, "test"),
    "the user's (password change)": lambda grant: grant_store.revoke_user_grants(grant.user_id, "test"),
    "the client's for the user (connected apps)": lambda grant: grant_store.revoke_client_grants(
        grant.user_id, grant.client_id, "test"
    ),
}


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # remembered only over Redis
@pytest.mark.parametrize("revocation", list(REVOCATIONS))
def test_a_grant_found_active_is_remembered_until_its_revocation_commits(app, client, rp_client, tokens, revocation):
    """Guards the benchmark target "introspection" (issue 20). A resource server introspects on every call it
    serves: after the first, the worker answers from its memory of the grant and of the token's revocation (no
    read: only the ledger's write of the release, outside a transaction), and forgets the grant as soon as any
    revocation of it commits, whichever way. (Other workers forget it when the announcement reaches them:
    test_absences.)"""
    token = tokens["access_token"]
    assert introspect(client, rp_client, token).get_json()["active"] is True
    with statements_run(app) as log:
        assert introspect(client, rp_client, token).get_json()["active"] is True
    assert log.statements == ["INSERT"], "the second introspection read the grant again"
    assert log.autocommit == [True], "the ledger's write ran inside a transaction"

    with app.app_context():
        grant = db.session.get(Grant, grant_id_of(client, token))
        assert REVOCATIONS[revocation](grant)
        db.session.rollback()  # not committed: nothing announced, the grant still active
    with statements_run(app) as log:
        assert introspect(client, rp_client, token).get_json()["active"] is True
    assert log.statements == ["INSERT"]

    # The worker that commits the revocation forgets at once, not when its own announcement comes back over
    # Redis (which a relying party's next request can beat): its subscription hears nothing from here on.
    deafen_announcements(app.extensions["idp"].store)
    with app.app_context():
        grant = db.session.get(Grant, grant_id_of(client, token))
        assert REVOCATIONS[revocation](grant)
        commit()
    assert_inactive(introspect(client, rp_client, token))


# -- inactive tokens: nothing but active=false ----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "which"),
    [
        ("revoked", "access_token"),
        ("revoked", "refresh_token"),
        ("grant_revoked", "access_token"),
        ("rotated", "refresh_token"),
        ("expired", "access_token"),
        ("unknown", "access_token"),
        ("unknown", "refresh_token"),
    ],
)
def test_inactive_tokens(app, client, rp_client, tokens, case, which):
    token = tokens[which]
    assert introspect(client, rp_client, token).get_json()["active"] is True
    if case == "revoked":
        revoked = client.post(
            "/token/revoke", data={"token": token}, auth=(rp_client.client_id, rp_client.client_secret)
        )
        assert revoked.status_code == 200
    elif case == "grant_revoked":
        revoked = client.post(
            "/token/revoke",
            data={"token": tokens["refresh_token"]},
            auth=(rp_client.client_id, rp_client.client_secret),
        )
        assert revoked.status_code == 200
    elif case == "rotated":
        assert refresh_grant(client, rp_client, token).status_code == 200
    elif case == "expired":
        clock.advance(601)  # access_token_ttl is 600 s
    elif case == "unknown":
        token = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert_inactive(introspect(client, rp_client, token, hint=which))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_tokens_are_inactive(app, client, rp_client, token):
    response = introspect(client, rp_client, token)
    if token == "":
        # An empty token may be refused as a malformed request; it must never look active.
        assert response.get_json().get("active") is not True
        return
    assert_inactive(response)


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_another_clients_token_looks_inactive(app, client, rp_client, tokens, which):
    other = create_test_client(app, name="Other Portal", redirect_uris=["https://other.example/cb"])
    assert_inactive(introspect(client, other, tokens[which]))
    # Still active for its owner: the answer above hid it, it did not end it.
    assert introspect(client, rp_client, tokens[which]).get_json()["active"] is True


# -- only authenticated confidential clients ------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["none", "wrong_secret", "unknown_client", "secret_in_body_for_basic"])
def test_unauthenticated_request_is_invalid_client(app, client, rp_client, tokens, credentials):
    kwargs: dict[str, Any] = {"data": {"token": tokens["access_token"]}}
    if credentials == "wrong_secret":
        kwargs["auth"] = (rp_client.client_id, rp_client.client_secret + "x")
    elif credentials == "unknown_client":
        kwargs["auth"] = ("no-such-client", "secret")
    elif credentials == "secret_in_body_for_basic":
        # Registered for client_secret_basic: another method is not accepted.
        kwargs["data"] |= {"client_id": rp_client.client_id, "client_secret": rp_client.client_secret + "x"}
    response = client.post("/token/introspect", **kwargs)
    assert response.status_code in (400, 401)
    body = response.get_json()
    assert body["error"] == "invalid_client"
    assert "active" not in body and "sub" not in body


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_public_client_cannot_introspect(app, client, browser, user, which):
    public = create_test_client(app, name="Mobile App", token_endpoint_auth_method="none")
    code, verifier, _ = get_code(browser, public, user)
    tokens = exchange_code(client, public, code, verifier).get_json()
    response = client.post("/token/introspect", data={"token": tokens[which], "client_id": public.client_id})
    assert response.status_code in (400, 401)
    body = response.get_json()
    assert body["error"] == "invalid_client"
    assert "active" not in body and "sub" not in body


def test_id_token_is_not_an_active_token(app, client, rp_client, tokens):
    assert_inactive(introspect(client, rp_client, tokens["id_token"]))
