"""The relying-party integration every example site uses (clients/rp_kit/login.py), with the carmaker as the
host app: the authorization request, the checks on the way back (state, error, iss), tokens kept on the
server, RP-initiated logout, Back-Channel Logout, and single sign-on between two sites.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from flask.sessions import SecureCookieSessionInterface
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from sqlalchemy import select

from clients.carmaker import LoginSession, User
from clients.carmaker import create_app as carmaker_app
from idp.oidc.tokens import sign_jwt

from .helpers import find_form, query_of
from .relying_parties import PersonBrowser, RunningSite, relying_party, start_site  # noqa: F401 - fixture by name
from .test_carmaker import is_logged_in, log_in, site_session

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGGED_OUT = "از حساب خود خارج شدید"
LOGIN_FAILED = "ورود انجام نشد"


@pytest.fixture
def carmaker(relying_party) -> RunningSite:  # noqa: F811
    return relying_party("carmaker", carmaker_app)


@pytest.fixture
def browser(live_server) -> PersonBrowser:
    return PersonBrowser(live_server)


@pytest.fixture
def second_site(app, live_server, tmp_path) -> Iterator[RunningSite]:
    """Another registration of the carmaker, with its own database, as a second website."""
    folder = tmp_path / "second-site"
    folder.mkdir()
    site, server = start_site(app, "carmaker", carmaker_app, folder)
    # Browsers share cookies between ports of one host: give the second site a cookie of its own, as a
    # second site on another host would have.
    site.app.config["SESSION_COOKIE_NAME"] = "second_site_session"
    yield site
    server.shutdown()


def stop_at_callback(browser: PersonBrowser, response: requests.Response, site: RunningSite) -> str:
    """Follow the provider's redirects (allowing on the consent page) up to the redirect back to ``site``;
    returns that callback URL without visiting it."""
    callback = site.base_url + "/auth/callback"
    for _ in range(20):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(callback):
                return location
            response = browser.session.get(location, timeout=15, allow_redirects=False)
        elif 'name="decision"' in response.text:
            form = find_form(response.text, action_contains="/consent")
            response = browser.session.post(
                urljoin(response.url, form.action),
                data={**form.fields, "decision": "allow"},
                timeout=15,
                allow_redirects=False,
            )
        else:
            raise AssertionError(f"stuck at {response.url}: {response.status_code}\n{response.text[:2000]}")
    raise AssertionError("too many redirects")


def callback_url(browser: PersonBrowser, site: RunningSite, user: Any) -> str:
    """Start a login at ``site``, log in and consent at Hoviyat, and stop before going back to the site."""
    page = browser.get(site.base_url + "/auth/login")
    form = find_form(page.text, field_name="password")
    response = browser.session.post(
        urljoin(page.url, form.action),
        data={**form.fields, "national_code": user.national_code, "password": user.password},
        timeout=15,
        allow_redirects=False,
    )
    return stop_at_callback(browser, response, site)


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with these query parameters replaced (``None``: removed)."""
    parts = urlsplit(url)
    query = query_of(url)
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def login_rows(site: RunningSite) -> list[dict[str, Any]]:
    with site_session(site) as session:
        return [
            {"id": r.id, "sub": r.sub, "sid": r.sid, "id_token": r.id_token, "access_token": r.access_token}
            for r in session.scalars(select(LoginSession))
        ]


def user_rows(site: RunningSite) -> list[tuple[str, str | None]]:
    with site_session(site) as session:
        return [(u.sub, u.national_id) for u in session.scalars(select(User))]


def assert_not_logged_in(browser: PersonBrowser, site: RunningSite) -> None:
    assert not is_logged_in(browser, site)
    assert login_rows(site) == []
    assert user_rows(site) == []


