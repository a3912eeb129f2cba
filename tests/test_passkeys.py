"""Passkeys (issue 22; idp/passkeys.py, idp/auth/passkey_login.py, idp/account/passkeys.py,
idp/auth/passkey_recovery.py), driven over HTTP with real WebAuthn answers from a software authenticator
(tests/webauthn_authenticator.py).

What a user and a relying party depend on: a passkey with user verification logs in alone at
``urn:hoviyat:loa:3`` (amr ``hwk``/``swk`` + ``user``) with no text message; it steps a password login up; a
relying party asking loa:3 gets only a passkey, or ``unmet_authentication_requirements``. What an attacker
tries and must fail at: an answer made for another origin or relying party, without user verification,
replayed (also in parallel), carried to another browser or ceremony; a credential id taken from another
account; a cloned authenticator (its counter goes back: refused, and a warning in the security events);
changing passkeys without a fresh two-factor login; recovering an account with a passkey by SMS alone.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from idp import clock
from idp.store.audit import recent_events
from tests.helpers import (
    Browser,
    UserInfo,
    authorization_params,
    browser_for,
    create_test_client,
    create_test_user,
    exchange_code,
    field_error,
    find_form,
    is_logged_in,
    last_sms_code,
    page_text,
    pkce_pair,
    query_of,
    sms_outbox,
)
from tests.webauthn_authenticator import SoftAuthenticator, provider_at_localhost

LOA1 = "urn:hoviyat:loa:1"
LOA2 = "urn:hoviyat:loa:2"
LOA3 = "urn:hoviyat:loa:3"


@pytest.fixture
def app(app_with: Any) -> Flask:
    return provider_at_localhost(app_with)


@pytest.fixture
def user(app: Flask) -> UserInfo:
    return create_test_user(app)


@pytest.fixture
def issuer(app: Flask) -> str:
    return app.extensions["idp"].issuer


# -- helpers ------------------------------------------------------------------------------------------------


def english(app: Flask) -> Browser:
    return browser_for(app, language="en")


def csrf_of(page: Any) -> str:
    form = find_form(page_text(page), field_name="csrf_token")
    return form.fields["csrf_token"]


def options(browser: Browser, ceremony: str, page: str = "/login") -> tuple[int, dict[str, Any]]:
    """What the page's script fetches before a ceremony: (status, options)."""
    token = csrf_of(browser.client.get(page))
    response = browser.client.post("/passkeys/options", data={"ceremony": ceremony}, headers={"X-CSRFToken": token})
    return response.status_code, response.get_json()


def post_answer(browser: Browser, url: str, answer: str, page: str, **extra: str) -> Any:
    """Post the browser's answer the way static/passkeys.js does: the form of ``page`` with "credential" set."""
    token = csrf_of(browser.client.get(page))
    return browser.client.post(url, data={"csrf_token": token, "credential": answer, **extra})


def log_in_by_password(browser: Browser, user: UserInfo) -> None:
    response = browser.login(browser.get("/login"), user)
    assert response.status_code == 200 and is_logged_in(browser)


def step_up_by_sms(app: Flask, browser: Browser, user: UserInfo) -> None:
    """Prove a second factor (an SMS code) on the confirmation page: the login is fresh and of two factors."""
    page = browser.get("/login/second-factor?method=sms&next=passkeys")
    sent = browser.submit(page, {}, action_contains="/login/second-factor/send")
    if b"A code was sent a moment ago" in sent.data:
        time.sleep(1.1)  # otp.resend_interval, after a code to the same mobile a moment ago
        browser.submit(page, {}, action_contains="/login/second-factor/send")
    code = last_sms_code(app, user.mobile, "step_up")
    response = browser.client.post(
        "/login/second-factor?method=sms&next=passkeys", data={"code": code, "csrf_token": csrf_of(page)}
    )
    assert response.status_code == 303 and response.location.endswith("/account/passkeys"), response.location


