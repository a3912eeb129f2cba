"""The UserInfo endpoint (OpenID Connect Core section 5.3, RFC 6750): how the access token is presented,
which tokens are refused, which claims each scope releases, and the subject identifier each client sees."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.store import commit
from idp.store.users import get_user

from .helpers import (
    Browser,
    authorization_params,
    create_test_client,
    exchange_code,
    get_code,
    pkce_pair,
    query_of,
    statements_run,
)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
PROFILE_CLAIMS = {"name", "given_name", "family_name", "birthdate"}


def sign_in(app, browser: Browser, rp, user, scope: str = "openid profile", **extra: str) -> dict[str, Any]:
    """Run the code flow in ``browser`` for ``rp`` and return the token response."""
    code, verifier, _ = get_code(browser, rp, user, scope=scope, **extra)
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def id_token_claims(client, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256", "ES256"]).claims)


def assert_token_refused(response, error: str = "invalid_token") -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    body = response.get_json(silent=True) or {}
    assert error in challenge or body.get("error") == error, (challenge, body)
    assert "sub" not in body


@pytest.fixture
def browser(client, issuer) -> Browser:
    return Browser(client, issuer)


# -- presenting the token ----------------------------------------------------------------------------


def test_get_with_bearer_header(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json()["given_name"] == "علی"


def test_post_with_bearer_header(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.post("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["family_name"] == "رضایی"


def test_post_with_token_in_form_body(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.post(
        "/userinfo",
        data={"access_token": tokens["access_token"]},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.get_json()["birthdate"] == "1990-03-21"


def test_token_in_both_header_and_body_is_invalid_request(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.post(
        "/userinfo",
        headers=bearer(tokens["access_token"]),
        data={"access_token": tokens["access_token"]},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "sub" not in response.get_json()


def test_response_is_not_cached(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert "no-store" in response.headers.get("Cache-Control", "")


# -- tokens that are refused -------------------------------------------------------------------------


def test_userinfo_reads_once_and_writes_its_release_once(app, client, browser, user, rp_client):
    """Guards the benchmark target "userinfo" (issue 20). The endpoint relying parties call on every page view: one
    read (the token's grant with its user, and whether the token was revoked) and one write (the release, in the
    disclosure ledger, before the answer) and, on PostgreSQL, both outside any transaction (no BEGIN before them, no
    ROLLBACK after). A revocation in between is still seen at once: every statement reads what was committed before
    it."""
    tokens = sign_in(app, browser, rp_client, user, scope="openid profile")
    with statements_run(app) as log:
        response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["given_name"] == "علی"  # create_test_user's
    if log.dialect == "postgresql":
        # Each committed as it ran: no BEGIN, and no session commit after them (it would send nothing).
        assert log.kinds == ["SELECT", "INSERT"], log.entries
        assert log.autocommit == [True, True], "the read or the write ran inside a transaction"
    else:
        assert log.kinds == ["SELECT", "INSERT", "COMMIT"], log.entries

    logout = client.post(
        "/token/revoke", data={"token": tokens["refresh_token"]}, auth=(rp_client.client_id, rp_client.client_secret)
    )
    assert logout.status_code == 200
    assert_token_refused(client.get("/userinfo", headers=bearer(tokens["access_token"])))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_token_is_401_with_bearer_challenge(app, client, method):
    response = client.open("/userinfo", method=method)
    assert response.status_code == 401
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    # RFC 6750 section 3.1: without credentials no error code should be given, and any that is given must be
    # one of the registered codes.
    error = re.search(r'error="([^"]*)"', challenge)
    assert error is None or error.group(1) in {"invalid_request", "invalid_token", "insufficient_scope"}, challenge


@pytest.mark.parametrize("kind", ["garbage", "tampered", "expired", "revoked", "grant_revoked"])
def test_unusable_access_token_is_invalid_token(app, client, browser, user, rp_client, kind):
    tokens = sign_in(app, browser, rp_client, user)
    token = tokens["access_token"]
    if kind == "garbage":
        token = "not-a-token"
    elif kind == "tampered":
        header, payload, signature = token.split(".")
        token = f"{header}.{payload}.{signature[:-4]}AAAA"
    elif kind == "expired":
        assert client.get("/userinfo", headers=bearer(token)).status_code == 200
        clock.advance(601)  # access_token_ttl is 600 s
    elif kind == "revoked":
        revoked = client.post(
            "/token/revoke",
            data={"token": token, "token_type_hint": "access_token"},
            auth=(rp_client.client_id, rp_client.client_secret),
        )
        assert revoked.status_code == 200
    elif kind == "grant_revoked":
        revoked = client.post(
            "/token/revoke",
            data={"token": tokens["refresh_token"]},
            auth=(rp_client.client_id, rp_client.client_secret),
        )
        assert revoked.status_code == 200
    assert_token_refused(client.get("/userinfo", headers=bearer(token)))


def test_client_credentials_token_has_no_user(app, client):
    service = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope="api.read")
    token_response = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, service.client_secret),
    )
    assert token_response.status_code == 200, token_response.get_json()
    access_token = token_response.get_json()["access_token"]
    response = client.get("/userinfo", headers=bearer(access_token))
    assert response.status_code in (401, 403)
    assert "sub" not in (response.get_json(silent=True) or {})


def test_id_token_is_not_an_access_token(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    response = client.get("/userinfo", headers=bearer(tokens["id_token"]))
    assert_token_refused(response)


# -- claims per scope ----------------------------------------------------------------------------------


def test_openid_scope_alone_gives_only_sub(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user, scope="openid")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert set(info) == {"sub"}


def test_profile_scope(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user, scope="openid profile")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert set(info) >= PROFILE_CLAIMS
    assert set(info) - {"sub", "locale"} == PROFILE_CLAIMS
    assert info["given_name"] == "علی"
    assert info["family_name"] == "رضایی"
    assert "علی" in info["name"] and "رضایی" in info["name"]
    assert dt.date.fromisoformat(info["birthdate"]) == dt.date(1990, 3, 21)
    assert info["birthdate"] == "1990-03-21"


def test_phone_scope(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user, scope="openid phone")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert set(info) == {"sub", "phone_number", "phone_number_verified"}
    assert E164.match(info["phone_number"]), info["phone_number"]
    assert info["phone_number"] == user.mobile
    assert info["phone_number_verified"] is True


def test_national_id_scope_gives_verified_claims(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user, scope="openid national_id")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert set(info) == {"sub", "national_id", "verified_claims"}
    assert info["national_id"] == user.national_code
    verified = info["verified_claims"]
    verification = verified["verification"]
    assert verification["trust_framework"] == "ir_sabt_ahval"
    moment = dt.datetime.fromisoformat(verification["time"].replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    assert isinstance(verification["evidence"], list) and verification["evidence"]
    assert verified["claims"] == {
        "national_id": user.national_code,
        "given_name": "علی",
        "family_name": "رضایی",
        "birthdate": "1990-03-21",
    }


def test_all_scopes_together(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user, scope="openid profile phone national_id")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    expected = {"sub", "phone_number", "phone_number_verified", "national_id", "verified_claims"} | PROFILE_CLAIMS
    assert set(info) - {"locale"} == expected


def test_email_released_only_when_requested(app, client, browser, user):
    with app.app_context():
        row = get_user(user.id)
        row.email = "ali@example.com"
        row.email_verified = True
        commit()
    rp = create_test_client(app, scope="openid profile email")
    tokens = sign_in(app, browser, rp, user, scope="openid profile")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert "email" not in info and "email_verified" not in info
    # The same client asking for it does get it: the claim exists, it is only not released unasked.
    tokens = sign_in(app, browser, rp, user, scope="openid email")
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert info["email"] == "ali@example.com"
    assert info["email_verified"] is True


# -- subject identifiers ------------------------------------------------------------------------------


def test_sub_matches_id_token(app, client, browser, user, rp_client):
    tokens = sign_in(app, browser, rp_client, user)
    claims = id_token_claims(client, tokens["id_token"])
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert info["sub"] == claims["sub"]


def test_pairwise_subjects_differ_per_client(app, client, browser, user, rp_client):
    other = create_test_client(app, name="Other Portal", redirect_uris=["https://other.example/cb"])
    first = sign_in(app, browser, rp_client, user)
    second = sign_in(app, browser, other, user)
    sub_one = client.get("/userinfo", headers=bearer(first["access_token"])).get_json()["sub"]
    sub_two = client.get("/userinfo", headers=bearer(second["access_token"])).get_json()["sub"]
    assert sub_one != sub_two
    assert user.id not in (sub_one, sub_two)
    assert id_token_claims(client, second["id_token"])["sub"] == sub_two
    # Stable: the same client sees the same sub on a later login.
    again = sign_in(app, browser, rp_client, user)
    assert client.get("/userinfo", headers=bearer(again["access_token"])).get_json()["sub"] == sub_one


def test_public_subject_type_gets_user_id(app, client, browser, user):
    rp = create_test_client(app, subject_type="public")
    tokens = sign_in(app, browser, rp, user)
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert info["sub"] == user.id
    assert id_token_claims(client, tokens["id_token"])["sub"] == user.id


def test_clients_sharing_a_sector_get_the_same_pairwise_sub(app, client, browser, user, rp_client):
    sector = "https://sector.example/uris.json"
    one = create_test_client(app, name="Sector One", sector_identifier=sector)
    two = create_test_client(app, name="Sector Two", redirect_uris=["https://two.example/cb"], sector_identifier=sector)
    sub_one = client.get("/userinfo", headers=bearer(sign_in(app, browser, one, user)["access_token"])).get_json()
    sub_two = client.get("/userinfo", headers=bearer(sign_in(app, browser, two, user)["access_token"])).get_json()
    sub_default = client.get(
        "/userinfo", headers=bearer(sign_in(app, browser, rp_client, user)["access_token"])
    ).get_json()
    assert sub_one["sub"] == sub_two["sub"]
    assert sub_one["sub"] != user.id
    assert sub_one["sub"] != sub_default["sub"]


# -- a client not registered for national_id ----------------------------------------------------------


def test_unregistered_national_id_scope_is_refused(app, client, browser, user):
    rp = create_test_client(app, scope="openid profile")
    _verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, scope="openid national_id")
    response = browser.authorize(params)
    if response.status_code == 200 and b'name="national_code"' in response.data:
        response = browser.login(response, user)
    assert response.status_code == 302
    assert response.location.startswith(rp.redirect_uri)
    query = query_of(response.location)
    assert query["error"] == "invalid_scope"
    assert query["state"] == params["state"]
    assert "code" not in query


def test_claims_parameter_does_not_release_unregistered_national_id(app, client, browser, user):
    rp = create_test_client(app, scope="openid profile")
    claims = {
        "userinfo": {"national_id": {"essential": True}, "verified_claims": None, "given_name": None},
        "id_token": {"national_id": {"essential": True}, "verified_claims": None},
    }
    tokens = sign_in(app, browser, rp, user, scope="openid", claims=json.dumps(claims))
    info = client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()
    assert "national_id" not in info
    assert "verified_claims" not in info
    # A claim the registration does allow is released through the claims parameter.
    assert info["given_name"] == "علی"
    id_claims = id_token_claims(client, tokens["id_token"])
    assert "national_id" not in id_claims
    assert "verified_claims" not in id_claims