def provider_claims(issuer: str, token: str) -> dict[str, Any]:
    """The claims of a token signed by the provider, verified against its JWKS."""
    keys = KeySet.import_key_set(requests.get(issuer + "/jwks.json", timeout=15).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


# -- the authorization request -------------------------------------------------------------------------


def test_authorization_request_is_pushed_with_pkce_state_and_nonce(app, carmaker, browser, live_server):
    """The carmaker is a FAPI 2.0 client: its request goes to the provider directly (PAR), and the browser is
    sent with nothing but client_id and the request_uri it got back."""
    from idp.oidc.pushed_requests import PUSHED_KEY, REQUEST_URI_PREFIX
    from idp.security import sha256_hex

    requests_sent = []
    for _ in range(2):
        response = browser.session.get(carmaker.base_url + "/auth/login", timeout=15, allow_redirects=False)
        assert response.status_code == 302
        location = response.headers["Location"]
        assert location.startswith(live_server + "/authorize?")
        browser_query = query_of(location)
        assert set(browser_query) == {"client_id", "request_uri"}
        assert browser_query["client_id"] == carmaker.client.client_id
        reference = browser_query["request_uri"].removeprefix(REQUEST_URI_PREFIX)
        pushed = app.extensions["idp"].store.get(PUSHED_KEY + sha256_hex(reference))
        requests_sent.append(dict(pushed["params"]))
    for query in requests_sent:
        assert query["response_type"] == "code"
        assert query["client_id"] == carmaker.client.client_id
        assert query["redirect_uri"] == carmaker.base_url + "/auth/callback"
        assert {"openid", "profile", "phone", "national_id", "address"} <= set(query["scope"].split())
        assert query["code_challenge_method"] == "S256"
        challenge = query["code_challenge"]
        assert len(challenge) == 43 and "=" not in challenge  # base64url of a SHA-256 digest
        base64.urlsafe_b64decode(challenge + "=")
        assert len(query["state"]) >= 16
        assert len(query["nonce"]) >= 16
        assert len(query["dpop_jkt"]) == 43  # the site pushed with a DPoP proof: the code is bound to its key
        assert "code_verifier" not in query and "client_secret" not in query and "client_assertion" not in query
    first, second = requests_sent
    for name in ("state", "nonce", "code_challenge"):
        assert first[name] != second[name], f"{name} is fresh for every login"


def test_a_login_goes_back_to_the_page_asked_for(carmaker, browser, user):
    page = browser.get(carmaker.base_url + "/plans")  # needs a login
    page = browser.log_in_at_provider(page, user)
    assert page.url == carmaker.base_url + "/plans"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_the_page_after_login_is_never_another_site(carmaker, browser, user, target):
    page = browser.get(carmaker.base_url + "/auth/login?" + urlencode({"next": target}))
    page = browser.log_in_at_provider(page, user)
    assert page.url == carmaker.base_url + "/"


# -- the callback ------------------------------------------------------------------------------------------


def test_a_callback_with_another_state_is_refused(carmaker, browser, user):
    url = callback_url(browser, carmaker, user)
    assert query_of(url)["state"]
    refused = browser.get(with_query(url, state=secrets.token_urlsafe(16)))
    assert refused.status_code == 400
    assert LOGIN_FAILED in refused.text
    assert_not_logged_in(browser, carmaker)
    missing = browser.get(with_query(url, state=None))
    assert missing.status_code == 400
    assert_not_logged_in(browser, carmaker)

    # The genuine answer still works: the refusals were about the state, nothing else.
    page = browser.get(url)
    assert page.url == carmaker.base_url + "/"
    assert is_logged_in(browser, carmaker)


def test_a_callback_in_another_browser_is_refused(carmaker, browser, live_server, user):
    """Login CSRF: a code and state sent to someone else's browser do not log that browser in."""
    url = callback_url(browser, carmaker, user)
    victim = PersonBrowser(live_server)
    victim.get(carmaker.base_url + "/auth/login")  # has a state of its own
    refused = victim.get(url)
    assert refused.status_code == 400
    assert not is_logged_in(victim, carmaker)
    assert login_rows(carmaker) == []


def test_denying_consent_shows_login_failed(carmaker, browser, user):
    page = browser.get(carmaker.base_url + "/auth/login")
    consent = browser.submit(
        page, {"national_code": user.national_code, "password": user.password}, field_name="password"
    )
    assert 'name="decision"' in consent.text
    answer = browser.submit(consent, {"decision": "deny"}, action_contains="/consent")
    assert answer.url.startswith(carmaker.base_url + "/auth/callback?")
    assert query_of(answer.url)["error"] == "access_denied"
    assert answer.status_code == 400
    assert LOGIN_FAILED in answer.text
    assert "اجازهٔ استفاده" in answer.text
    assert_not_logged_in(browser, carmaker)


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("https://evil.example", id="another-provider"),
        pytest.param("{issuer}/", id="trailing-slash"),
        pytest.param("{issuer}/other", id="longer"),
        pytest.param("http://localhost:{port}", id="same-server-other-name"),
    ],
)
def test_a_callback_without_the_providers_iss_is_refused(carmaker, browser, user, live_server, iss):
    """RFC 9207: the response must name the provider the request went to (against mix-up attacks)."""
    url = callback_url(browser, carmaker, user)
    assert query_of(url)["iss"] == live_server
    if iss is not None:
        iss = iss.format(issuer=live_server, port=urlsplit(live_server).port)
    refused = browser.get(with_query(url, iss=iss))
    assert refused.status_code == 400
    assert LOGIN_FAILED in refused.text
    assert_not_logged_in(browser, carmaker)

    page = browser.get(url)  # the genuine answer, with the provider's iss
    assert page.url == carmaker.base_url + "/"
    assert is_logged_in(browser, carmaker)


