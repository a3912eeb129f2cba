"""The token endpoint (RFC 6749 sections 3.2, 4.1.3, 4.4, 5; RFC 7636; RFC 7523; OpenID Connect Core 3.1.3).

What a relying party depends on: a code exchange answers with a Bearer access token (an RFC 9068 JWT), a
refresh token and a verifiable ID token, never cached; a code works once, for its own client, with its PKCE
verifier and redirect URI, within 60 s; clients authenticate exactly the way they registered; each grant type
and scope only where registered; and no input makes the endpoint fail with a 500.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import pytest
from authlib.oidc.core.util import create_half_hash
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from idp import clock
from idp.store.clients import InvalidRegistration

from .helpers import (
    REDIRECT_URI,
    Browser,
    ClientInfo,
    UserInfo,
    create_test_client,
    exchange_code,
    get_code,
    statements_run,
)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API_SCOPES = "devices:read devices:write"


# -- helpers ---------------------------------------------------------------------------------------------


def post_token(client: FlaskClient, data: dict[str, str], rp: ClientInfo | None = None, **kwargs: Any) -> Any:
    """POST /token, authenticating ``rp`` with HTTP Basic when it has a secret."""
    if rp is not None and rp.client_secret:
        kwargs.setdefault("auth", (rp.client_id, rp.client_secret))
    return client.post("/token", data=data, **kwargs)


def assert_token_error(response: Any, errors: str | tuple[str, ...], status: int | tuple[int, ...] = 400) -> dict:
    """An RFC 6749 section 5.2 error: JSON ``error`` among ``errors``, no token, not cacheable."""
    errors = (errors,) if isinstance(errors, str) else errors
    statuses = (status,) if isinstance(status, int) else status
    body = response.get_json(silent=True)
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:500])
    assert isinstance(body, dict), response.get_data(as_text=True)[:500]
    assert body.get("error") in errors, body
    assert "access_token" not in body and "refresh_token" not in body and "id_token" not in body
    assert response.headers.get("Cache-Control") == "no-store"
    return body


def code_for(client: FlaskClient, issuer: str, rp: ClientInfo, user: UserInfo, **extra: str) -> tuple[str, str]:
    """A fresh authorization code and its PKCE verifier for ``rp`` (logging in and consenting as needed)."""
    code, verifier, _ = get_code(Browser(client, issuer), rp, user, **extra)
    return code, verifier


def tokens_for(client: FlaskClient, issuer: str, rp: ClientInfo, user: UserInfo, **extra: str) -> dict[str, Any]:
    code, verifier = code_for(client, issuer, rp, user, **extra)
    response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def server_keys(client: FlaskClient) -> KeySet:
    response = client.get("/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.get_json())


def decode(token: str, client: FlaskClient) -> jwt.Token:
    """Verify ``token``'s signature against the provider's published JWKS (claims are checked by the caller)."""
    return jwt.decode(token, server_keys(client), algorithms=["RS256", "ES256"])


def jwks_kids(client: FlaskClient) -> set[str]:
    return {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}


def audience_is(claims: dict[str, Any], client_id: str) -> bool:
    aud = claims.get("aud")
    return aud == client_id or aud == [client_id]


def userinfo_status(client: FlaskClient, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def introspect(client: FlaskClient, rp: ClientInfo, token: str) -> dict[str, Any]:
    response = client.post("/token/introspect", data={"token": token}, auth=(rp.client_id, rp.client_secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client: FlaskClient, rp: ClientInfo, refresh_token: str, **extra: str) -> Any:
    return post_token(client, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}, rp)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# -- a successful exchange -------------------------------------------------------------------------------


def test_code_exchange_returns_bearer_tokens_not_cacheable(app, client, issuer, user, rp_client):
    code, verifier = code_for(client, issuer, rp_client, user, scope="openid profile")
    response = exchange_code(client, rp_client, code, verifier)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    token = response.get_json()
    assert token["token_type"] == "Bearer"
    assert isinstance(token["access_token"], str) and token["access_token"]
    assert isinstance(token["expires_in"], int) and token["expires_in"] > 0
    assert set(token["scope"].split()) == {"openid", "profile"}
    assert isinstance(token["refresh_token"], str) and len(token["refresh_token"]) >= 32
    assert token["refresh_token"] != token["access_token"]
    assert token["id_token"].count(".") == 2


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_id_token_claims_and_signature(app, client, issuer, user, alg):
    rp = create_test_client(app) if alg == "RS256" else create_test_client(app, id_token_signed_response_alg=alg)
    nonce = secrets.token_urlsafe(12)
    before = int(time.time())
    token = tokens_for(client, issuer, rp, user, nonce=nonce)
    after = int(time.time())

    decoded = decode(token["id_token"], client)
    header, claims = decoded.header, decoded.claims
    assert header["alg"] == alg
    assert header["kid"] in jwks_kids(client)
    assert claims["iss"] == issuer
    assert audience_is(claims, rp.client_id)
    assert isinstance(claims["sub"], str) and claims["sub"]
    assert claims["sub"] != user.id  # pairwise by default
    assert before - 5 <= claims["iat"] <= after + 5
    assert claims["exp"] > claims["iat"]
    assert before - 5 <= claims["auth_time"] <= claims["iat"]
    assert claims["nonce"] == nonce
    assert claims["acr"] == "urn:hoviyat:loa:1"
    assert claims["amr"] == ["pwd"]
    assert claims["at_hash"] == create_half_hash(token["access_token"], alg).decode("ascii")
    assert isinstance(claims["sid"], str) and claims["sid"]
    # the same subject the access token gets at userinfo
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 200 and info.get_json()["sub"] == claims["sub"]


def test_access_token_is_an_rfc9068_jwt(app, client, issuer, user, rp_client):
    token = tokens_for(client, issuer, rp_client, user)
    decoded = decode(token["access_token"], client)
    assert decoded.header["typ"].lower() in ("at+jwt", "application/at+jwt")
    assert decoded.header["kid"] in jwks_kids(client)
    claims = decoded.claims
    assert claims["iss"] == issuer
    assert audience_is(claims, rp_client.client_id)
    assert claims["client_id"] == rp_client.client_id
    assert claims["exp"] - claims["iat"] == token["expires_in"]
    assert set(claims["scope"].split()) == set(token["scope"].split())
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert claims["sub"] == decode(token["id_token"], client).claims["sub"]
    # an access token is not an ID token and vice versa
    assert userinfo_status(client, token["id_token"]) == 401


# -- PKCE --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verifier_sent", "errors"),
    [
        pytest.param(None, ("invalid_request", "invalid_grant"), id="missing"),
        pytest.param("wrong", ("invalid_grant",), id="wrong"),
        pytest.param("", ("invalid_request", "invalid_grant"), id="empty"),
        pytest.param("challenge", ("invalid_grant",), id="challenge-instead-of-verifier"),
    ],
)
def test_pkce_failure_refuses_and_burns_the_code(app, client, issuer, user, rp_client, verifier_sent, errors):
    code, verifier = code_for(client, issuer, rp_client, user)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp_client.redirect_uri}
    if verifier_sent == "wrong":
        data["code_verifier"] = secrets.token_urlsafe(48)
    elif verifier_sent == "challenge":
        # what a confused client (or an attacker who saw the authorization request) would send
        digest = hashlib.sha256(verifier.encode()).digest()
        data["code_verifier"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    elif verifier_sent == "":
        data["code_verifier"] = ""
    assert_token_error(post_token(client, data, rp_client), errors)

    # The code was burnt by the failed attempt: the right verifier no longer helps.
    assert_token_error(exchange_code(client, rp_client, code, verifier), "invalid_grant")


# -- code lifetime and reuse --------------------------------------------------------------------------------


def test_reused_code_is_refused_and_revokes_the_first_tokens(app, client, issuer, user, rp_client):
    code, verifier = code_for(client, issuer, rp_client, user)
    first = exchange_code(client, rp_client, code, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    assert userinfo_status(client, tokens["access_token"]) == 200
    assert introspect(client, rp_client, tokens["access_token"])["active"] is True

    assert_token_error(exchange_code(client, rp_client, code, verifier), "invalid_grant")

    assert userinfo_status(client, tokens["access_token"]) == 401
    assert introspect(client, rp_client, tokens["access_token"]) == {"active": False}
    assert introspect(client, rp_client, tokens["refresh_token"]) == {"active": False}
    assert_token_error(refresh(client, rp_client, tokens["refresh_token"]), "invalid_grant")


def test_reused_code_leaves_other_grants_alone(app, client, issuer, user, rp_client):
    other = tokens_for(client, issuer, rp_client, user)
    code, verifier = code_for(client, issuer, rp_client, user)
    assert exchange_code(client, rp_client, code, verifier).status_code == 200
    assert_token_error(exchange_code(client, rp_client, code, verifier), "invalid_grant")
    assert userinfo_status(client, other["access_token"]) == 200
    assert refresh(client, rp_client, other["refresh_token"]).status_code == 200


@pytest.mark.parametrize(("seconds", "works"), [(50, True), (61, False), (3600, False)])
def test_code_expires_after_60_seconds(app, client, issuer, user, rp_client, seconds, works):
    code, verifier = code_for(client, issuer, rp_client, user)
    clock.advance(seconds)
    response = exchange_code(client, rp_client, code, verifier)
    if works:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "access_token" in response.get_json()
    else:
        assert_token_error(response, "invalid_grant")


# -- redirect_uri -------------------------------------------------------------------------------------------

SECOND_REDIRECT = "https://rp.example/other-callback"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(SECOND_REDIRECT, id="other-registered-uri"),
        pytest.param("https://evil.example/callback", id="unregistered"),
        pytest.param(REDIRECT_URI + "/", id="trailing-slash"),
        pytest.param(REDIRECT_URI + "?x=1", id="extra-query"),
        pytest.param(REDIRECT_URI.upper(), id="case-changed"),
    ],
)
def test_redirect_uri_must_match_the_authorization_request(app, client, issuer, user, redirect_uri):
    rp = create_test_client(app, redirect_uris=[REDIRECT_URI, SECOND_REDIRECT])
    code, verifier = code_for(client, issuer, rp, user)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    assert_token_error(post_token(client, data, rp), "invalid_grant")


# -- client authentication ----------------------------------------------------------------------------------


def test_wrong_secret_with_basic_is_401_with_www_authenticate(app, client, issuer, user, rp_client):
    code, verifier = code_for(client, issuer, rp_client, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp_client.redirect_uri,
        "code_verifier": verifier,
    }
    response = client.post("/token", data=data, auth=(rp_client.client_id, rp_client.client_secret + "x"))
    assert_token_error(response, "invalid_client", 401)
    assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic")

    # A failed client authentication does not touch the code: the real client can still use it.
    assert exchange_code(client, rp_client, code, verifier).status_code == 200


GARBAGE_CODE = {
    "grant_type": "authorization_code",
    "code": "not-a-code",
    "redirect_uri": REDIRECT_URI,
    "code_verifier": "v" * 43,
}


@pytest.mark.parametrize(
    "how",
    ["none", "id-only-in-body", "unknown-client", "empty-secret", "secret-of-another-client", "public-style"],
)
def test_missing_or_wrong_client_credentials_are_invalid_client(app, client, rp_client, how):
    other = create_test_client(app)
    kwargs: dict[str, Any] = {}
    data = dict(GARBAGE_CODE)
    if how == "id-only-in-body":
        data["client_id"] = rp_client.client_id
    elif how == "unknown-client":
        kwargs["auth"] = ("no-such-client", rp_client.client_secret)
    elif how == "empty-secret":
        kwargs["headers"] = basic(rp_client.client_id, "")
    elif how == "secret-of-another-client":
        kwargs["auth"] = (rp_client.client_id, other.client_secret)
    elif how == "public-style":
        data.update(client_id=rp_client.client_id, client_secret="")
    assert_token_error(client.post("/token", data=data, **kwargs), "invalid_client", (400, 401))


@pytest.mark.parametrize(
    ("registered", "presented", "error"),
    [
        ("client_secret_basic", "client_secret_basic", "invalid_grant"),  # authenticated; then the code is bad
        ("client_secret_basic", "client_secret_post", "invalid_client"),
        ("client_secret_post", "client_secret_post", "invalid_grant"),
        ("client_secret_post", "client_secret_basic", "invalid_client"),
        ("client_secret_post", "wrong_secret_post", "invalid_client"),
    ],
)
def test_client_must_use_its_registered_auth_method(app, client, registered, presented, error):
    rp = create_test_client(app, token_endpoint_auth_method=registered)
    data = dict(GARBAGE_CODE)
    kwargs: dict[str, Any] = {}
    if presented == "client_secret_basic":
        kwargs["auth"] = (rp.client_id, rp.client_secret)
    elif presented == "client_secret_post":
        data.update(client_id=rp.client_id, client_secret=rp.client_secret)
    else:
        data.update(client_id=rp.client_id, client_secret=rp.client_secret + "x")
    assert_token_error(client.post("/token", data=data, **kwargs), error, (400, 401))


def test_client_secret_post_client_exchanges_with_body_credentials(app, client, issuer, user):
    rp = create_test_client(app, token_endpoint_auth_method="client_secret_post")
    code, verifier = code_for(client, issuer, rp, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
        "client_id": rp.client_id,
        "client_secret": rp.client_secret,
    }
    response = client.post("/token", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["id_token"]


# -- another client's code ----------------------------------------------------------------------------------


def test_another_clients_code_is_refused_and_not_consumed(app, client, issuer, user, rp_client):
    intruder = create_test_client(app)
    code, verifier = code_for(client, issuer, rp_client, user)

    assert_token_error(exchange_code(client, intruder, code, verifier), "invalid_grant")

    response = exchange_code(client, rp_client, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    claims = decode(response.get_json()["id_token"], client).claims
    assert audience_is(claims, rp_client.client_id)


def test_public_client_cannot_use_a_confidential_clients_code(app, client, issuer, user, rp_client):
    public = create_test_client(app, token_endpoint_auth_method="none")
    code, verifier = code_for(client, issuer, rp_client, user)
    assert_token_error(exchange_code(client, public, code, verifier), "invalid_grant")
    assert exchange_code(client, rp_client, code, verifier).status_code == 200


# -- public clients -----------------------------------------------------------------------------------------


def test_public_client_exchanges_with_client_id_and_verifier(app, client, issuer, user):
    public = create_test_client(app, token_endpoint_auth_method="none")
    assert public.client_secret is None
    code, verifier = code_for(client, issuer, public, user)
    response = exchange_code(client, public, code, verifier)  # client_id in the body, no secret
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()
    assert audience_is(decode(token["id_token"], client).claims, public.client_id)
    assert userinfo_status(client, token["access_token"]) == 200


def test_public_client_is_not_authenticated_by_a_made_up_secret(app, client):
    public = create_test_client(app, token_endpoint_auth_method="none")
    data = dict(GARBAGE_CODE)
    response = client.post("/token", data=data, auth=(public.client_id, "made-up"))
    assert_token_error(response, "invalid_client", (400, 401))


@pytest.mark.parametrize(
    "grant_types", [["client_credentials"], ["authorization_code", "refresh_token", "client_credentials"]]
)
def test_public_client_cannot_register_client_credentials(app, grant_types):
    with pytest.raises(InvalidRegistration):
        create_test_client(
            app,
            token_endpoint_auth_method="none",
            grant_types=grant_types,
            redirect_uris=[REDIRECT_URI] if "authorization_code" in grant_types else [],
            scope="openid " + API_SCOPES,
        )


def test_public_client_cannot_use_client_credentials(app, client):
    public = create_test_client(app, token_endpoint_auth_method="none")
    response = client.post("/token", data={"grant_type": "client_credentials", "client_id": public.client_id})
    assert_token_error(response, ("unauthorized_client", "invalid_client"), (400, 401))


# -- private_key_jwt ----------------------------------------------------------------------------------------


def new_ec_key() -> tuple[ECKey, dict[str, Any]]:
    key = ECKey.generate_key("P-256", private=True)
    public = key.as_dict(private=False) | {"kid": "rp-key-" + secrets.token_hex(4), "alg": "ES256", "use": "sig"}
    return key, public


def make_assertion(
    key: ECKey,
    kid: str,
    client_id: str,
    aud: str,
    *,
    lifetime: int = 60,
    jti: str | None = None,
    iss: str | None = None,
    omit: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    claims = {
        "iss": iss or client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti or secrets.token_urlsafe(16),
    }
    for name in omit:
        claims.pop(name)
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, key, algorithms=["ES256"])


def assertion_data(assertion: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": JWT_BEARER, "client_assertion": assertion, **extra}


@pytest.fixture
def jwt_client(app: Flask) -> tuple[ClientInfo, ECKey, str]:
    """A confidential client that authenticates with private_key_jwt, for the client credentials grant."""
    key, public = new_ec_key()
    rp = create_test_client(
        app,
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [public]},
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope=API_SCOPES,
    )
    assert rp.client_secret is None
    return rp, key, public["kid"]


@pytest.mark.parametrize(("aud_kind", "lifetime"), [("token", 60), ("issuer", 60), ("token", 3500)])
def test_private_key_jwt_valid_assertion_authenticates(client, issuer, jwt_client, aud_kind, lifetime):
    rp, key, kid = jwt_client
    aud = issuer + "/token" if aud_kind == "token" else issuer
    assertion = make_assertion(key, kid, rp.client_id, aud, lifetime=lifetime)
    response = client.post("/token", data=assertion_data(assertion, grant_type="client_credentials"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["access_token"]


@pytest.mark.parametrize(
    "defect",
    ["wrong-aud", "other-key", "valid-over-an-hour", "expired", "iss-not-client", "no-jti", "no-exp", "wrong-type"],
)
def test_private_key_jwt_bad_assertion_is_invalid_client(client, issuer, jwt_client, defect):
    rp, key, kid = jwt_client
    token_url = issuer + "/token"
    kwargs: dict[str, Any] = {}
    if defect == "wrong-aud":
        kwargs["aud"] = "https://other-provider.example/token"
    if defect == "other-key":
        key = ECKey.generate_key("P-256", private=True)  # same kid, not the registered key
    if defect == "valid-over-an-hour":
        kwargs["lifetime"] = 3600 + 300
    if defect == "expired":
        kwargs["lifetime"] = -300
    if defect == "iss-not-client":
        kwargs["iss"] = "someone-else"
    if defect == "no-jti":
        kwargs["omit"] = ("jti",)
    if defect == "no-exp":
        kwargs["omit"] = ("exp",)
    kwargs.setdefault("aud", token_url)
    assertion = make_assertion(key, kid, rp.client_id, **kwargs)
    data = assertion_data(assertion, grant_type="client_credentials")
    if defect == "wrong-type":
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    assert_token_error(client.post("/token", data=data), "invalid_client", (400, 401))


def test_private_key_jwt_assertion_is_single_use(client, issuer, jwt_client):
    rp, key, kid = jwt_client
    assertion = make_assertion(key, kid, rp.client_id, issuer + "/token")
    data = assertion_data(assertion, grant_type="client_credentials")
    assert client.post("/token", data=data).status_code == 200
    assert_token_error(client.post("/token", data=data), "invalid_client", (400, 401))
    # a new assertion with another jti works again
    fresh = make_assertion(key, kid, rp.client_id, issuer + "/token")
    assert client.post("/token", data=assertion_data(fresh, grant_type="client_credentials")).status_code == 200


def test_private_key_jwt_code_exchange_and_refresh(app, client, issuer, user):
    key, public = new_ec_key()
    rp = create_test_client(app, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]})
    code, verifier = code_for(client, issuer, rp, user)
    assertion = make_assertion(key, public["kid"], rp.client_id, issuer)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    response = client.post("/token", data=assertion_data(assertion, **exchange))
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()
    assert audience_is(decode(token["id_token"], client).claims, rp.client_id)

    again = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    # the same assertion again (same jti): refused before the refresh token is even looked at
    assert_token_error(client.post("/token", data=assertion_data(assertion, **again)), "invalid_client", (400, 401))
    # without any assertion: no authentication at all
    assert_token_error(client.post("/token", data={**again, "client_id": rp.client_id}), "invalid_client", (400, 401))
    fresh = make_assertion(key, public["kid"], rp.client_id, issuer + "/token")
    response = client.post("/token", data=assertion_data(fresh, **again))
    assert response.status_code == 200, response.get_data(as_text=True)


# -- grant types only where registered ----------------------------------------------------------------------


def test_client_credentials_for_a_client_not_registered_for_it(client, rp_client):
    response = post_token(client, {"grant_type": "client_credentials", "scope": "openid"}, rp_client)
    assert_token_error(response, "unauthorized_client")


def test_client_without_refresh_token_grant_gets_no_refresh_token(app, client, issuer, user):
    rp = create_test_client(app, grant_types=["authorization_code"])
    token = tokens_for(client, issuer, rp, user)
    assert token["access_token"] and token["id_token"]
    assert "refresh_token" not in token
    response = post_token(client, {"grant_type": "refresh_token", "refresh_token": "x" * 43}, rp)
    assert_token_error(response, "unauthorized_client")


def test_client_credentials_only_client_cannot_exchange_codes(app, client):
    rp = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope=API_SCOPES)
    assert_token_error(post_token(client, GARBAGE_CODE, rp), "unauthorized_client")


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "AUTHORIZATION_CODE",
    ],
)
def test_unknown_grant_type_is_unsupported(client, rp_client, grant_type):
    data = {"grant_type": grant_type, "username": "0012345679", "password": "x", "code": "x"}
    assert_token_error(post_token(client, data, rp_client), "unsupported_grant_type")


# -- client credentials -------------------------------------------------------------------------------------


@pytest.fixture
def api_client(app: Flask) -> ClientInfo:
    return create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope=API_SCOPES)


@pytest.mark.parametrize(
    ("requested", "granted"), [("devices:read", {"devices:read"}), (None, set(API_SCOPES.split()))]
)
def test_client_credentials_issues_an_access_token_only(client, issuer, api_client, requested, granted):
    data = {"grant_type": "client_credentials"}
    if requested:
        data["scope"] = requested
    response = post_token(client, data, api_client)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    token = response.get_json()
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == granted
    assert "refresh_token" not in token
    assert "id_token" not in token
    decoded = decode(token["access_token"], client)
    assert decoded.header["typ"].lower() in ("at+jwt", "application/at+jwt")
    assert decoded.claims["iss"] == issuer
    assert decoded.claims["client_id"] == api_client.client_id
    assert set(decoded.claims["scope"].split()) == granted
    # no person behind it: userinfo refuses it
    assert userinfo_status(client, token["access_token"]) in (401, 403)


@pytest.mark.parametrize(
    "scope", ["openid", "national_id", "profile", "devices:read openid", "devices:admin", "devices:read devices:admin"]
)
def test_client_credentials_refuses_user_and_unregistered_scopes(app, client, scope):
    # A client that logs users in and also calls APIs on its own: the user scopes are registered, but a
    # token without a user must not carry them.
    rp = create_test_client(
        app,
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        scope="openid profile national_id " + API_SCOPES,
    )
    response = post_token(client, {"grant_type": "client_credentials", "scope": scope}, rp)
    assert_token_error(response, "invalid_scope")

    # without a scope it gets its API scopes, and none of the user scopes
    response = post_token(client, {"grant_type": "client_credentials"}, rp)
    assert response.status_code == 200
    assert set(response.get_json()["scope"].split()) == set(API_SCOPES.split())


# -- bad input never gives a 500 ----------------------------------------------------------------------------


def _code_request(**changes: str) -> dict[str, str]:
    data = dict(GARBAGE_CODE)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


BAD_BODIES = [
    pytest.param(_code_request(code="garbage"), ("invalid_grant",), id="garbage-code"),
    pytest.param(_code_request(code="c" * 20_000), ("invalid_grant", "invalid_request"), id="huge-code"),
    pytest.param(_code_request(code="کد-نامعتبر-۱۲۳"), ("invalid_grant",), id="persian-code"),
    pytest.param(_code_request(code="abc\x00def"), ("invalid_grant", "invalid_request"), id="nul-in-code"),
    pytest.param(_code_request(redirect_uri="https://rp.example/بازگشت"), ("invalid_grant",), id="persian-redirect"),
    pytest.param(_code_request(code_verifier="ف" * 50), ("invalid_grant", "invalid_request"), id="persian-verifier"),
    pytest.param(_code_request(code=""), ("invalid_request", "invalid_grant"), id="empty-code"),
    pytest.param({"grant_type": "authorization_code"}, ("invalid_request", "invalid_grant"), id="no-code"),
    pytest.param({"code": "abc"}, ("invalid_request", "unsupported_grant_type"), id="no-grant-type"),
    pytest.param({}, ("invalid_request", "unsupported_grant_type"), id="empty-body"),
    pytest.param({"grant_type": ""}, ("invalid_request", "unsupported_grant_type"), id="empty-grant-type"),
    pytest.param({"grant_type": "گرنت"}, ("unsupported_grant_type", "invalid_request"), id="persian-grant-type"),
    pytest.param({"grant_type": "refresh_token"}, ("invalid_request",), id="no-refresh-token"),
    pytest.param({"grant_type": "refresh_token", "refresh_token": "r" * 20_000}, ("invalid_grant",), id="huge-rt"),
    pytest.param({"grant_type": "refresh_token", "refresh_token": "توکن"}, ("invalid_grant",), id="persian-rt"),
    pytest.param({"grant_type": "refresh_token", "refresh_token": "a\x00b"}, ("invalid_grant",), id="nul-rt"),
    pytest.param(
        {"grant_type": "refresh_token", "refresh_token": "x", "scope": "openid \x00 ف"},
        ("invalid_grant", "invalid_scope"),
        id="odd-scope",
    ),
    pytest.param(
        {"grant_type": "client_credentials", "scope": "ف" * 1000},
        ("unauthorized_client", "invalid_scope"),
        id="persian-scope",
    ),
]


@pytest.mark.parametrize(("data", "errors"), BAD_BODIES)
def test_bad_token_request_body_is_a_4xx_error(client, rp_client, data, errors):
    assert_token_error(post_token(client, data, rp_client), errors)


def _assertion_for_unknown_subject(subject: str) -> str:
    key = ECKey.generate_key("P-256", private=True)
    return make_assertion(key, "k", subject, "https://127.0.0.1/token")


BAD_AUTH = [
    pytest.param({"Authorization": "Basic !!!not-base64!!!"}, {}, id="basic-not-base64"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {}, id="basic-no-colon"),
    pytest.param({"Authorization": "Basic "}, {}, id="basic-empty"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()}, {}, id="basic-not-utf8"),
    pytest.param(basic("شناسه", "رمز"), {}, id="basic-persian"),
    pytest.param(basic("id\x00nul", "secret"), {}, id="basic-nul"),
    pytest.param(basic("c" * 5000, "s"), {}, id="basic-huge-id"),
    pytest.param({"Authorization": "Bearer abc.def.ghi"}, {}, id="bearer-instead"),
    pytest.param({}, {"client_id": "شناسه"}, id="body-persian-client-id"),
    pytest.param({}, {"client_id": "id\x00nul"}, id="body-nul-client-id"),
    pytest.param({}, {"client_id": "c" * 5000, "client_secret": "s"}, id="body-huge-client-id"),
    pytest.param({}, {"client_id": "x", "client_secret": "ف\x00"}, id="body-odd-secret"),
    pytest.param({}, {"client_assertion_type": JWT_BEARER, "client_assertion": "not.a.jwt"}, id="garbage-assertion"),
    pytest.param({}, {"client_assertion_type": JWT_BEARER, "client_assertion": "ف" * 100}, id="persian-assertion"),
    pytest.param(
        {},
        {"client_assertion_type": JWT_BEARER, "client_assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
        id="alg-none-assertion",
    ),
    pytest.param(
        {},
        {"client_assertion_type": JWT_BEARER, "client_assertion": _assertion_for_unknown_subject("id\x00nul")},
        id="assertion-nul-subject",
    ),
    pytest.param(
        {},
        {"client_assertion_type": JWT_BEARER, "client_assertion": _assertion_for_unknown_subject("شناسه")},
        id="assertion-persian-subject",
    ),
]


@pytest.mark.parametrize(("headers", "extra"), BAD_AUTH)
def test_bad_client_authentication_is_invalid_client(client, headers, extra):
    response = client.post("/token", data={**GARBAGE_CODE, **extra}, headers=headers)
    assert_token_error(response, "invalid_client", (400, 401))


@pytest.mark.parametrize("path", ["/token/revoke", "/token/introspect"])
@pytest.mark.parametrize(("headers", "extra"), BAD_AUTH)
def test_bad_client_authentication_at_revocation_and_introspection(client, path, headers, extra):
    # The same client authentication guards these endpoints: malformed credentials are invalid_client, not a 500.
    response = client.post(path, data={"token": "whatever", **extra}, headers=headers)
    assert response.status_code in (400, 401), response.get_data(as_text=True)[:500]
    assert response.get_json()["error"] == "invalid_client"


def test_json_body_is_refused_without_a_500(client, rp_client):
    response = client.post("/token", json=GARBAGE_CODE, auth=(rp_client.client_id, rp_client.client_secret))
    assert_token_error(response, ("invalid_request", "unsupported_grant_type"), (400, 401, 415))


def test_body_over_the_size_limit_is_refused_without_a_500(client, rp_client):
    response = post_token(client, _code_request(code="c" * 200_000), rp_client)
    assert response.status_code in (400, 413)
    assert "access_token" not in (response.get_json(silent=True) or {})


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_not_allowed(client, method):
    response = client.open("/token?grant_type=client_credentials", method=method)
    assert response.status_code == 405


def test_https_issuer_behind_a_tls_proxy_accepts_plain_http_from_the_proxy(app_with):
    # A TLS-terminating proxy forwards plain http; the provider must judge transport by its https issuer.
    app = app_with(server={"issuer": "https://id.example"})
    machine = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope="openid api:read")
    response = app.test_client().post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(machine.client_id, machine.client_secret),
        base_url="http://id.example",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "api:read"


@pytest.mark.parametrize("refresh_token", [True, False], ids=["with-refresh-token", "without"])
def test_a_code_exchange_writes_grant_token_and_audit_row_together_after_the_answer(
    app, client, issuer, user, refresh_token
):
    """Guards the benchmark target "whole code flow with a password" (issue 20). The exchange reads the user, makes
    the whole answer (ID token included), then writes the grant, its first refresh token, the token.issued row and
    the ledger's record of what the ID token released: one statement on PostgreSQL (four inserts on SQLite) in one
    transaction, committed last. Statements, not time: every code flow of every relying party pays for them."""
    from sqlalchemy import func, select

    from idp.extensions import db
    from idp.store.models import AuditEvent, Grant, RefreshToken

    grant_types = ["authorization_code", "refresh_token"] if refresh_token else ["authorization_code"]
    rp = create_test_client(app, grant_types=grant_types)
    code, verifier, _ = get_code(Browser(client, issuer), rp, user)
    with statements_run(app) as log:
        response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["id_token"] and ("refresh_token" in answer) is refresh_token
    seen = log.kinds
    writes = [kind for kind in seen if kind != "SELECT"]  # the reads (the user, the client if not cached) first
    if log.dialect == "postgresql":
        assert seen[-2:] == writes == ["WITH", "COMMIT"], seen
    else:
        assert seen[-len(writes) :] == writes == ["INSERT"] * (4 if refresh_token else 3) + ["COMMIT"], seen
    with app.app_context():
        grant = db.session.scalars(select(Grant).where(Grant.client_id == rp.client_id)).one()
        assert grant.user_id == user.id and grant.code_hash and grant.scope == answer["scope"]
        tokens = db.session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.grant_id == grant.id)
        )
        assert tokens == (1 if refresh_token else 0)
        issued = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "token.issued", AuditEvent.client_id == rp.client_id)
        ).one()
        assert issued.user_id == user.id and issued.detail["grant_id"] == grant.id
        db.session.remove()
    if refresh_token:  # the refresh token written with its grant works
        again = client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": answer["refresh_token"]},
            auth=(rp.client_id, rp.client_secret),
        )
        assert again.status_code == 200, again.get_data(as_text=True)
