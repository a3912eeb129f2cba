"""DPoP (RFC 9449): tokens bound to a client's key at the token endpoint, proofs checked at userinfo, every
refusal with the RFC's error code; each attack is made over HTTP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey

from idp import clock

from .helpers import Browser, create_test_client, exchange_code, get_code
from .high_assurance import DPoPKey

TOKEN, USERINFO = "/token", "/userinfo"


def dpop_exchange(client: Any, issuer: str, rp: Any, user: Any, key: DPoPKey, **extra: str) -> Any:
    code, verifier, _ = get_code(Browser(client, issuer), rp, user, **extra)
    return _exchange(client, issuer, rp, code, verifier, key)


def _exchange(client: Any, issuer: str, rp: Any, code: str, verifier: str, key: DPoPKey | None) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"DPoP": key.proof("POST", issuer + TOKEN)} if key is not None else {}
    auth = (rp.client_id, rp.client_secret) if rp.client_secret else None
    if auth is None:
        data["client_id"] = rp.client_id
    return client.post(TOKEN, data=data, auth=auth, headers=headers)


def claims_of(client: Any, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "PS256", "ES256"]).claims)


def dpop_userinfo(client: Any, issuer: str, token: str, key: DPoPKey, **proof: Any) -> Any:
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof("GET", issuer + USERINFO, access_token=token, **proof),
    }
    return client.get(USERINFO, headers=headers)


def assert_dpop_refusal(response: Any, error: str) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    challenges = response.headers.getlist("WWW-Authenticate")
    dpop = [c for c in challenges if c.startswith("DPoP ")]
    assert dpop and f'error="{error}"' in dpop[0], challenges
    assert 'algs="' in dpop[0]
    assert "sub" not in (response.get_json(silent=True) or {})


def assert_token_endpoint_error(response: Any, error: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == error, response.get_json()


@pytest.fixture
def bound(app, client, issuer, user, rp_client) -> tuple[dict[str, Any], DPoPKey]:
    key = DPoPKey()
    response = dpop_exchange(client, issuer, rp_client, user, key)
    assert response.status_code == 200, response.get_json()
    return response.get_json(), key


# -- binding at the token endpoint ------------------------------------------------------------------------


def test_a_proof_at_the_token_endpoint_binds_the_access_token(client, issuer, rp_client, bound):
    tokens, key = bound
    assert tokens["token_type"] == "DPoP"
    assert claims_of(client, tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    response = dpop_userinfo(client, issuer, tokens["access_token"], key)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["sub"]
    # Introspection tells the resource server which key (section 6.2).
    answer = client.post(
        "/token/introspect", data={"token": tokens["access_token"]}, auth=(rp_client.client_id, rp_client.client_secret)
    ).get_json()
    assert answer["active"] is True and answer["token_type"] == "DPoP" and answer["cnf"] == {"jkt": key.jkt}


def test_without_a_proof_tokens_stay_bearer(client, issuer, user, rp_client):
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user)
    tokens = exchange_code(client, rp_client, code, verifier).get_json()
    assert tokens["token_type"] == "Bearer"
    assert "cnf" not in claims_of(client, tokens["access_token"])


def test_a_refresh_with_a_proof_binds_the_new_access_token_to_that_key(client, issuer, rp_client, bound):
    tokens, _ = bound
    other = DPoPKey()  # a confidential client's refresh token is not bound: it may move to a new key
    response = client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp_client.client_id, rp_client.client_secret),
        headers={"DPoP": other.proof("POST", issuer + TOKEN)},
    )
    assert response.status_code == 200, response.get_json()
    refreshed = response.get_json()
    assert refreshed["token_type"] == "DPoP"
    assert claims_of(client, refreshed["access_token"])["cnf"] == {"jkt": other.jkt}


# -- the proof's checks (section 4.3), at the token endpoint ---------------------------------------------------


@pytest.mark.parametrize(
    "defect",
    ["htm", "htu", "too-old", "future", "typ", "no-jti", "private-jwk", "bad-signature", "hs256", "two-headers"],
)
def test_a_bad_proof_at_the_token_endpoint_is_invalid_dpop_proof(client, issuer, user, rp_client, defect):
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user)
    key = DPoPKey()
    url = issuer + TOKEN
    proofs = {
        "htm": lambda: key.proof("GET", url),
        "htu": lambda: key.proof("POST", issuer + "/userinfo"),
        "too-old": lambda: key.proof("POST", url, iat=clock.timestamp() - 120),
        "future": lambda: key.proof("POST", url, iat=clock.timestamp() + 120),
        "typ": lambda: key.proof("POST", url, typ="JWT"),
        "no-jti": lambda: key.proof("POST", url, omit=("jti",)),
        "private-jwk": lambda: key.proof("POST", url, jwk=key.key.as_dict(private=True)),
        "bad-signature": lambda: key.proof("POST", url, jwk=DPoPKey().jwk),
        "hs256": lambda: jwt.encode(
            {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}},
            {"jti": "x", "htm": "POST", "htu": url, "iat": clock.timestamp()},
            OctKey.import_key("a shared secret of more than 112 bits"),
            algorithms=["HS256"],
        ),
    }
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp_client.redirect_uri}
    data["code_verifier"] = verifier
    if defect == "two-headers":
        headers = [("DPoP", key.proof("POST", url)), ("DPoP", key.proof("POST", url))]
    else:
        headers = [("DPoP", proofs[defect]())]
    response = client.post(TOKEN, data=data, auth=(rp_client.client_id, rp_client.client_secret), headers=headers)
    assert_token_endpoint_error(response, "invalid_dpop_proof")
    # The code was not spent by the refused request: with a good proof it still works.
    assert _exchange(client, issuer, rp_client, code, verifier, DPoPKey()).status_code == 200


def test_a_replayed_proof_at_the_token_endpoint_is_refused(app, client, issuer, user, rp_client, bound):
    tokens, key = bound
    proof = key.proof("POST", issuer + TOKEN)
    auth = (rp_client.client_id, rp_client.client_secret)
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    first = client.post(TOKEN, data=data, auth=auth, headers={"DPoP": proof})
    assert first.status_code == 200, first.get_json()
    data["refresh_token"] = first.get_json()["refresh_token"]
    assert_token_endpoint_error(client.post(TOKEN, data=data, auth=auth, headers={"DPoP": proof}), "invalid_dpop_proof")


# -- at userinfo (section 7) ---------------------------------------------------------------------------------


def test_a_bound_token_sent_as_bearer_is_refused(client, bound):
    tokens, _ = bound
    response = client.get(USERINFO, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge
    assert "sub" not in (response.get_json(silent=True) or {})
    # Nor in a form body (RFC 6750 section 2.2).
    response = client.post(USERINFO, data={"access_token": tokens["access_token"]})
    assert response.status_code == 401 and "sub" not in (response.get_json(silent=True) or {})


def test_a_bearer_token_sent_with_the_dpop_scheme_is_refused(client, issuer, user, rp_client):
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user)
    token = exchange_code(client, rp_client, code, verifier).get_json()["access_token"]
    assert_dpop_refusal(dpop_userinfo(client, issuer, token, DPoPKey()), "invalid_token")


@pytest.mark.parametrize("defect", ["htm", "htu", "ath", "too-old", "no-proof", "another-token"])
def test_a_bad_proof_at_userinfo_is_invalid_dpop_proof(client, issuer, bound, defect):
    tokens, key = bound
    token = tokens["access_token"]
    url = issuer + USERINFO
    proofs = {
        "htm": lambda: key.proof("POST", url, access_token=token),
        "htu": lambda: key.proof("GET", issuer + TOKEN, access_token=token),
        "ath": lambda: key.proof("GET", url),
        "too-old": lambda: key.proof("GET", url, access_token=token, iat=clock.timestamp() - 300),
        "another-token": lambda: key.proof("GET", url, access_token=token + "x"),
    }
    headers = {"Authorization": f"DPoP {token}"}
    if defect != "no-proof":
        headers["DPoP"] = proofs[defect]()
    assert_dpop_refusal(client.get(USERINFO, headers=headers), "invalid_dpop_proof")


def test_a_proof_signed_by_another_key_is_refused(client, issuer, bound):
    tokens, _ = bound
    thief = DPoPKey()  # someone who copied the token, proving a key of their own
    response = dpop_userinfo(client, issuer, tokens["access_token"], thief)
    assert_dpop_refusal(response, "invalid_token")
    assert "DPoP key binding" in response.headers["WWW-Authenticate"]


def test_a_replayed_proof_at_userinfo_is_refused(client, issuer, bound):
    tokens, key = bound
    token = tokens["access_token"]
    headers = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", issuer + USERINFO, access_token=token)}
    assert client.get(USERINFO, headers=headers).status_code == 200
    assert_dpop_refusal(client.get(USERINFO, headers=headers), "invalid_dpop_proof")


def test_a_proof_replayed_in_parallel_works_once(app, issuer, bound):
    tokens, key = bound
    token = tokens["access_token"]
    headers = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", issuer + USERINFO, access_token=token)}
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        browser = app.test_client()
        barrier.wait()
        statuses.append(browser.get(USERINFO, headers=headers).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [401] * 7


def test_a_proof_works_once_across_instances(backend, app_with, user):
    """Two instances sharing Redis: a proof spent at one is refused at the other."""
    if backend.name != "postgres":
        pytest.skip("the in-process store is one process's: instances share Redis")
    from .conftest import free_port

    port = free_port()
    settings = {"server": {"issuer": f"http://127.0.0.1:{port}", "port": port}}
    first, second = app_with(**settings), app_with(**settings)
    issuer = settings["server"]["issuer"]
    rp = create_test_client(first)
    from .helpers import create_test_user

    person = create_test_user(first, national_code="0012345679")
    key = DPoPKey()
    response = dpop_exchange(first.test_client(), issuer, rp, person, key)
    token = response.get_json()["access_token"]
    headers = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", issuer + USERINFO, access_token=token)}
    assert first.test_client().get(USERINFO, headers=headers).status_code == 200
    assert_dpop_refusal(second.test_client().get(USERINFO, headers=headers), "invalid_dpop_proof")


def test_no_token_at_all_offers_both_schemes(client):
    response = client.get(USERINFO)
    assert response.status_code == 401
    challenges = response.headers.getlist("WWW-Authenticate")
    assert any(c.startswith("Bearer") for c in challenges)
    assert any(c.startswith("DPoP ") and "algs=" in c and "error=" not in c for c in challenges)


# -- clients registered --dpop-bound -------------------------------------------------------------------------


def test_a_dpop_bound_client_must_send_a_proof(app, client, issuer, user):
    rp = create_test_client(app, dpop_bound=True)
    code, verifier, _ = get_code(Browser(client, issuer), rp, user)
    assert_token_endpoint_error(exchange_code(client, rp, code, verifier), "invalid_dpop_proof")
    # The refused request did not spend the code.
    assert _exchange(client, issuer, rp, code, verifier, DPoPKey()).get_json()["token_type"] == "DPoP"


# -- a public client's refresh tokens (section 5) --------------------------------------------------------------


def test_a_public_clients_refresh_token_is_bound_to_its_key(app, client, issuer, user):
    rp = create_test_client(app, token_endpoint_auth_method="none")
    key = DPoPKey()
    tokens = dpop_exchange(client, issuer, rp, user, key).get_json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": rp.client_id}
    stolen_key = DPoPKey()
    response = client.post(TOKEN, data=refresh, headers={"DPoP": stolen_key.proof("POST", issuer + TOKEN)})
    assert_token_endpoint_error(response, "invalid_grant")
    assert_token_endpoint_error(client.post(TOKEN, data=refresh), "invalid_dpop_proof")
    # Neither attempt spent the token: its owner still refreshes with it.
    response = client.post(TOKEN, data=refresh, headers={"DPoP": key.proof("POST", issuer + TOKEN)})
    assert response.status_code == 200, response.get_json()
    assert claims_of(client, response.get_json()["access_token"])["cnf"] == {"jkt": key.jkt}


# -- binding the code with dpop_jkt (section 10) -----------------------------------------------------------------


def test_a_code_asked_for_with_dpop_jkt_needs_a_proof_of_that_key(client, issuer, user, rp_client):
    key = DPoPKey()
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user, dpop_jkt=key.jkt)
    assert_token_endpoint_error(_exchange(client, issuer, rp_client, code, verifier, DPoPKey()), "invalid_grant")
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user, dpop_jkt=key.jkt)
    assert_token_endpoint_error(_exchange(client, issuer, rp_client, code, verifier, None), "invalid_grant")
    code, verifier, _ = get_code(Browser(client, issuer), rp_client, user, dpop_jkt=key.jkt)
    assert _exchange(client, issuer, rp_client, code, verifier, key).status_code == 200


def test_a_malformed_dpop_jkt_is_invalid_request(client, issuer, user, rp_client):
    from .helpers import authorization_params, pkce_pair, query_of

    browser = Browser(client, issuer)
    response = browser.authorize(authorization_params(rp_client, pkce_pair()[1], dpop_jkt="not a thumbprint"))
    assert response.status_code == 302
    assert query_of(response.location)["error"] == "invalid_request"


# -- server-provided nonces (section 8) ---------------------------------------------------------------------------


def test_nonces_when_required(app_with, backend):
    app = app_with(oauth={"dpop_require_nonce": True})
    from .helpers import create_test_user

    client, issuer = app.test_client(), app.extensions["idp"].issuer
    rp, person = create_test_client(app), create_test_user(app)
    key = DPoPKey()
    code, verifier, _ = get_code(Browser(client, issuer), rp, person)
    refused = _exchange(client, issuer, rp, code, verifier, key)
    assert_token_endpoint_error(refused, "use_dpop_nonce")
    nonce = refused.headers["DPoP-Nonce"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"DPoP": key.proof("POST", issuer + TOKEN, nonce="not-" + nonce)}
    assert_token_endpoint_error(
        client.post(TOKEN, data=data, auth=(rp.client_id, rp.client_secret), headers=headers), "use_dpop_nonce"
    )
    headers = {"DPoP": key.proof("POST", issuer + TOKEN, nonce=nonce)}
    response = client.post(TOKEN, data=data, auth=(rp.client_id, rp.client_secret), headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.headers["DPoP-Nonce"]
    token = response.get_json()["access_token"]

    refused = dpop_userinfo(client, issuer, token, key)
    assert_dpop_refusal(refused, "use_dpop_nonce")
    assert dpop_userinfo(client, issuer, token, key, nonce=refused.headers["DPoP-Nonce"]).status_code == 200
    # A nonce lives one to two proof lifetimes.
    clock.advance(2 * app.extensions["idp"].config.oauth.dpop_proof_max_age + 1)
    assert_dpop_refusal(dpop_userinfo(client, issuer, token, key, nonce=nonce, iat=clock.timestamp()), "use_dpop_nonce")
