"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at GET/POST /logout, and the account page's
logout button."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from idp import clock
from idp.extensions import db
from idp.store.models import AuditEvent

from .helpers import (
    POST_LOGOUT_URI,
    Browser,
    ClientInfo,
    authorization_params,
    code_flow_tokens,
    create_test_client,
    create_test_user,
    find_form,
    pkce_pair,
    valid_national_code,
)

COOKIE = "hoviyat_session"


def is_logged_in(client) -> bool:
    response = client.get("/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302
    assert "/login" in response.location
    return False


def shows_login_form(browser: Browser, rp: ClientInfo) -> bool:
    _, challenge = pkce_pair()
    page = browser.authorize(authorization_params(rp, challenge))
    return page.status_code == 200 and b'name="password"' in page.data


def refresh_status(client, rp: ClientInfo, refresh_token: str) -> int:
    return client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(rp.client_id, rp.client_secret),
    ).status_code


def logout(client, method: str = "GET", **params: str):
    if method == "GET":
        return client.get("/logout?" + urlencode(params))
    return client.post("/logout", data=params)


def assert_refused_without_redirect(response) -> None:
    assert response.status_code == 400, response.status_code
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


@pytest.fixture
def browser(client, issuer) -> Browser:
    return Browser(client, issuer)


@pytest.fixture
def tokens(app, browser, user, rp_client) -> dict[str, Any]:
    signed_in = code_flow_tokens(browser, rp_client, user)
    assert is_logged_in(browser.client)
    return signed_in


# -- with a valid id_token_hint -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_hint_and_registered_uri_redirect_with_state(app, client, browser, user, rp_client, tokens, method):
    other = create_test_client(app, name="Other Portal", redirect_uris=["https://other.example/cb"])
    other_tokens = code_flow_tokens(browser, other, user)  # same provider session, another client
    response = logout(
        client,
        method,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=POST_LOGOUT_URI,
        state="af0ifjsldkj",
    )
    assert response.status_code == 302
    assert response.location == POST_LOGOUT_URI + "?state=af0ifjsldkj"
    # The provider session is over.
    assert not is_logged_in(client)
    assert shows_login_form(browser, rp_client)
    # The refresh tokens issued under that session are revoked, with their access tokens.
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 400
    assert refresh_status(client, other, other_tokens["refresh_token"]) == 400
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401


def test_hint_without_state_redirects_to_exact_uri(app, client, rp_client, tokens):
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI)
    assert response.status_code == 302
    assert response.location == POST_LOGOUT_URI
    assert not is_logged_in(client)


def test_hint_without_return_uri_shows_logged_out_page(app, client, rp_client, tokens):
    response = logout(client, id_token_hint=tokens["id_token"], state="s1")
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert not is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 400


def test_expired_id_token_is_accepted_as_hint(app, client, rp_client, tokens):
    clock.advance(3600 + 60)  # id_token_ttl is 3600 s; the session (idle 2 h) is still alive
    assert is_logged_in(client)
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI, state="late")
    assert response.status_code == 302
    assert response.location == POST_LOGOUT_URI + "?state=late"
    assert not is_logged_in(client)


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/logged-out",
        POST_LOGOUT_URI + "/",
        POST_LOGOUT_URI + "?next=https://evil.example",
        POST_LOGOUT_URI + "#x",
        "http://rp.example/logged-out",
        "https://rp.example:8443/logged-out",
        "https://rp.example/callback",  # a redirect_uri, not a post-logout one
    ],
)
def test_unregistered_return_uri_is_refused(app, client, rp_client, tokens, uri):
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=uri, state="s")
    assert_refused_without_redirect(response)
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def _foreign_id_token(client, id_token: str) -> str:
    """The same claims and kid as ``id_token``, signed by a key that is not the provider's."""
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
    foreign = RSAKey.generate_key(2048, private=True)
    header = {"alg": "RS256", "kid": decoded.header.get("kid"), "typ": "JWT"}
    return jwt.encode(header, dict(decoded.claims), foreign, algorithms=["RS256"])