def test_a_callback_replayed_after_login_does_not_log_in_again(carmaker, browser, user):
    url = callback_url(browser, carmaker, user)
    assert browser.get(url).url == carmaker.base_url + "/"
    replayed = browser.get(url)
    assert replayed.status_code == 400
    assert len(login_rows(carmaker)) == 1


# -- tokens stay on the server ----------------------------------------------------------------------------


def test_tokens_are_kept_server_side(carmaker, browser, user, live_server):
    home = log_in(browser, carmaker, user)
    cookie = browser.session.cookies.get("carmaker_session", domain="127.0.0.1")
    assert cookie

    (login,) = login_rows(carmaker)
    id_claims = provider_claims(live_server, login["id_token"])
    assert id_claims["aud"] == carmaker.client.client_id or carmaker.client.client_id in id_claims["aud"]
    assert id_claims["sub"] == login["sub"] == user_rows(carmaker)[0][0]
    assert id_claims["sid"] == login["sid"]
    assert id_claims["national_id"] == "0012345679"

    # The cookie is a signed session holding only a random id of the server-side login.
    serializer = SecureCookieSessionInterface().get_signing_serializer(carmaker.app)
    data = serializer.loads(cookie)
    assert data.get("rp_session") == login["id"]
    assert set(data) <= {"rp_session", "csrf_token", "_flashes"}
    payload = json.dumps(data)
    assert len(cookie) < 300
    for secret in (login["id_token"], login["access_token"]):
        assert secret not in cookie and secret not in payload
        assert secret.split(".")[-1] not in cookie
        assert secret not in home.text

    # The id alone does not log anyone in once the server-side login is gone.
    with site_session(carmaker) as session:
        session.delete(session.get(LoginSession, login["id"]))
        session.commit()
    assert not is_logged_in(browser, carmaker)


# -- logout ---------------------------------------------------------------------------------------------------


def test_logout_goes_through_the_providers_end_session_endpoint(carmaker, browser, user, live_server):
    home = log_in(browser, carmaker, user)
    (login,) = login_rows(carmaker)
    form = find_form(home.text, action_contains="/auth/logout")
    response = browser.session.post(urljoin(home.url, form.action), data=form.fields, timeout=15, allow_redirects=False)
    assert response.status_code == 302
    location = response.headers["Location"]
    discovery = requests.get(live_server + "/.well-known/openid-configuration", timeout=15).json()
    assert location.startswith(discovery["end_session_endpoint"] + "?")
    query = query_of(location)
    assert query["id_token_hint"] == login["id_token"]
    assert query["post_logout_redirect_uri"] == carmaker.base_url + "/auth/logged-out"
    assert len(query["state"]) >= 16
    assert login_rows(carmaker) == []  # the site's session ended at once

    page = browser.get(location)
    assert page.url == carmaker.base_url + "/"
    assert LOGGED_OUT in page.text
    assert 'id="login"' in page.text
    assert not is_logged_in(browser, carmaker)

    # Logged out at the provider too: the next login asks for the password again.
    page = browser.get(carmaker.base_url + "/auth/login")
    assert page.url.startswith(live_server)
    assert 'name="password"' in page.text


def test_logged_out_page_without_the_logout_state_says_nothing(carmaker, browser, user):
    log_in(browser, carmaker, user)
    page = browser.get(carmaker.base_url + "/auth/logged-out?state=" + secrets.token_urlsafe(16))
    assert page.url == carmaker.base_url + "/"
    assert LOGGED_OUT not in page.text
    assert is_logged_in(browser, carmaker)


# -- back-channel logout --------------------------------------------------------------------------------------


def test_logging_out_at_the_provider_ends_the_sites_session(carmaker, browser, user, live_server):
    log_in(browser, carmaker, user)
    assert len(login_rows(carmaker)) == 1
    account = browser.get(live_server + "/")
    form = find_form(account.text, action_contains="/logout")
    answer = browser.session.post(urljoin(account.url, form.action), data={**form.fields, "confirm": "yes"}, timeout=15)
    assert answer.status_code == 200
    assert login_rows(carmaker) == []
    assert not is_logged_in(browser, carmaker)


def _logout_claims(site: RunningSite, login: dict[str, Any], issuer: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer,
        "aud": site.client.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "sub": login["sub"],
        "sid": login["sid"],
        "events": {EVENT: {}},
    }