def enrol(app: Flask, browser: Browser, user: UserInfo, authenticator: SoftAuthenticator, name: str = "Phone") -> Any:
    """Log in with the password, confirm with an SMS code, add the passkey; returns the answer to the add."""
    if not is_logged_in(browser):
        log_in_by_password(browser, user)
    step_up_by_sms(app, browser, user)
    status, creation = options(browser, "register", page="/account/passkeys")
    assert status == 200, creation
    answer = authenticator.create(creation)
    return post_answer(browser, "/account/passkeys", answer, "/account/passkeys", name=name)


def enrolled(app: Flask, user: UserInfo, **authenticator_options: Any) -> SoftAuthenticator:
    """A passkey added to ``user``'s account (in a browser of its own, then logged out)."""
    authenticator = SoftAuthenticator(origin=app.extensions["idp"].issuer, **authenticator_options)
    browser = english(app)
    response = enrol(app, browser, user, authenticator)
    assert response.status_code == 303, field_error(browser.client.get("/account/passkeys"), "credential")
    return authenticator


def log_in_with_passkey(browser: Browser, authenticator: SoftAuthenticator, **answer_options: Any) -> Any:
    status, request_options = options(browser, "login")
    assert status == 200, request_options
    answer = authenticator.get(request_options, **answer_options)
    return post_answer(browser, "/login/passkey", answer, "/login")


def audit_events(app: Flask, event: str) -> list[Any]:
    with app.app_context():
        return recent_events(event=event)


def start_rp_request(app: Flask, browser: Browser, **extra: str) -> tuple[Any, str, dict[str, str], Any]:
    rp = create_test_client(app)
    verifier, challenge = pkce_pair()
    params = authorization_params(rp, challenge, **extra)
    return rp, verifier, params, browser.authorize(params)


def id_token_claims(app: Flask, rp: Any, location: str, verifier: str) -> dict[str, Any]:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    query = query_of(location)
    assert "code" in query, query
    client = app.test_client()
    tokens = exchange_code(client, rp, query["code"], verifier)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    jwks = client.get("/jwks.json").get_json()
    return dict(jwt.decode(tokens.get_json()["id_token"], KeySet.import_key_set(jwks)).claims)


def tx_of(response: Any) -> str:
    return find_form(page_text(response), field_name="tx").fields["tx"]


# -- enrolment -------------------------------------------------------------------------------------------------


def test_passkey_is_added_listed_and_announced(app: Flask, user: UserInfo) -> None:
    browser = english(app)
    authenticator = SoftAuthenticator(origin=app.extensions["idp"].issuer, synced=True)
    response = enrol(app, browser, user, authenticator, name="My phone")
    assert response.status_code == 303 and response.location.endswith("/account/passkeys")

    page = page_text(browser.client.get("/account/passkeys"))
    assert "My phone" in page
    assert "Synced between your devices" in page
    assert "Not used yet" in page
    assert 'id="add-passkey"' in page
    assert [event.detail["synced"] for event in audit_events(app, "passkey.added")] == [True]
    assert "a passkey was added" in sms_outbox(app)[-1]["text"]
    assert "A passkey was added" in page_text(browser.client.get("/account/activity"))


def test_adding_a_passkey_needs_a_fresh_login_of_two_factors(app: Flask, user: UserInfo) -> None:
    browser = english(app)
    log_in_by_password(browser, user)
    authenticator = SoftAuthenticator(origin=app.extensions["idp"].issuer)

    # A password alone is one factor: a passkey would make it three. The page sends the user to confirm first.
    status, answer = options(browser, "register", page="/account/passkeys")
    assert status == 403 and answer["error"] == "confirm_again"
    page = browser.client.get("/account/passkeys")
    form = find_form(page_text(page), action_contains="/account/passkeys")
    assert 'data-confirm-url="/login/second-factor?next=passkeys"' in page_text(page)
    refused = browser.client.post("/account/passkeys", data={**form.fields, "credential": "{}"})
    assert refused.status_code == 303 and "/login/second-factor" in refused.location

    step_up_by_sms(app, browser, user)
    status, creation = options(browser, "register", page="/account/passkeys")
    assert status == 200

    # Ten minutes later the login is stale again: confirm again.
    clock.advance(601)
    response = post_answer(browser, "/account/passkeys", authenticator.create(creation), "/account/passkeys")
    assert response.status_code == 303 and "/login/second-factor" in response.location
    status, _ = options(browser, "register", page="/account/passkeys")
    assert status == 403
    assert audit_events(app, "passkey.added") == []


