"""The whole code flow over real HTTP, driven by a relying-party library that is not ours (Authlib's
requests client): discovery, authorize, login, consent, token, ID token verified against the JWKS,
userinfo, refresh, revoke, logout."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from .helpers import POST_LOGOUT_URI, REDIRECT_URI, create_test_client, find_form, query_of


class LiveBrowser:
    """A user's browser on the live server: keeps cookies, follows the provider's redirects, stops at the RP."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.session = requests.Session()

    def _follow(self, response: requests.Response) -> requests.Response:
        for _ in range(20):
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303) or not location:
                return response
            url = urljoin(response.url, location)
            if not url.startswith(self.issuer):
                response.headers["Location"] = url
                return response
            response = self.session.get(url, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")

    def get(self, url: str) -> requests.Response:
        return self._follow(self.session.get(url, allow_redirects=False, timeout=10))

    def submit(self, response: requests.Response, data: dict[str, str], **find: str) -> requests.Response:
        form = find_form(response.text, **find)
        values = {**form.fields, **data}
        url = urljoin(response.url, form.action)
        return self._follow(self.session.post(url, data=values, allow_redirects=False, timeout=10))


def verify_id_token(
    id_token: str, jwks: dict, client_id: str, issuer: str, nonce: str | None, access_token: str
) -> dict:
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
    options = {"iss": {"values": [issuer]}, "aud": {"values": [client_id]}}
    if nonce is not None:
        options["nonce"] = {"value": nonce}
    claims = CodeIDToken(
        decoded.claims, decoded.header, options=options, params={"nonce": nonce, "access_token": access_token}
    )
    claims.validate(leeway=5)
    return dict(decoded.claims)


@pytest.fixture
def metadata(live_server: str) -> OpenIDProviderMetadata:
    document = requests.get(live_server + "/.well-known/openid-configuration", timeout=10).json()
    meta = OpenIDProviderMetadata(document)
    meta.validate()
    return meta


def test_whole_flow_with_authlib_client(app, live_server, metadata, user, rp_client):
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    rp = OAuth2Session(
        client_id=rp_client.client_id,
        client_secret=rp_client.client_secret,
        scope="openid profile phone national_id",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier = "v" * 10 + "erifier-that-is-long-enough-for-pkce-43-chars"
    nonce = "n-0S6_WzA2Mj"
    url, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)

    browser = LiveBrowser(live_server)
    page = browser.get(url)
    assert page.status_code == 200 and 'name="national_code"' in page.text
    page = browser.submit(page, {"national_code": user.national_code, "password": user.password}, field_name="password")
    assert page.status_code == 200 and 'name="decision"' in page.text
    assert "Test Portal" in page.text
    callback = browser.submit(page, {"decision": "allow"}, action_contains="/consent")
    assert callback.status_code == 302
    redirect_url = callback.headers["Location"]
    assert redirect_url.startswith(REDIRECT_URI)
    assert query_of(redirect_url)["iss"] == live_server  # RFC 9207

    token = rp.fetch_token(
        metadata["token_endpoint"], authorization_response=redirect_url, state=state, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert token["refresh_token"]
    claims = verify_id_token(token["id_token"], jwks, rp_client.client_id, live_server, nonce, token["access_token"])
    assert claims["acr"] == "urn:hoviyat:loa:1"
    assert claims["amr"] == ["pwd"]
    assert claims["sid"]
    assert claims["national_id"] == user.national_code
    assert claims["verified_claims"]["verification"]["trust_framework"] == "ir_sabt_ahval"
    assert claims["sub"] != user.id  # pairwise by default

    info = rp.get(metadata["userinfo_endpoint"], timeout=10).json()
    assert info["sub"] == claims["sub"]
    assert info["phone_number"] == user.mobile
    assert info["national_id"] == user.national_code
    assert info["verified_claims"]["claims"]["national_id"] == user.national_code

    refreshed = rp.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    new_claims = verify_id_token(
        refreshed["id_token"], jwks, rp_client.client_id, live_server, None, refreshed["access_token"]
    )
    assert new_claims["sub"] == claims["sub"] and new_claims["auth_time"] == claims["auth_time"]
    assert "nonce" not in new_claims

    revoked = rp.revoke_token(metadata["revocation_endpoint"], token=refreshed["refresh_token"])
    assert revoked.status_code == 200
    after = requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        timeout=10,
    )
    assert after.status_code == 401  # revoking the refresh token revoked its grant and access tokens

    logout = browser.get(
        metadata["end_session_endpoint"]
        + "?"
        + requests.compat.urlencode(
            {"id_token_hint": token["id_token"], "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "bye"}
        )
    )
    assert logout.status_code == 302
    assert logout.headers["Location"] == POST_LOGOUT_URI + "?state=bye"
    # The provider session is over: the next authorization asks for the password again.
    url, _ = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    assert 'name="password"' in browser.get(url).text


def test_private_key_jwt_client_with_authlib(app, live_server, metadata, user):
    key = ECKey.generate_key("P-256", private=True)
    public = key.as_dict(private=False) | {"kid": "rp-key-1", "alg": "ES256", "use": "sig"}
    rp_client = create_test_client(app, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]})
    rp = OAuth2Session(
        client_id=rp_client.client_id,
        client_secret=key,
        token_endpoint_auth_method=PrivateKeyJWT(metadata["token_endpoint"], alg="ES256"),
        scope="openid",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier = "x" * 50
    url, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
    browser = LiveBrowser(live_server)
    page = browser.submit(
        browser.get(url),
        {"national_code": user.national_code, "password": user.password},
        field_name="password",
    )
    callback = browser.submit(page, {"decision": "allow"}, action_contains="/consent")
    token = rp.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback.headers["Location"],
        state=state,
        code_verifier=verifier,
    )
    assert token["id_token"]


def test_client_secret_jwt_is_not_accepted(app, live_server, metadata):
    rp_client = create_test_client(app, grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    rp = OAuth2Session(
        client_id=rp_client.client_id,
        client_secret=rp_client.client_secret,
        token_endpoint_auth_method=ClientSecretJWT(metadata["token_endpoint"]),
    )
    with pytest.raises(Exception) as raised:
        rp.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert "invalid_client" in str(raised.value)