def _provider_signed(app: Any, claims: dict[str, Any], alg: str = "RS256") -> str:
    with app.app_context():
        return sign_jwt({"typ": "logout+jwt"}, claims, alg)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _provider_kid(issuer: str, alg: str) -> str:
    keys = requests.get(issuer + "/jwks.json", timeout=15).json()["keys"]
    return next(k["kid"] for k in keys if k.get("alg") == alg or (alg == "RS256" and k["kty"] == "RSA"))


def _without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


def _invalid_token(kind: str, app: Any, site: RunningSite, claims: dict[str, Any], issuer: str) -> str:
    now = int(time.time())
    match kind:
        case "garbage":
            return "not-a-jwt"
        case "three-garbage-parts":
            return "a.b.c"
        case "empty":
            return ""
        case "wrong-aud":
            return _provider_signed(app, {**claims, "aud": "another-client"})
        case "aud-list-without-the-site":
            return _provider_signed(app, {**claims, "aud": ["another-client", "a-third"]})
        case "wrong-iss":
            return _provider_signed(app, {**claims, "iss": "https://evil.example"})
        case "iss-with-trailing-slash":
            return _provider_signed(app, {**claims, "iss": issuer + "/"})
        case "missing-events":
            return _provider_signed(app, _without(claims, "events"))
        case "another-event":
            return _provider_signed(app, {**claims, "events": {"http://schemas.openid.net/event/other": {}}})
        case "nonce-present":
            return _provider_signed(app, {**claims, "nonce": "n-0S6_WzA2Mj"})
        case "no-sid-no-sub":
            return _provider_signed(app, _without(claims, "sid", "sub"))
        case "missing-iat":
            return _provider_signed(app, _without(claims, "iat"))
        case "iat-far-in-the-future":
            return _provider_signed(app, {**claims, "iat": now + 86400, "exp": now + 86400 + 120})
        case "expired":
            return _provider_signed(app, {**claims, "iat": now - 3600, "exp": now - 3480})
        case "another-key":
            key = RSAKey.generate_key(2048, parameters={"kid": "someone-else"})
            return jwt.encode({"alg": "RS256", "kid": "someone-else", "typ": "logout+jwt"}, claims, key)
        case "another-key-with-the-providers-kid":
            kid = _provider_kid(issuer, "RS256")
            key = RSAKey.generate_key(2048, parameters={"kid": kid})
            return jwt.encode({"alg": "RS256", "kid": kid, "typ": "logout+jwt"}, claims, key)
        case "hs256-with-the-client-secret":
            # A site with a secret might be fooled into taking it as a key; the carmaker has none, so any secret.
            key = OctKey.import_key(site.client.client_secret or "a secret of at least 112 bits")
            return jwt.encode({"alg": "HS256", "typ": "logout+jwt"}, claims, key, algorithms=["HS256"])
        case "unsigned":
            return _b64({"alg": "none", "typ": "logout+jwt"}) + "." + _b64(claims) + "."
        case "signature-of-another-token":
            genuine = _provider_signed(app, claims).split(".")
            forged = _provider_signed(app, {**claims, "sid": "x"}).split(".")
            return ".".join([genuine[0], genuine[1], forged[2]])
    raise AssertionError(kind)


INVALID_LOGOUT_TOKENS = [
    "garbage",
    "three-garbage-parts",
    "empty",
    "wrong-aud",
    "aud-list-without-the-site",
    "wrong-iss",
    "iss-with-trailing-slash",
    "missing-events",
    "another-event",
    "nonce-present",
    "no-sid-no-sub",
    "missing-iat",
    "iat-far-in-the-future",
    "expired",
    "another-key",
    "another-key-with-the-providers-kid",
    "hs256-with-the-client-secret",
    "unsigned",
    "signature-of-another-token",
]


def _backchannel(site: RunningSite, token: str | None) -> requests.Response:
    data = {} if token is None else {"logout_token": token}
    return requests.post(site.base_url + "/auth/backchannel-logout", data=data, timeout=15)


@pytest.mark.parametrize("kind", INVALID_LOGOUT_TOKENS)
def test_invalid_logout_tokens_are_refused_and_end_nothing(app, carmaker, browser, user, live_server, kind):
    log_in(browser, carmaker, user)
    (login,) = login_rows(carmaker)
    claims = _logout_claims(carmaker, login, live_server)
    response = _backchannel(carmaker, _invalid_token(kind, app, carmaker, claims, live_server))
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == "invalid_request"
    assert login_rows(carmaker) == [login]
    assert is_logged_in(browser, carmaker)