@pytest.mark.parametrize("kind", ["garbage", "foreign_key", "access_token", "tampered", "unsigned"])
def test_invalid_hint_is_refused(app, client, rp_client, tokens, kind):
    hint = {
        "garbage": "not.a.token",
        "access_token": tokens["access_token"],
    }.get(kind, tokens["id_token"])
    if kind == "foreign_key":
        hint = _foreign_id_token(client, tokens["id_token"])
    elif kind == "tampered":
        header, payload, signature = hint.split(".")
        hint = f"{header}.{payload}.{signature[:-4]}AAAA"
    elif kind == "unsigned":
        header, payload, _ = hint.split(".")
        hint = f"eyJhbGciOiJub25lIn0.{payload}."
    response = logout(client, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_URI, state="s")
    assert_refused_without_redirect(response)
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def test_client_id_must_match_hint_audience(app, client, rp_client, tokens):
    other = create_test_client(
        app,
        name="Other Portal",
        redirect_uris=["https://other.example/cb"],
        post_logout_redirect_uris=["https://other.example/bye"],
    )
    response = logout(
        client,
        id_token_hint=tokens["id_token"],
        client_id=other.client_id,
        post_logout_redirect_uri="https://other.example/bye",
        state="s",
    )
    assert_refused_without_redirect(response)
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def test_client_id_matching_hint_audience_is_accepted(app, client, rp_client, tokens):
    response = logout(
        client,
        id_token_hint=tokens["id_token"],
        client_id=rp_client.client_id,
        post_logout_redirect_uri=POST_LOGOUT_URI,
        state="s",
    )
    assert response.status_code == 302
    assert response.location == POST_LOGOUT_URI + "?state=s"
    assert not is_logged_in(client)


# -- a hint that names another login: the user is asked (RP-Initiated Logout sections 2 and 4) -------------


def _other_user_tokens(app, rp_client) -> dict[str, Any]:
    """An attacker's own account, signed in at the same relying party from the attacker's own browser."""
    attacker = create_test_user(app, national_code=valid_national_code("001234568"), mobile="+989121234568")
    return code_flow_tokens(Browser(app.test_client(), app.extensions["idp"].issuer), rp_client, attacker)


def assert_asked_and_nothing_ended(response, client, rp_client, tokens) -> None:
    assert response.status_code == 200
    assert "Location" not in response.headers
    form = find_form(response.get_data(as_text=True), action_contains="/logout", field_name="csrf_token")
    assert ("confirm", "yes") in form.buttons
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def logout_events(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "logout")))


def test_another_users_id_token_as_hint_does_not_log_the_victim_out(app, client, rp_client, tokens):
    """The attack: a link to /logout with the attacker's own ID token skipped the confirmation, ended the victim's
    session, revoked the victim's grants and sent back-channel logouts."""
    attacker_tokens = _other_user_tokens(app, rp_client)
    response = logout(
        client, id_token_hint=attacker_tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI, state="s"
    )
    assert_asked_and_nothing_ended(response, client, rp_client, tokens)
    assert logout_events(app) == []  # no session ended, so no back-channel logout sent either
    # The attacker's own session, in the attacker's browser, is not touched either.
    assert refresh_status(client, rp_client, attacker_tokens["refresh_token"]) == 200


def test_an_id_token_of_an_earlier_login_asks_before_ending_this_one(app, client, browser, user, rp_client, tokens):
    """The user's own ID token, but of a login that has ended since: this login is not the one it names."""
    logout(client, id_token_hint=tokens["id_token"])
    newer = code_flow_tokens(browser, rp_client, user)
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI)
    assert_asked_and_nothing_ended(response, client, rp_client, newer)
    # Confirming ends it and returns to the registered address.
    confirmed = browser.submit(response, {"confirm": "yes"}, action_contains="/logout")
    assert confirmed.status_code == 302 and confirmed.location == POST_LOGOUT_URI
    assert not is_logged_in(client)


def test_a_hint_never_ends_a_login_of_another_browser(app, rp_client, tokens, client):
    """A browser with no login of its own, sent to /logout with the victim's ID token, ends nothing."""
    elsewhere = app.test_client()
    response = logout(elsewhere, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI)
    # Nothing to end in that browser; the registered return is harmless and still honoured.
    assert response.status_code == 302 and response.location == POST_LOGOUT_URI
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


