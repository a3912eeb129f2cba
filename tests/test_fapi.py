"""The FAPI 2.0 Security Profile for one client (``--profile fapi2``): PAR, private_key_jwt with the issuer as
audience, DPoP-bound tokens, PS256 or ES256, codes of 60 s at most, refresh tokens not rotated; every deviation
refused with the RFC's error code."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.store.clients import InvalidRegistration, Registration, validate_registration

from .helpers import REDIRECT_URI, Browser, pkce_pair, query_of
from .high_assurance import (
    ClientKeys,
    DPoPKey,
    authorization_request,
    code_by_pushed_request,
    fapi_client,
    fapi_login,
    push,
    rsa_key,
)

TOKEN = "/token"


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def verified(client: Any, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["PS256", "ES256"]).claims)


def token_error(response: Any) -> str:
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    return response.get_json()["error"]


def pushed_code(app: Any, client: Any, issuer: str, user: Any, rp: Any, keys: ClientKeys) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = authorization_request(rp, challenge)
    response = push(client, issuer, rp, keys, params)
    assert response.status_code == 201, response.get_json()
    browser = Browser(app.test_client(), issuer)
    return code_by_pushed_request(browser, issuer, rp, user, response.get_json()["request_uri"], params["state"]), (
        verifier
    )


def exchange(client: Any, issuer: str, rp: Any, code: str, verifier: str, auth: dict[str, str], key: Any) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"DPoP": key.proof("POST", issuer + TOKEN)} if key is not None else {}
    return client.post(TOKEN, data={**data, **auth}, headers=headers)


# -- the whole flow ---------------------------------------------------------------------------------------------


def test_a_fapi_login(app, client, issuer, user):
    login = fapi_login(app, client, issuer, user)
    tokens = login.tokens
    assert tokens["token_type"] == "DPoP"
    assert header_of(tokens["id_token"])["alg"] == "ES256"
    assert header_of(tokens["access_token"])["alg"] in ("ES256", "PS256")
    assert verified(client, tokens["access_token"])["cnf"] == {"jkt": login.dpop_key.jkt}
    assert verified(client, tokens["id_token"])["aud"] == login.rp.client_id
    token = tokens["access_token"]
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": login.dpop_key.proof("GET", issuer + "/userinfo", access_token=token),
    }
    assert client.get("/userinfo", headers=headers).status_code == 200


def test_ps256_id_tokens(app, client, issuer, user):
    login = fapi_login(app, client, issuer, user, id_token_signed_response_alg="PS256")
    assert header_of(login.tokens["id_token"])["alg"] == "PS256"
    assert verified(client, login.tokens["id_token"])["sub"]


def test_access_tokens_are_never_rs256_for_a_fapi_client(app_with, backend):
    app = app_with(keys={"access_token_alg": "RS256"})
    from .helpers import create_test_user

    login = fapi_login(app, app.test_client(), app.extensions["idp"].issuer, create_test_user(app))
    assert header_of(login.tokens["access_token"])["alg"] == "ES256"


# -- deviations ------------------------------------------------------------------------------------------------


def test_skipping_par_is_refused(app, client, issuer, user):
    rp, _ = fapi_client(app)
    params = authorization_request(rp, pkce_pair()[1])
    response = Browser(client, issuer).authorize(params)
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "invalid_request" and query["state"] == params["state"] and query["iss"] == issuer


def test_client_secret_basic_is_refused(app, client, issuer, user):
    rp, keys = fapi_client(app)
    code, verifier = pushed_code(app, client, issuer, user, rp, keys)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    response = client.post(TOKEN, data=data, auth=(rp.client_id, "a guessed secret"))
    assert token_error(response) == "invalid_client"
    response = client.post(TOKEN, data={**data, "client_id": rp.client_id, "client_secret": "x"})
    assert token_error(response) == "invalid_client"


def test_a_fapi_client_cannot_be_registered_with_a_secret():
    with pytest.raises(InvalidRegistration) as refused:
        validate_registration(
            Registration(name="Bank", redirect_uris=[REDIRECT_URI], profile="fapi2", token_endpoint_auth_method="none")
        )
    assert refused.value.field == "auth-method"
    with pytest.raises(InvalidRegistration) as refused:
        keys = ClientKeys()
        validate_registration(
            Registration(
                name="Bank",
                redirect_uris=[REDIRECT_URI],
                profile="fapi2",
                token_endpoint_auth_method="private_key_jwt",
                jwks=keys.public_jwks,
                id_token_signed_response_alg="RS256",
            )
        )
    assert refused.value.field == "id-token-alg"


def test_rs256_is_refused_everywhere(app, client, issuer, user):
    # One RSA key, registered without an "alg": only the profile decides which algorithms it may sign with.
    keys = ClientKeys(alg="PS256", key=rsa_key())
    jwks = {"keys": [{k: v for k, v in keys.public_jwks["keys"][0].items() if k != "alg"}]}
    rp, _ = fapi_client(app, keys=keys, jwks=jwks)
    now = int(time.time())
    rs256_assertion = keys.sign(
        {"iss": rp.client_id, "sub": rp.client_id, "aud": issuer, "exp": now + 60, "jti": str(now)}, alg="RS256"
    )
    params = authorization_request(rp, pkce_pair()[1])
    auth = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    response = client.post("/par", data={**params, **auth, "client_assertion": rs256_assertion})
    assert token_error(response) == "invalid_client"
    # A request object signed RS256, pushed with a good assertion.
    request = keys.request_object(rp.client_id, issuer, params)
    rs256_request = keys.sign(
        {**json.loads(base64.urlsafe_b64decode(request.split(".")[1] + "==")), "jti": "rs"}, alg="RS256"
    )
    response = push(client, issuer, rp, keys, {"request": rs256_request})
    assert token_error(response) == "invalid_request_object"
    # A DPoP proof signed RS256 at the token endpoint.
    code, verifier = pushed_code(app, client, issuer, user, rp, keys)
    response = exchange(client, issuer, rp, code, verifier, keys.auth(rp.client_id, issuer), DPoPKey("RS256"))
    assert token_error(response) == "invalid_dpop_proof"
    # PS256 everywhere works.
    response = exchange(client, issuer, rp, code, verifier, keys.auth(rp.client_id, issuer), DPoPKey("PS256"))
    assert response.status_code == 200, response.get_json()


def test_a_plain_bearer_token_is_refused(app, client, issuer, user):
    rp, keys = fapi_client(app)
    code, verifier = pushed_code(app, client, issuer, user, rp, keys)
    response = exchange(client, issuer, rp, code, verifier, keys.auth(rp.client_id, issuer), None)
    assert token_error(response) == "invalid_dpop_proof"
    # With a proof the same code works (the refused request did not spend it), and the token is no bearer token.
    response = exchange(client, issuer, rp, code, verifier, keys.auth(rp.client_id, issuer), DPoPKey())
    token = response.get_json()["access_token"]
    refused = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


@pytest.mark.parametrize("defect", ["token-endpoint-aud", "aud-array", "long-lived"])
def test_the_assertion_must_name_the_issuer_and_be_short_lived(app, client, issuer, defect):
    rp, keys = fapi_client(app)
    aud: Any = {"token-endpoint-aud": issuer + TOKEN, "aud-array": [issuer]}.get(defect, issuer)
    lifetime = 3000 if defect == "long-lived" else 60
    params = authorization_request(rp, pkce_pair()[1])
    response = client.post("/par", data={**params, **keys.auth(rp.client_id, aud, lifetime=lifetime)})
    assert token_error(response) == "invalid_client"


def test_codes_live_60_seconds_at_most(app_with, backend):
    app = app_with(tokens={"code_ttl": 300})
    from .helpers import create_test_user

    client, issuer = app.test_client(), app.extensions["idp"].issuer
    rp, keys = fapi_client(app)
    code, verifier = pushed_code(app, client, issuer, create_test_user(app), rp, keys)
    clock.advance(61)
    response = exchange(client, issuer, rp, code, verifier, keys.auth(rp.client_id, issuer), DPoPKey())
    assert token_error(response) == "invalid_grant"


def test_refresh_tokens_are_not_rotated(app, client, issuer, user):
    login = fapi_login(app, client, issuer, user)
    refresh = login.tokens["refresh_token"]

    def refresh_once() -> Any:
        data = {"grant_type": "refresh_token", "refresh_token": refresh, **login.keys.auth(login.rp.client_id, issuer)}
        return client.post(TOKEN, data=data, headers={"DPoP": login.dpop_key.proof("POST", issuer + TOKEN)})

    first = refresh_once()
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["refresh_token"] == refresh and first.get_json()["token_type"] == "DPoP"
    # The answer was lost: the client retries with the same token, and keeps its grant.
    second = refresh_once()
    assert second.status_code == 200, second.get_json()
    assert verified(client, second.get_json()["access_token"])["cnf"] == {"jkt": login.dpop_key.jkt}
    # Without a proof it is refused; without the client's authentication too.
    data = {"grant_type": "refresh_token", "refresh_token": refresh, **login.keys.auth(login.rp.client_id, issuer)}
    assert token_error(client.post(TOKEN, data=data)) == "invalid_dpop_proof"
    data = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": login.rp.client_id}
    headers = {"DPoP": login.dpop_key.proof("POST", issuer + TOKEN)}
    assert token_error(client.post(TOKEN, data=data, headers=headers)) == "invalid_client"


def test_a_revoked_fapi_refresh_token_stops_working(app, client, issuer, user):
    login = fapi_login(app, client, issuer, user)
    refresh = login.tokens["refresh_token"]
    auth = login.keys.auth(login.rp.client_id, issuer)
    assert client.post("/token/revoke", data={"token": refresh, **auth}).status_code == 200
    data = {"grant_type": "refresh_token", "refresh_token": refresh, **login.keys.auth(login.rp.client_id, issuer)}
    response = client.post(TOKEN, data=data, headers={"DPoP": login.dpop_key.proof("POST", issuer + TOKEN)})
    assert token_error(response) == "invalid_grant"