def test_a_back_channel_post_without_a_token_is_refused(carmaker, browser, user):
    log_in(browser, carmaker, user)
    assert _backchannel(carmaker, None).status_code == 400
    assert is_logged_in(browser, carmaker)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_valid_logout_token_ends_the_session_it_names(app, carmaker, browser, user, live_server, alg):
    """The control for the refusals above: a token made the way the provider makes them is accepted."""
    log_in(browser, carmaker, user)
    (login,) = login_rows(carmaker)
    claims = _logout_claims(carmaker, login, live_server)

    # Another provider session (say, on another device) is not this one: nothing ends.
    other = _backchannel(carmaker, _provider_signed(app, {**claims, "sid": "another-session"}, alg))
    assert other.status_code == 200
    assert is_logged_in(browser, carmaker)

    response = _backchannel(carmaker, _provider_signed(app, claims, alg))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert login_rows(carmaker) == []
    assert not is_logged_in(browser, carmaker)


def test_a_logout_token_with_only_sub_ends_all_of_that_users_sessions(app, carmaker, user, live_server):
    phone, laptop = PersonBrowser(live_server), PersonBrowser(live_server)
    log_in(phone, carmaker, user)
    log_in(laptop, carmaker, user)
    logins = login_rows(carmaker)
    assert len(logins) == 2
    response = _backchannel(
        carmaker, _provider_signed(app, _without(_logout_claims(carmaker, logins[0], live_server), "sid"))
    )
    assert response.status_code == 200
    assert login_rows(carmaker) == []
    assert not is_logged_in(phone, carmaker) and not is_logged_in(laptop, carmaker)


# -- two sites, one person -----------------------------------------------------------------------------------


def test_single_sign_on_between_two_sites_and_logout_from_both(carmaker, second_site, browser, user, live_server):
    log_in(browser, carmaker, user)

    # At the second site Hoviyat asks for no password: only consent for this new site.
    page = browser.get(second_site.base_url + "/auth/login")
    assert page.url.startswith(live_server)
    assert 'name="password"' not in page.text
    assert 'name="decision"' in page.text
    page = browser.allow(page)
    assert page.url == second_site.base_url + "/"
    assert 'id="national-id"' in page.text
    assert is_logged_in(browser, carmaker) and is_logged_in(browser, second_site)

    # Different sub values for the same person (pairwise), the same verified national ID.
    ((first_sub, first_national_id),) = user_rows(carmaker)
    ((second_sub, second_national_id),) = user_rows(second_site)
    assert first_sub != second_sub
    assert first_national_id == second_national_id == "0012345679"
    (first_login,), (second_login,) = login_rows(carmaker), login_rows(second_site)
    assert first_login["sid"] == second_login["sid"]  # one provider session

    # Logging out at the first site ends the second site's session too (back-channel).
    home = browser.get(carmaker.base_url + "/")
    page = browser.submit(home, {}, action_contains="/auth/logout")
    assert page.url == carmaker.base_url + "/"
    assert LOGGED_OUT in page.text
    assert login_rows(second_site) == []
    assert not is_logged_in(browser, second_site)
    assert not is_logged_in(browser, carmaker)


# -- FAPI 2.0 (the carmaker is registered --profile fapi2, as `make demo` registers it) -------------------------


def test_the_carmakers_tokens_are_bound_to_its_dpop_key(carmaker, browser, user, live_server):
    from .high_assurance import DPoPKey

    log_in(browser, carmaker, user)
    (login,) = login_rows(carmaker)
    token = login["access_token"]
    assert len(provider_claims(live_server, token)["cnf"]["jkt"]) == 43
    # Someone who copied the token from the site's database, without the site's DPoP key, gets nothing.
    userinfo = live_server + "/userinfo"
    as_bearer = requests.get(userinfo, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert as_bearer.status_code == 401 and "sub" not in as_bearer.text
    thief = DPoPKey()
    headers = {"Authorization": f"DPoP {token}", "DPoP": thief.proof("GET", userinfo, access_token=token)}
    with_another_key = requests.get(userinfo, headers=headers, timeout=15)
    assert (
        with_another_key.status_code == 401 and 'error="invalid_token"' in with_another_key.headers["WWW-Authenticate"]
    )
    # The site itself, with its key, reads userinfo and refreshes (the refresh token is not rotated).
    rp = carmaker.app.extensions["carmaker.rp"]
    assert rp.high_assurance.userinfo(token)["sub"] == login["sub"]
    with site_session(carmaker) as session:
        refresh_token = session.get(LoginSession, login["id"]).refresh_token
    refreshed = rp.high_assurance.refresh(refresh_token)
    assert refreshed["token_type"] == "DPoP" and refreshed["refresh_token"] == refresh_token