# -- without a hint: the user confirms ---------------------------------------------------------------------


def test_without_hint_asks_for_confirmation(app, client, rp_client, tokens):
    response = logout(client, client_id=rp_client.client_id, post_logout_redirect_uri=POST_LOGOUT_URI, state="s")
    assert response.status_code == 200
    assert "Location" not in response.headers
    form = find_form(response.get_data(as_text=True), action_contains="/logout", field_name="csrf_token")
    assert form.method == "post"
    assert form.fields["csrf_token"]
    assert ("confirm", "yes") in form.buttons
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def test_confirming_logs_out_and_returns_with_state(app, client, browser, rp_client, tokens):
    page = logout(client, client_id=rp_client.client_id, post_logout_redirect_uri=POST_LOGOUT_URI, state="xyz")
    response = browser.submit(page, {"confirm": "yes"}, action_contains="/logout")
    assert response.status_code == 302
    assert response.location == POST_LOGOUT_URI + "?state=xyz"
    assert not is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 400


def test_confirming_without_return_uri_shows_logged_out_page(app, client, browser, rp_client, tokens):
    page = logout(client)
    assert page.status_code == 200
    response = browser.submit(page, {"confirm": "yes"}, action_contains="/logout")
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert not is_logged_in(client)


def test_confirming_with_unregistered_return_uri_does_not_redirect(app, client, browser, rp_client, tokens):
    page = logout(client, client_id=rp_client.client_id, post_logout_redirect_uri="https://evil.example/bye", state="s")
    assert "Location" not in page.headers
    response = browser.submit(page, {"confirm": "yes"}, action_contains="/logout")
    assert "Location" not in response.headers
    assert response.status_code in (200, 400)


def test_forged_confirmation_with_unregistered_return_uri_does_not_redirect(app, client, browser, rp_client, tokens):
    # The confirmation form is genuine but the attacker changes where to return.
    page = logout(client, client_id=rp_client.client_id, post_logout_redirect_uri=POST_LOGOUT_URI, state="s")
    response = browser.submit(
        page, {"confirm": "yes", "post_logout_redirect_uri": "https://evil.example/bye"}, action_contains="/logout"
    )
    assert "Location" not in response.headers


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
def test_confirmation_without_valid_csrf_is_refused(app, client, rp_client, tokens, csrf):
    data = {"confirm": "yes", "client_id": rp_client.client_id, "post_logout_redirect_uri": POST_LOGOUT_URI}
    if csrf is not None:
        data["csrf_token"] = csrf
    response = client.post("/logout", data=data)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 200


def test_account_page_logout_button(app, client, browser, rp_client, tokens):
    home = client.get("/")
    assert home.status_code == 200
    form = find_form(home.get_data(as_text=True), action_contains="/logout", field_name="csrf_token")
    assert form.method == "post"
    assert ("confirm", "yes") in form.buttons
    response = browser.submit(home, {"confirm": "yes"}, action_contains="/logout")
    assert response.status_code == 200
    assert not is_logged_in(client)
    assert refresh_status(client, rp_client, tokens["refresh_token"]) == 400


def test_logout_when_not_logged_in_is_harmless(app, client):
    response = logout(client)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert not is_logged_in(client)


# -- the session cookie ------------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["hint", "confirmation"])
def test_session_cookie_is_rotated_at_logout(app, client, browser, rp_client, tokens, way):
    old = client.get_cookie(COOKIE)
    assert old is not None and old.value
    # Control: the cookie value alone, in another browser, does carry the login before logout.
    before = app.test_client()
    before.set_cookie(COOKIE, old.value)
    assert is_logged_in(before)
    if way == "hint":
        response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_URI)
        assert response.status_code == 302
    else:
        browser.submit(client.get("/"), {"confirm": "yes"}, action_contains="/logout")
    new = client.get_cookie(COOKIE)
    assert new is None or new.value != old.value
    # The old cookie value, replayed in another browser, gives no logged-in session.
    replay = app.test_client()
    replay.set_cookie(COOKIE, old.value)
    assert not is_logged_in(replay)