def test_a_passkey_without_user_verification_is_not_added(app: Flask, user: UserInfo) -> None:
    browser = english(app)
    log_in_by_password(browser, user)
    step_up_by_sms(app, browser, user)
    _, creation = options(browser, "register", page="/account/passkeys")
    answer = SoftAuthenticator(origin=app.extensions["idp"].issuer).create(creation, verified=False)
    response = post_answer(browser, "/account/passkeys", answer, "/account/passkeys")
    assert response.status_code == 200
    assert "could not be checked" in page_text(response)
    assert audit_events(app, "passkey.added") == []


def test_a_credential_id_belongs_to_one_account_only(app: Flask, user: UserInfo) -> None:
    """Attestation "none" signs nothing at registration: anyone can present another person's credential id with
    a key of their own. The second account is refused, and the first keeps its passkey."""
    victim = enrolled(app, user)
    attacker = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    browser = english(app)
    copy = SoftAuthenticator(origin=app.extensions["idp"].issuer, credential_id=victim.credential_id)
    response = enrol(app, browser, attacker, copy)
    assert response.status_code == 200
    assert "registered already" in page_text(response)
    assert "You have no passkey yet." in page_text(browser.client.get("/account/passkeys"))

    # The victim still logs in with it; the attacker's key does not open the victim's account.
    assert log_in_with_passkey(english(app), victim).location.endswith("/")
    refused = log_in_with_passkey(english(app), copy)
    assert refused.location.endswith("/login")


def test_two_accounts_registering_one_credential_at_once_only_one_wins(app: Flask) -> None:
    people = [
        create_test_user(app, national_code=code, mobile=mobile)
        for code, mobile in (("0012345679", "+989121234567"), ("0499370899", "+989351112233"))
    ]
    shared_id = SoftAuthenticator(origin="").credential_id
    ready = []
    for person in people:
        browser = english(app)
        log_in_by_password(browser, person)
        step_up_by_sms(app, browser, person)
        _, creation = options(browser, "register", page="/account/passkeys")
        authenticator = SoftAuthenticator(origin=app.extensions["idp"].issuer, credential_id=shared_id)
        token = csrf_of(browser.client.get("/account/passkeys"))
        ready.append((browser, {"csrf_token": token, "credential": authenticator.create(creation)}))
    barrier = threading.Barrier(len(ready))
    statuses: list[int] = []

    def add(browser: Browser, data: dict[str, str]) -> None:
        barrier.wait()
        statuses.append(browser.client.post("/account/passkeys", data=data).status_code)

    threads = [threading.Thread(target=add, args=pair) for pair in ready]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 303]
    assert len(audit_events(app, "passkey.added")) == 1


