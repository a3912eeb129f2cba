"""The refresh token grant (RFC 6749 section 6, RFC 9700 section 4.14, OpenID Connect Core section 12).

Refresh tokens rotate on every use; a rotated one presented again revokes its whole family; a family dies
after 14 idle days or 30 days in all; scope can only narrow; the refreshed ID token describes the original
login; logging out at the provider ends the session's refresh tokens.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from authlib.oidc.core.util import create_half_hash
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.extensions import db
from idp.store import grants as grant_store
from idp.store.models import User

from .helpers import (
    POST_LOGOUT_URI,
    Browser,
    ClientInfo,
    UserInfo,
    create_test_client,
    exchange_code,
    get_code,
    grant_id_of,
    refresh_grant,
    statements_run,
)

DAY = 24 * 3600


# -- helpers ---------------------------------------------------------------------------------------------


def tokens_for(client: FlaskClient, issuer: str, rp: ClientInfo, user: UserInfo, **extra: str) -> dict[str, Any]:
    """Log in (or reuse the browser's login), consent, and exchange the code; returns the token response."""
    code, verifier, _ = get_code(Browser(client, issuer), rp, user, **extra)
    response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()
    assert token["refresh_token"]
    return token


def refreshed(client: FlaskClient, rp: ClientInfo, refresh_token: str, **extra: str) -> dict[str, Any]:
    response = refresh_grant(client, rp, refresh_token, **extra)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def assert_refused(response: Any, error: str = "invalid_grant") -> None:
    body = response.get_json(silent=True) or {}
    assert response.status_code in ((400, 401) if error == "invalid_client" else (400,)), (
        response.status_code,
        response.get_data(as_text=True)[:500],
    )
    assert body.get("error") == error, body
    assert "access_token" not in body and "refresh_token" not in body
    assert response.headers.get("Cache-Control") == "no-store"


def userinfo(client: FlaskClient, access_token: str) -> Any:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def active(client: FlaskClient, rp: ClientInfo, token: str) -> bool:
    response = client.post("/token/introspect", data={"token": token}, auth=(rp.client_id, rp.client_secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["active"]


def decode(client: FlaskClient, token: str) -> jwt.Token:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return jwt.decode(token, keys, algorithms=["RS256", "ES256"])


# -- rotation and replay ------------------------------------------------------------------------------------


def test_each_refresh_rotates_both_tokens(app, client, issuer, user, rp_client):
    first = tokens_for(client, issuer, rp_client, user)
    response = refresh_grant(client, rp_client, first["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    second = response.get_json()
    third = refreshed(client, rp_client, second["refresh_token"])

    refresh_tokens = {first["refresh_token"], second["refresh_token"], third["refresh_token"]}
    access_tokens = {first["access_token"], second["access_token"], third["access_token"]}
    assert len(refresh_tokens) == 3 and len(access_tokens) == 3
    for token in (second, third):
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] > 0
        assert userinfo(client, token["access_token"]).status_code == 200

    # The used tokens are spent; the newest is the only live one.
    assert active(client, rp_client, first["refresh_token"]) is False
    assert active(client, rp_client, second["refresh_token"]) is False
    assert active(client, rp_client, third["refresh_token"]) is True
    assert_refused(refresh_grant(client, rp_client, second["refresh_token"]))


def test_replayed_refresh_token_revokes_the_whole_family(app, client, issuer, user, rp_client):
    first = tokens_for(client, issuer, rp_client, user)
    second = refreshed(client, rp_client, first["refresh_token"])
    third = refreshed(client, rp_client, second["refresh_token"])
    # an unrelated family of the same user and client (a second login in another tab)
    other = tokens_for(client, issuer, rp_client, user)
    assert userinfo(client, third["access_token"]).status_code == 200

    assert_refused(refresh_grant(client, rp_client, first["refresh_token"]))  # the stolen, already-rotated token

    # The legitimate client's newest refresh token and every access token of the family are dead too.
    assert_refused(refresh_grant(client, rp_client, third["refresh_token"]))
    for token in (first, second, third):
        assert userinfo(client, token["access_token"]).status_code == 401
        assert active(client, rp_client, token["access_token"]) is False
    assert active(client, rp_client, third["refresh_token"]) is False
    # ... but not another family.
    assert userinfo(client, other["access_token"]).status_code == 200
    assert refresh_grant(client, rp_client, other["refresh_token"]).status_code == 200


def test_another_clients_refresh_token_is_refused_and_keeps_working(app, client, issuer, user, rp_client):
    intruder = create_test_client(app)
    token = tokens_for(client, issuer, rp_client, user)

    assert_refused(refresh_grant(client, intruder, token["refresh_token"]))
    public_intruder = create_test_client(app, token_endpoint_auth_method="none")
    assert_refused(refresh_grant(client, public_intruder, token["refresh_token"]))

    assert userinfo(client, token["access_token"]).status_code == 200
    assert refresh_grant(client, rp_client, token["refresh_token"]).status_code == 200


def test_failed_client_authentication_does_not_spend_the_refresh_token(app, client, issuer, user, rp_client):
    token = tokens_for(client, issuer, rp_client, user)
    data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    assert_refused(client.post("/token", data=data, auth=(rp_client.client_id, "wrong")), "invalid_client")
    assert_refused(client.post("/token", data={**data, "client_id": rp_client.client_id}), "invalid_client")
    assert refresh_grant(client, rp_client, token["refresh_token"]).status_code == 200


def test_public_client_refreshes_with_its_client_id(app, client, issuer, user):
    public = create_test_client(app, token_endpoint_auth_method="none")
    first = tokens_for(client, issuer, public, user)
    second = refreshed(client, public, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert userinfo(client, second["access_token"]).status_code == 200
    assert_refused(refresh_grant(client, public, first["refresh_token"]))
    assert_refused(refresh_grant(client, public, second["refresh_token"]))  # family revoked by the replay


# -- lifetimes ----------------------------------------------------------------------------------------------


def test_family_dies_at_the_absolute_lifetime_even_when_used(app, client, issuer, user, rp_client):
    assert app.extensions["idp"].config.tokens.refresh_token_absolute_ttl == 30 * DAY
    token = tokens_for(client, issuer, rp_client, user)
    # Used every ten days (well inside the 14-day idle limit), the family lives up to day 29 ...
    for days in (10, 10, 9):
        clock.advance(days * DAY)
        token = refreshed(client, rp_client, token["refresh_token"])
    # ... and no further: at day 30 it is over, though the token is only a day old.
    clock.advance(DAY + 60)
    assert_refused(refresh_grant(client, rp_client, token["refresh_token"]))


@pytest.mark.parametrize(("idle", "works"), [(13 * DAY, True), (14 * DAY + 60, False), (29 * DAY, False)])
def test_refresh_token_expires_when_unused_for_14_days(app, client, issuer, user, rp_client, idle, works):
    assert app.extensions["idp"].config.tokens.refresh_token_idle_ttl == 14 * DAY
    token = tokens_for(client, issuer, rp_client, user)
    clock.advance(idle)
    response = refresh_grant(client, rp_client, token["refresh_token"])
    if works:
        assert response.status_code == 200, response.get_data(as_text=True)
    else:
        assert_refused(response)


def test_idle_window_restarts_with_each_rotation(app, client, issuer, user, rp_client):
    token = tokens_for(client, issuer, rp_client, user)
    clock.advance(13 * DAY)
    token = refreshed(client, rp_client, token["refresh_token"])
    clock.advance(13 * DAY)  # 26 days after login, 13 after the last use
    assert refresh_grant(client, rp_client, token["refresh_token"]).status_code == 200


# -- scope ------------------------------------------------------------------------------------------------


def test_refresh_can_narrow_the_scope(app, client, issuer, user, rp_client):
    token = tokens_for(client, issuer, rp_client, user, scope="openid profile phone")
    assert set(token["scope"].split()) == {"openid", "profile", "phone"}
    full_info = userinfo(client, token["access_token"]).get_json()
    assert "name" in full_info and "phone_number" in full_info

    narrow = refreshed(client, rp_client, token["refresh_token"], scope="openid")
    assert narrow["scope"] == "openid"
    assert decode(client, narrow["access_token"]).claims["scope"] == "openid"
    info = userinfo(client, narrow["access_token"]).get_json()
    assert info["sub"] == full_info["sub"]
    assert "name" not in info and "phone_number" not in info

    # Without scope a refresh gets the originally granted scope again (RFC 6749 section 6).
    again = refreshed(client, rp_client, narrow["refresh_token"])
    assert set(again["scope"].split()) == {"openid", "profile", "phone"}


@pytest.mark.parametrize(
    "scope",
    [
        "openid national_id",  # registered for the client, but not granted in this authorization
        "openid profile phone national_id",
        "openid email",  # not registered for the client
        "openid offline_access",
        "devices:read",
        "openid\x00",  # a NUL, which no text column holds
    ],
)
def test_refresh_cannot_widen_the_scope(app, client, issuer, user, rp_client, scope):
    token = tokens_for(client, issuer, rp_client, user, scope="openid profile phone")
    assert_refused(refresh_grant(client, rp_client, token["refresh_token"], scope=scope), "invalid_scope")
    # Refused before anything was written: the token was not spent by the refused request.
    assert refresh_grant(client, rp_client, token["refresh_token"]).status_code == 200
    assert replay_events(app) == 0


@pytest.mark.parametrize("scope", ["  openid   phone ", "phone\topenid", "openid phone openid"])
def test_a_narrowing_scope_is_read_as_scopes_whatever_the_spacing(app, client, issuer, user, rp_client, scope):
    """The scope parameter is read as a list of scopes, whatever the spacing (RFC 6749 section 3.3)."""
    token = tokens_for(client, issuer, rp_client, user, scope="openid profile phone")
    narrow = refreshed(client, rp_client, token["refresh_token"], scope=scope)
    assert set(narrow["scope"].split()) == {"openid", "phone"}
    assert issued_events(app, "refresh_token") == 1 and replay_events(app) == 0


# -- the refreshed ID token ---------------------------------------------------------------------------------


def test_refreshed_id_token_describes_the_original_login(app, client, issuer, user, rp_client):
    token = tokens_for(client, issuer, rp_client, user, nonce="n-0S6_WzA2Mj")
    original = decode(client, token["id_token"]).claims
    assert original["nonce"] == "n-0S6_WzA2Mj"

    clock.advance(5)
    new = refreshed(client, rp_client, token["refresh_token"])
    decoded = decode(client, new["id_token"])
    claims = decoded.claims
    assert claims["iss"] == original["iss"] == issuer
    assert claims["sub"] == original["sub"]
    assert claims["aud"] == original["aud"]
    assert claims["auth_time"] == original["auth_time"]
    assert claims["iat"] >= original["iat"] + 5
    assert claims["exp"] > claims["iat"]
    assert "nonce" not in claims
    assert claims["at_hash"] == create_half_hash(new["access_token"], decoded.header["alg"]).decode("ascii")


def test_refreshed_id_token_carries_the_users_claims_as_they_are_now(app, client, issuer, user, rp_client):
    asked = {"id_token": {"phone_number": None, "given_name": None}}
    token = tokens_for(client, issuer, rp_client, user, claims=json.dumps(asked))
    assert decode(client, token["id_token"]).claims["phone_number"] == user.mobile
    with app.app_context():
        db.session.get(User, user.id).mobile = "+989351112233"  # e.g. a mobile change, made since
        db.session.commit()

    new = refreshed(client, rp_client, token["refresh_token"])
    claims = decode(client, new["id_token"]).claims
    assert claims["phone_number"] == "+989351112233"
    assert claims["given_name"] == "علی"


# -- logout at the provider -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["confirmed-post", "id-token-hint"])
def test_logout_at_the_provider_ends_the_sessions_refresh_tokens(app, client, issuer, user, rp_client, how):
    browser = Browser(client, issuer)
    token = tokens_for(client, issuer, rp_client, user)
    token = {**refreshed(client, rp_client, token["refresh_token"]), "id_token": token["id_token"]}
    assert userinfo(client, token["access_token"]).status_code == 200

    if how == "confirmed-post":
        page = browser.get("/logout")
        assert page.status_code == 200
        done = browser.submit(page, {"confirm": "yes"}, action_contains="/logout")
        assert done.status_code in (200, 302)
    else:
        query = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "bye"}
        done = client.get("/logout", query_string=query)
        assert done.status_code == 302
        assert done.location == POST_LOGOUT_URI + "?state=bye"

    assert_refused(refresh_grant(client, rp_client, token["refresh_token"]))
    assert userinfo(client, token["access_token"]).status_code == 401
    assert active(client, rp_client, token["refresh_token"]) is False


def test_a_refresh_reads_once_and_writes_once_in_one_transaction(app, client, issuer, user, rp_client):
    """Guards the benchmark target "refresh with rotation" (issue 20): a refresh reads the token with its grant and
    user in one statement and, once the whole answer is made, writes the rotation, the new token, the audit row and
    the ledger's record of the new ID token together: on PostgreSQL one statement, and both outside a transaction
    (no BEGIN, and the commit sends nothing); on SQLite four, committed once. Statements, not time: a regression
    here costs every relying party."""
    first = tokens_for(client, issuer, rp_client, user)
    with statements_run(app) as log:
        second = refreshed(client, rp_client, first["refresh_token"])
    assert second["id_token"] and second["refresh_token"] != first["refresh_token"]
    if log.dialect == "postgresql":
        assert log.kinds == ["SELECT", "WITH", "COMMIT"], log.kinds
        assert log.autocommit == [True, True], log.entries
    else:
        assert log.kinds == ["SELECT", "UPDATE", "INSERT", "INSERT", "INSERT", "COMMIT"], log.kinds
    # What the writes wrote: the presented token rotated, its successor live, one token.issued row.
    assert active(client, rp_client, first["refresh_token"]) is False
    assert active(client, rp_client, second["refresh_token"]) is True
    assert issued_events(app, "refresh_token") == 1


def issued_events(app: Any, grant_type: str) -> int:
    from idp.store.audit import recent_events

    with app.app_context():
        events = recent_events(limit=1000, event="token.issued")
        return sum(1 for e in events if e.detail.get("grant_type") == grant_type)


def replay_events(app: Any) -> int:
    from idp.store.audit import recent_events

    with app.app_context():
        return len(recent_events(limit=1000, event="refresh_token.replayed"))


def test_a_second_use_while_the_first_makes_its_answer_is_a_replay(app, client, issuer, user, rp_client, monkeypatch):
    """A second use of a token runs from start to end while the first is making its answer (the token read as
    unrotated by both). Of the two, the one that rotates the token first wins; the other is a replay: refused, the
    family revoked, so the winner's new tokens die too (RFC 9700 section 4.14.2), and only the winner wrote a
    token.issued row."""
    import idp.oidc.id_token as id_token_module

    first = tokens_for(client, issuer, rp_client, user)
    make_id_token = id_token_module.issue_id_token
    answers: list[Any] = []

    def id_token_while_another_use_arrives(**kwargs: Any) -> str:
        if not answers:  # the outer request, making its answer: the other use runs to its end
            answers.append(None)
            answers.append(refresh_grant(app.test_client(), rp_client, first["refresh_token"]))
        return make_id_token(**kwargs)

    monkeypatch.setattr(id_token_module, "issue_id_token", id_token_while_another_use_arrives)
    outer = refresh_grant(client, rp_client, first["refresh_token"])
    monkeypatch.undo()

    winners = [answer for answer in (outer, answers[1]) if answer.status_code == 200]
    assert len(winners) == 1, [outer.get_data(as_text=True), answers[1].get_data(as_text=True)]
    assert_refused(answers[1] if winners[0] is outer else outer)
    assert issued_events(app, "refresh_token") == 1  # the replay wrote no token.issued (nor token)
    assert replay_events(app) == 1
    assert_refused(refresh_grant(client, rp_client, winners[0].get_json()["refresh_token"]))
    assert userinfo(client, winners[0].get_json()["access_token"]).status_code == 401


def test_uses_of_one_token_at_the_same_moment_leave_one_winner_and_revoke_the_family(
    app, issuer, user, rp_client, client
):
    """Four uses of one token sent at once, from four threads: the database lets exactly one rotate it (on
    PostgreSQL the others wait for its row lock, then find it rotated); the others are replays, so the family
    is revoked and the winner's new tokens die too."""
    first = tokens_for(client, issuer, rp_client, user)
    start = threading.Barrier(4)

    def use() -> Any:
        own = app.test_client()
        start.wait()
        return refresh_grant(own, rp_client, first["refresh_token"])

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: use(), range(4)))
    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1, [answer.get_data(as_text=True) for answer in answers]
    for answer in answers:
        if answer is not winners[0]:
            assert_refused(answer)
    assert issued_events(app, "refresh_token") == 1
    assert replay_events(app) == 1
    assert_refused(refresh_grant(client, rp_client, winners[0].get_json()["refresh_token"]))


def test_a_refresh_whose_write_fails_leaves_the_presented_token_usable(
    app, client, issuer, user, rp_client, monkeypatch
):
    """The database fails on the refresh's write: the client gets 503 and no tokens, the presented token is as it
    was, and the retry the 503 invites succeeds."""
    from sqlalchemy.exc import OperationalError

    first = tokens_for(client, issuer, rp_client, user)

    def database_gone(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError(
            "UPDATE refresh_tokens ...", {}, ConnectionError("server closed the connection unexpectedly")
        )

    monkeypatch.setattr(grant_store, "rotate_refresh_token", database_gone)
    failed = refresh_grant(client, rp_client, first["refresh_token"])
    monkeypatch.undo()
    assert failed.status_code == 503, failed.get_data(as_text=True)
    assert failed.get_json()["error"] == "temporarily_unavailable"
    assert "refresh_token" not in failed.get_json()
    assert issued_events(app, "refresh_token") == 0

    retried = refreshed(client, rp_client, first["refresh_token"])
    assert retried["refresh_token"] != first["refresh_token"]
    assert issued_events(app, "refresh_token") == 1 and replay_events(app) == 0


def family_size(app: Any, grant_id: str) -> int:
    from sqlalchemy import func, select

    from idp.store.models import RefreshToken

    with app.app_context():
        return db.session.scalar(select(func.count()).where(RefreshToken.grant_id == grant_id))


def test_a_refresh_whose_answer_fails_leaves_the_presented_token_usable(
    app, client, issuer, user, rp_client, monkeypatch
):
    """Making the answer failed (here the database, gone while the ID token was made): the client gets 503, and
    nothing of the refresh was written - the presented token usable, no successor no one received, no
    token.issued row - so the retry succeeds and is not taken for a replay."""
    from sqlalchemy.exc import OperationalError

    import idp.oidc.id_token as id_token_module

    first = tokens_for(client, issuer, rp_client, user)
    grant_id = grant_id_of(client, first["access_token"])
    assert family_size(app, grant_id) == 1

    def database_gone(**kwargs: Any) -> str:
        raise OperationalError("SELECT ...", {}, ConnectionError("server closed the connection unexpectedly"))

    monkeypatch.setattr(id_token_module, "issue_id_token", database_gone)
    failed = refresh_grant(client, rp_client, first["refresh_token"])
    monkeypatch.undo()
    assert failed.status_code == 503, failed.get_data(as_text=True)
    assert "refresh_token" not in failed.get_json()
    assert issued_events(app, "refresh_token") == 0
    assert family_size(app, grant_id) == 1

    retried = refreshed(client, rp_client, first["refresh_token"])
    assert retried["refresh_token"] != first["refresh_token"]
    assert issued_events(app, "refresh_token") == 1 and replay_events(app) == 0
    assert active(client, rp_client, retried["refresh_token"]) is True
    assert family_size(app, grant_id) == 2


def pooled_connections_in_autocommit(app: Any) -> list[bool]:
    """For each connection idle in the engine's pool, whether it is in autocommit (each taken out once)."""
    from idp.extensions import db

    with app.app_context():
        taken = [db.engine.raw_connection() for _ in range(db.engine.pool.checkedin())]
        try:
            return [bool(getattr(held.driver_connection, "autocommit", False)) for held in taken]
        finally:
            for held in taken:
                held.close()


def test_connections_go_back_to_the_pool_out_of_autocommit(app, client, issuer, user, rp_client):
    """On PostgreSQL introspection and userinfo read outside a transaction (in autocommit); back in the pool, their
    connection must be transactional again, or the next request's writes on it (a refresh, a registration, a code
    exchange) would each commit alone. Also after a refused refresh (a replay)."""
    first = tokens_for(client, issuer, rp_client, user)
    assert active(client, rp_client, first["access_token"]) is True
    assert userinfo(client, first["access_token"]).status_code == 200
    second = refreshed(client, rp_client, first["refresh_token"])
    assert_refused(refresh_grant(client, rp_client, first["refresh_token"]))  # a replay: revokes the family
    assert_refused(refresh_grant(client, rp_client, second["refresh_token"]))
    assert active(client, rp_client, second["refresh_token"]) is False
    states = pooled_connections_in_autocommit(app)
    assert states and not any(states), states
