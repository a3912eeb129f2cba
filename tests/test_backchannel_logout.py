"""OpenID Connect Back-Channel Logout 1.0: ending a provider session tells every relying party that got
tokens in it, with a signed logout token, so "log out from one website" logs you out of the others."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug.wrappers import Request, Response

from idp.store.clients import InvalidRegistration, Registration, validate_registration

from .helpers import (
    POST_LOGOUT_URI,
    Browser,
    create_test_client,
    exchange_code,
    find_form,
    get_code,
)
from .test_registry import FakeServer, fake_server  # noqa: F401 - the fixture is used by name

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class LogoutReceiver:
    """A relying party's back-channel logout endpoint: records every logout token it gets."""

    def __init__(self, status: int = 200) -> None:
        self.tokens: list[str] = []
        self.status = status

    def __call__(self, request: Request) -> Response:
        form = parse_qs(request.get_data(as_text=True))
        self.tokens.extend(form.get("logout_token", []))
        return Response("", status=self.status)


def _decode(client: Any, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jwks = KeySet.import_key_set(client.get("/jwks.json").get_json())
    decoded = jwt.decode(token, jwks, algorithms=["RS256", "ES256"])
    return dict(decoded.header), dict(decoded.claims)


def _id_token(browser: Browser, client: Any, rp: Any, user: Any) -> dict[str, Any]:
    code, verifier, _ = get_code(browser, rp, user)
    body = exchange_code(client, rp, code, verifier).get_json()
    return {"raw": body["id_token"], "claims": _decode(client, body["id_token"])[1], "refresh": body["refresh_token"]}


@pytest.fixture
def receivers(fake_server):  # noqa: F811 - the fixture from test_registry
    made: list[tuple[LogoutReceiver, FakeServer]] = []

    def start(status: int = 200) -> tuple[LogoutReceiver, str]:
        receiver = LogoutReceiver(status)
        server = fake_server(receiver)
        made.append((receiver, server))
        return receiver, server.url + "/backchannel-logout"

    return start


def test_rp_initiated_logout_notifies_every_client_of_the_session(app, client, issuer, user, receivers):
    first_receiver, first_uri = receivers()
    second_receiver, second_uri = receivers()
    carmaker = create_test_client(app, name="Carmaker", backchannel_logout_uri=first_uri)
    registry = create_test_client(app, name="Device registry", backchannel_logout_uri=second_uri)
    quiet = create_test_client(app, name="No back channel")
    browser = Browser(client, issuer)
    first = _id_token(browser, client, carmaker, user)
    second = _id_token(browser, client, registry, user)  # single sign-on: the same provider session
    _id_token(browser, client, quiet, user)
    assert first["claims"]["sid"] == second["claims"]["sid"]

    response = browser.get(f"/logout?id_token_hint={first['raw']}&post_logout_redirect_uri={POST_LOGOUT_URI}&state=s")
    assert response.status_code == 302

    for receiver, rp, token in ((first_receiver, carmaker, first), (second_receiver, registry, second)):
        assert len(receiver.tokens) == 1
        header, claims = _decode(client, receiver.tokens[0])
        assert header["typ"] == "logout+jwt"
        assert claims["iss"] == issuer
        assert claims["aud"] == rp.client_id
        assert claims["sub"] == token["claims"]["sub"]  # the pairwise sub that client knows
        assert claims["sid"] == token["claims"]["sid"]
        assert claims["events"] == {EVENT: {}}
        assert "nonce" not in claims  # Back-Channel Logout 2.4: a logout token must not hold a nonce
        assert claims["exp"] > claims["iat"]
    assert first_receiver.tokens[0] != second_receiver.tokens[0]


def test_logout_at_the_provider_still_works_when_a_relying_party_is_down(app, client, issuer, user, receivers):
    _receiver, uri = receivers(status=500)
    rp = create_test_client(app, backchannel_logout_uri="http://127.0.0.1:1/backchannel-logout")
    other = create_test_client(app, name="Failing", backchannel_logout_uri=uri)
    browser = Browser(client, issuer)
    token = _id_token(browser, client, rp, user)
    _id_token(browser, client, other, user)
    response = browser.get(f"/logout?id_token_hint={token['raw']}")
    assert response.status_code == 200
    assert client.get("/").status_code == 302  # logged out at the provider
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh"]},
        auth=(rp.client_id, rp.client_secret),
    )
    assert refreshed.get_json()["error"] == "invalid_grant"


def test_logging_out_everywhere_notifies_for_every_session(app, issuer, user, receivers):
    receiver, uri = receivers()
    rp = create_test_client(app, backchannel_logout_uri=uri)
    phone, laptop = Browser(app.test_client(), issuer), Browser(app.test_client(), issuer)
    sids = {_id_token(b, b.client, rp, user)["claims"]["sid"] for b in (phone, laptop)}
    assert len(sids) == 2
    page = laptop.get("/account/sessions")
    form = find_form(page.get_data(as_text=True), action_contains="/end-all")
    laptop.post(form.action, form.fields)
    notified = {_decode(laptop.client, token)[1]["sid"] for token in receiver.tokens}
    assert notified == sids


def test_a_new_login_in_the_same_browser_ends_the_old_session_and_says_so(app, client, issuer, user, receivers):
    receiver, uri = receivers()
    rp = create_test_client(app, backchannel_logout_uri=uri)
    browser = Browser(client, issuer)
    first = _id_token(browser, client, rp, user)
    code, verifier, _ = get_code(browser, rp, user, prompt="login")  # logs in again in this browser
    exchange_code(client, rp, code, verifier)
    assert [_decode(client, t)[1]["sid"] for t in receiver.tokens] == [first["claims"]["sid"]]


@pytest.mark.parametrize(
    "uri",
    ["http://rp.example/logout", "https://rp.example/logout#x", "not a url"],
)
def test_backchannel_logout_uri_is_checked_at_registration(uri):
    with pytest.raises(InvalidRegistration) as raised:
        validate_registration(
            Registration(name="x", redirect_uris=["https://rp.example/cb"], backchannel_logout_uri=uri)
        )
    assert raised.value.field == "backchannel-logout-uri"


def test_discovery_advertises_backchannel_logout(client):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