# -- login -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("synced", "amr"), [(False, ["hwk", "user"]), (True, ["swk", "user"])])
def test_a_passkey_alone_logs_in_at_loa3_with_no_text_message(
    app: Flask, user: UserInfo, synced: bool, amr: list[str]
) -> None:
    authenticator = enrolled(app, user, synced=synced)
    texts_before = len(sms_outbox(app))
    browser = english(app)
    rp, verifier, _params, page = start_rp_request(app, browser, acr_values=LOA3)
    assert b'id="passkey-login"' in page.data and b'autocomplete="username webauthn"' in page.data

    response = browser.client.post(
        "/login/passkey",
        data={
            "csrf_token": csrf_of(page),
            "tx": tx_of(page),
            "credential": authenticator.get(options(browser, "login")[1]),
        },
    )
    response = browser.consent(browser._follow(response))
    claims = id_token_claims(app, rp, response.location, verifier)
    assert claims["acr"] == LOA3
    assert claims["amr"] == amr
    assert len(sms_outbox(app)) == texts_before  # SMS sent per passkey login: 0
    assert "Last used" in page_text(browser.client.get("/account/passkeys"))


def test_the_login_page_hides_the_passkey_button_until_the_script_finds_the_browser_able(app: Flask) -> None:
    page = page_text(app.test_client().get("/login"))
    button = page[page.index('id="passkey-login"') - 80 : page.index('id="passkey-login"') + 80]
    assert " hidden>" in button
    assert '<script src="/static/passkeys.js" defer></script>' in page
    assert 'name="password"' in page  # the password form works without any script


def test_an_issuer_at_an_ip_address_offers_no_passkey(app_with: Any) -> None:
    app = app_with()  # http://127.0.0.1:PORT
    client = app.test_client()
    page = page_text(client.get("/login"))
    assert "passkey-login" not in page and "passkeys.js" not in page
    token = find_form(page, field_name="csrf_token").fields["csrf_token"]
    assert (
        client.post("/passkeys/options", data={"ceremony": "login"}, headers={"X-CSRFToken": token}).status_code == 404
    )


@pytest.mark.parametrize(
    "bent",
    [
        {"origin": "https://evil.example"},  # a phishing page relaying the ceremony
        {"origin": "http://localhost:1"},  # same host, another port: another origin
        {"rp_id": "evil.example"},  # a credential of another site
        {"verified": False},  # no PIN or biometric: one factor, not a passkey login
    ],
    ids=["other-origin", "other-port", "other-rp-id", "no-user-verification"],
)
def test_an_answer_for_another_origin_or_without_verification_is_refused(
    app: Flask, user: UserInfo, bent: dict[str, Any]
) -> None:
    authenticator = enrolled(app, user)
    browser = english(app)
    response = log_in_with_passkey(browser, authenticator, **bent)
    assert response.status_code == 303 and response.location.endswith("/login")
    assert "could not be checked" in page_text(browser.client.get("/login"))
    assert not is_logged_in(browser)
    assert [event.detail["reason"] for event in audit_events(app, "passkey.refused")] == ["invalid"]


def test_a_replayed_answer_is_refused(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    browser = english(app)
    _status, request_options = options(browser, "login")
    answer = authenticator.get(request_options)
    assert post_answer(browser, "/login/passkey", answer, "/login").location.endswith("/")
    browser.client.post("/logout", data={"csrf_token": csrf_of(browser.client.get("/")), "confirm": "yes"})
    assert not is_logged_in(browser)

    again = post_answer(browser, "/login/passkey", answer, "/login")
    assert again.location.endswith("/login")
    assert "expired or was used already" in page_text(browser.client.get("/login"))
    assert not is_logged_in(browser)


def test_one_answer_sent_many_times_at_once_logs_in_once(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    browser = english(app)
    _, request_options = options(browser, "login")
    answer = authenticator.get(request_options)
    token = csrf_of(browser.client.get("/login"))
    cookie = browser.client.get_cookie(app.extensions["idp"].config.session.cookie_name)
    clients = []
    for _ in range(8):
        twin = app.test_client()
        twin.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
        clients.append(twin)
    barrier = threading.Barrier(len(clients))
    locations: list[str] = []

    def send(client: Any) -> None:
        barrier.wait()
        response = client.post("/login/passkey", data={"csrf_token": token, "credential": answer})
        locations.append(response.location)

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(location.endswith("/login") for location in locations) == [False] + [True] * 7
    assert len(audit_events(app, "login.succeeded")) == 2  # the enrolment's password login, and this one


def test_a_challenge_serves_only_the_browser_and_the_ceremony_it_was_made_for(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    owner, other = english(app), english(app)
    _, request_options = options(owner, "login")
    # Another browser (an attacker who lured the user into answering a challenge the attacker fetched, say).
    assert post_answer(other, "/login/passkey", authenticator.get(request_options), "/login").location.endswith(
        "/login"
    )
    assert not is_logged_in(other)
    # A recovery challenge does not log in, nor a login challenge recover.
    _, recovery_options = options(owner, "recovery")
    assert post_answer(owner, "/login/passkey", authenticator.get(recovery_options), "/login").location.endswith(
        "/login"
    )
    _, login_options = options(owner, "login")
    page = post_answer(owner, "/password/forgot/passkey", authenticator.get(login_options), "/password/forgot/passkey")
    assert page.status_code == 200 and "expired or was used already" in page_text(page)
    assert not is_logged_in(owner)


def test_a_counter_going_backwards_is_refused_with_a_clone_warning(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    assert log_in_with_passkey(english(app), authenticator, counter=5).location.endswith("/")
    # A copy of the key that has counted less: refused, and the owner is warned.
    browser = english(app)
    response = log_in_with_passkey(browser, authenticator, counter=3)
    assert response.location.endswith("/login")
    assert "may have been copied" in page_text(browser.client.get("/login"))
    warnings = audit_events(app, "passkey.clone_warning")
    assert [(w.detail["stored_count"], w.detail["presented_count"]) for w in warnings] == [(5, 3)]
    owner = english(app)
    assert log_in_with_passkey(owner, authenticator, counter=6).location.endswith("/")
    assert "it may have been copied" in page_text(owner.client.get("/account/activity"))


def test_a_passkey_that_keeps_no_counter_logs_in_every_time(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user, synced=True)
    authenticator.counts = False
    for _ in range(3):
        assert log_in_with_passkey(english(app), authenticator).location.endswith("/")
    assert audit_events(app, "passkey.clone_warning") == []


@pytest.mark.parametrize("credential", ["", "not json", "{}", json.dumps({"id": "x", "rawId": "!!", "response": {}})])
def test_a_malformed_answer_gets_a_message_not_an_error(app: Flask, credential: str) -> None:
    browser = english(app)
    options(browser, "login")
    response = post_answer(browser, "/login/passkey", credential, "/login")
    assert response.status_code == 303 and response.location.endswith("/login")
    assert "could not be checked" in page_text(browser.client.get("/login"))


# -- step-up and the levels a relying party asks for -----------------------------------------------------------


def test_a_password_login_steps_up_with_a_passkey_instead_of_a_text(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    texts_before = len(sms_outbox(app))
    browser = english(app)
    rp, verifier, _params, page = start_rp_request(app, browser, acr_values=LOA2)
    page = browser.login(page, user)
    assert "/login/second-factor" in page.request.path
    assert b'id="passkey-step-up"' in page.data  # the passkey first: it costs no text message
    assert b'id="method-sms"' in page.data

    status, request_options = options(browser, "step_up", page=page.request.full_path)
    assert status == 200 and [c["id"] for c in request_options["allowCredentials"]] == [authenticator.credential_id_b64]
    response = browser.client.post(
        "/login/second-factor?method=passkey",
        data={"csrf_token": csrf_of(page), "tx": tx_of(page), "credential": authenticator.get(request_options)},
    )
    response = browser.consent(browser._follow(response))
    claims = id_token_claims(app, rp, response.location, verifier)
    assert claims["acr"] == LOA3
    assert claims["amr"] == ["pwd", "hwk", "user"]
    assert len(sms_outbox(app)) == texts_before


def test_another_accounts_passkey_does_not_step_up(app: Flask, user: UserInfo) -> None:
    enrolled(app, user)
    other = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    other_key = enrolled(app, other)
    browser = english(app)
    log_in_by_password(browser, user)
    _, request_options = options(browser, "step_up", page="/login/second-factor")
    page = post_answer(
        browser, "/login/second-factor?method=passkey", other_key.get(request_options), "/login/second-factor"
    )
    assert page.status_code == 200 and "not for this one" in page_text(page)


def test_a_loa3_request_is_offered_only_a_passkey(app: Flask, user: UserInfo) -> None:
    enrolled(app, user)
    browser = english(app)
    _, _, _, page = start_rp_request(app, browser, acr_values=LOA3)
    page = browser.login(page, user)
    assert "/login/second-factor" in page.request.path
    assert b'id="passkey-step-up"' in page.data
    for other in (b'id="method-sms"', b'id="method-pwd"', b'id="send-code"', b'name="code"'):
        assert other not in page.data
    # Asking for another method by hand changes nothing.
    forced = browser.client.get(page.request.full_path + "&method=sms")
    assert b'id="passkey-step-up"' in forced.data and b'id="send-code"' not in forced.data


def test_a_loa3_request_for_a_user_without_a_passkey_gets_an_error_it_can_read(app: Flask, user: UserInfo) -> None:
    browser = english(app)
    _, _, params, page = start_rp_request(app, browser, acr_values=LOA3)
    response = browser.login(page, user)
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "unmet_authentication_requirements"
    assert query["state"] == params["state"]


def test_prompt_none_without_a_loa3_session_is_unmet_authentication_requirements(app: Flask, user: UserInfo) -> None:
    enrolled(app, user)
    browser = english(app)
    log_in_by_password(browser, user)
    rp = create_test_client(app)
    _, challenge = pkce_pair()
    params = authorization_params(rp, challenge, acr_values=LOA3, prompt="none")
    response = browser.client.get("/authorize?" + urlencode(params))
    assert response.status_code == 302
    assert query_of(response.location)["error"] == "unmet_authentication_requirements"


def test_discovery_advertises_loa3(app: Flask) -> None:
    metadata = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert metadata["acr_values_supported"] == [LOA1, LOA2, LOA3]


# -- removal ---------------------------------------------------------------------------------------------------


def test_removing_a_passkey_needs_a_fresh_login_and_then_it_no_longer_opens_the_account(
    app: Flask, user: UserInfo
) -> None:
    authenticator = enrolled(app, user)
    browser = english(app)
    log_in_by_password(browser, user)
    page = browser.client.get("/account/passkeys")
    remove = find_form(page_text(page), action_contains="/remove")
    refused = browser.client.post(remove.action, data=remove.fields)
    assert refused.status_code == 303 and "/login/second-factor" in refused.location
    assert audit_events(app, "passkey.removed") == []

    step_up_by_sms(app, browser, user)
    removed = browser.client.post(remove.action, data=remove.fields)
    assert removed.status_code == 303
    assert "You have no passkey yet." in page_text(browser.client.get("/account/passkeys"))
    assert len(audit_events(app, "passkey.removed")) == 1
    assert "a passkey was removed" in sms_outbox(app)[-1]["text"]
    stranger = english(app)
    assert log_in_with_passkey(stranger, authenticator).location.endswith("/login")
    assert "not registered" in page_text(stranger.client.get("/login"))


def test_a_passkey_of_another_account_cannot_be_removed(app: Flask, user: UserInfo) -> None:
    enrolled(app, user)
    other = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    browser = english(app)
    log_in_by_password(browser, other)
    step_up_by_sms(app, browser, other)
    with app.app_context():
        from idp.store.passkeys import passkeys_of

        victim_passkey = passkeys_of(user.id)[0].id
    token = csrf_of(browser.client.get("/account/passkeys"))
    browser.client.post(f"/account/passkeys/{victim_passkey}/remove", data={"csrf_token": token})
    assert audit_events(app, "passkey.removed") == []


# -- recovery --------------------------------------------------------------------------------------------------


def test_recovery_with_a_passkey_alone_sets_a_new_password(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    elsewhere = english(app)
    log_in_by_password(elsewhere, user)
    texts_before = len(sms_outbox(app))

    browser = english(app)
    assert b'id="link-passkey-recovery"' in browser.client.get("/password/forgot").data
    _status, request_options = options(browser, "recovery", page="/password/forgot/passkey")
    answer = authenticator.get(request_options)
    response = post_answer(browser, "/password/forgot/passkey", answer, "/password/forgot/passkey")
    assert response.status_code == 303 and response.location.endswith("/password/reset/passkey")
    page = browser.client.get("/password/reset/passkey")
    form = find_form(page_text(page), field_name="password")
    done = browser.client.post(
        "/password/reset/passkey",
        data={**form.fields, "password": "a new long secret", "password_confirm": "a new long secret"},
    )
    assert done.status_code == 303 and is_logged_in(browser)
    assert not is_logged_in(elsewhere)  # every other device logged out
    log_in_by_password(english(app), UserInfo(user.id, user.national_code, "a new long secret"))
    texts = sms_outbox(app)[texts_before:]
    assert [t["purpose"] for t in texts] == ["password_reset"]  # the notice; no code was needed


def test_sms_recovery_of_an_account_with_a_passkey_waits(app: Flask, user: UserInfo) -> None:
    """A SIM alone must not take over an account that has a passkey: the right code starts a wait, with a
    notice, and the password is unchanged; after the wait, SMS recovery works."""
    enrolled(app, user)

    def recover_by_sms(password: str) -> Any:
        time.sleep(1.1)  # otp.resend_interval
        browser = english(app)
        page = browser.submit(browser.get("/password/forgot"), {"national_code": user.national_code})
        code = last_sms_code(app, user.mobile, "reset")
        return browser, browser.submit(page, {"code": code, "password": password, "password_confirm": password})

    _, held = recover_by_sms("taken over 12345")
    assert held.status_code == 200 and b'id="recovery-held"' in held.data
    assert sms_outbox(app)[-1]["purpose"] == "password_reset"
    assert "passkey" in sms_outbox(app)[-1]["text"]
    assert len(audit_events(app, "password.reset_held")) == 1
    old_password = english(app)
    log_in_by_password(old_password, user)  # the password is unchanged
    assert audit_events(app, "password.reset") == []

    clock.advance(3600)
    _, still_held = recover_by_sms("taken over 12345")
    assert b'id="recovery-held"' in still_held.data
    assert len(audit_events(app, "password.reset_held")) == 1  # the wait did not restart

    clock.advance(24 * 3600)
    browser, _done = recover_by_sms("after the wait 123")
    assert is_logged_in(browser)
    assert len(audit_events(app, "password.reset")) == 1


def test_a_passkey_login_cancels_a_waiting_sms_recovery(app: Flask, user: UserInfo) -> None:
    authenticator = enrolled(app, user)
    browser = english(app)
    page = browser.submit(browser.get("/password/forgot"), {"national_code": user.national_code})
    code = last_sms_code(app, user.mobile, "reset")
    browser.submit(page, {"code": code, "password": "taken over 12345", "password_confirm": "taken over 12345"})

    assert log_in_with_passkey(english(app), authenticator).location.endswith("/")
    assert len(audit_events(app, "password.reset_hold_cancelled")) == 1
    clock.advance(25 * 3600)
    time.sleep(1.1)  # otp.resend_interval
    page = browser.submit(browser.get("/password/forgot"), {"national_code": user.national_code})
    code = last_sms_code(app, user.mobile, "reset")
    again = browser.submit(page, {"code": code, "password": "taken over 12345", "password_confirm": "taken over 12345"})
    assert b'id="recovery-held"' in again.data  # a new wait, not the end of the old one
