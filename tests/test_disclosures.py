"""The disclosure ledger (README, "Your account"): every release of claims to a relying party - the code exchange's
and the refresh's ID tokens, userinfo, introspection - recorded once, by the claims' names only, folded when
repeated; the page /account/disclosures with its filters, pages and downloads; the data export; the admin commands;
the retention and its pruning.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

import jdatetime
import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import MetaData, Table, select

from idp import clock, totp
from idp.config import ConfigError, load_config
from idp.extensions import db
from idp.rules.digits import to_persian_digits
from idp.rules.mobile import national_format
from idp.store import commit
from idp.store.clients import delete_client, get_client
from idp.store.models import Grant, User
from idp.store.passkeys import add_passkey

from .helpers import (
    Browser,
    ClientInfo,
    UserInfo,
    browser_for,
    code_flow_tokens,
    create_test_client,
    create_test_user,
    exchange_code,
    get_code,
    grant_id_of,
    in_parallel,
    refresh_grant,
    statements_run,
)

ALL_SCOPES = "openid profile phone national_id"
DAY = 24 * 3600
#: What an ID token carries besides the claims about the person.
PROTOCOL_CLAIMS = {"iss", "aud", "iat", "exp", "auth_time", "acr", "amr", "sid", "nonce", "at_hash"}
TEHRAN_OFFSET = dt.timedelta(hours=3, minutes=30)


# -- helpers ---------------------------------------------------------------------------------------------------


def ledger_table() -> Table:
    """The ledger's table as the database has it (every column it holds), times naive UTC."""
    return Table("disclosures", MetaData(), autoload_with=db.engine)


def ledger(app: Flask) -> list[dict[str, Any]]:
    """Every row of the ledger's table, every column, in the order written."""
    with app.app_context():
        table = ledger_table()
        rows = [dict(row._mapping) for row in db.session.execute(select(table).order_by(table.c.id))]
        db.session.remove()
    return rows


def of_purpose(app: Flask, purpose: str) -> list[dict[str, Any]]:
    return [row for row in ledger(app) if row["purpose"] == purpose]


def signed_in(app: Flask, rp: ClientInfo, user: UserInfo, scope: str = ALL_SCOPES, **extra: str) -> dict[str, Any]:
    """A browser that logged in and let ``rp`` in, and ``rp``'s token response."""
    browser = browser_for(app, language="en")
    code, verifier, _ = get_code(browser, rp, user, scope=scope, **extra)
    response = exchange_code(browser.client, rp, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"browser": browser, **response.get_json()}


def userinfo(client: FlaskClient, access_token: str) -> Any:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def introspect(client: FlaskClient, rp: ClientInfo, token: str) -> Any:
    return client.post("/token/introspect", data={"token": token}, auth=(rp.client_id, rp.client_secret))


def id_token_claims(client: FlaskClient, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256", "PS256", "ES256"]).claims)


def about_the_person(claims: dict[str, Any]) -> list[str]:
    return sorted(set(claims) - PROTOCOL_CLAIMS)


def session_of_grant(app: Flask, grant_id: str) -> str:
    with app.app_context():
        session_id = db.session.get(Grant, grant_id).session_id
        db.session.remove()
    return session_id


def write_rows(app: Flask, user_id: str, client_id: str, count: int, at: dt.datetime, **changes: Any) -> None:
    """``count`` ledger rows of distinct sessions, the n-th a minute after ``at`` (for pages of many lines)."""
    with app.app_context():
        table = ledger_table()
        for n in range(count):
            moment = (at + dt.timedelta(minutes=n)).astimezone(dt.UTC).replace(tzinfo=None)
            row = {
                "user_id": user_id,
                "client_id": client_id,
                "session_id": f"session-{n}",
                "purpose": changes.get("purpose", "userinfo"),
                "claims": "sub name",
                "national_id": False,
                "verified_claims": False,
                "count": 1,
                "first_at": moment,
                "last_at": moment,
            }
            db.session.execute(table.insert(), row)
        commit()
        db.session.remove()


class LedgerPage(HTMLParser):
    """The rows of the ledger's table (``tr.disclosure``): the app's name, the time, the claims, the purpose, the
    marks; and the page's links by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.links: dict[str, str] = {}
        self._cell: str | None = None
        self._row: dict[str, Any] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "a" and "id" in a:
            self.links[a["id"]] = a["href"]
        if tag == "tr" and "disclosure" in classes:
            self._row = {"app": "", "when": "", "claims": [], "purpose": "", "marks": [], "bdi": False}
            self.rows.append(self._row)
        if self._row is None:
            return
        if tag == "td":
            self._cell = classes[0]
        if tag == "bdi" and self._cell == "app":
            self._row["bdi"] = True
        if tag == "time":
            self._row["datetime"] = a["datetime"]
        if tag == "li":
            self._row["claims"].append("")
        if tag == "span" and "mark" in classes:
            self._row["marks"].append(classes[1])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._row is None or self._cell is None or not data.strip():
            return
        text = " ".join(data.split())
        if self._cell == "app" and not self._row["marks"]:
            self._row["app"] += text
        elif self._cell == "when":
            self._row["when"] = (self._row["when"] + " " + text).strip()
        elif self._cell == "released":
            self._row["claims"][-1] += text
        elif self._cell == "purpose":
            self._row["purpose"] += text


def ledger_page(browser: Browser, query: str = "") -> LedgerPage:
    response = browser.client.get("/account/disclosures" + query)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return LedgerPage(response.get_data(as_text=True))


# -- what is recorded -----------------------------------------------------------------------------------------


def test_a_sign_in_records_the_names_its_id_token_released_once(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    rows = ledger(app)
    assert len(rows) == 1
    row = rows[0]
    released = id_token_claims(tokens["browser"].client, tokens["id_token"])
    assert row["purpose"] == "login" and row["client_id"] == rp_client.client_id and row["user_id"] == user.id
    assert sorted(row["claims"].split()) == about_the_person(released)
    assert row["claims"].split()[0] == "sub"  # one fixed order: the identifier first, then scope by scope
    assert row["national_id"] and row["verified_claims"] and row["count"] == 1
    assert row["session_id"] == released["sid"]
    assert row["first_at"] == row["last_at"]


def test_a_sign_in_without_the_national_id_scope_is_not_marked(app, user, rp_client):
    signed_in(app, rp_client, user, scope="openid profile")
    (row,) = ledger(app)
    assert row["claims"] == "sub name given_name family_name birthdate"
    assert not row["national_id"] and not row["verified_claims"]


def test_the_national_id_inside_verified_claims_alone_is_marked(app, user, rp_client):
    """Asked for through the ``claims`` parameter, the national code may come only inside verified_claims."""
    claims = {
        "id_token": {"verified_claims": {"verification": {"trust_framework": None}, "claims": {"national_id": None}}}
    }
    tokens = signed_in(app, rp_client, user, scope="openid", claims=json.dumps(claims))
    released = id_token_claims(tokens["browser"].client, tokens["id_token"])
    assert "national_id" not in released and "national_id" in released["verified_claims"]["claims"]
    (row,) = ledger(app)
    assert row["claims"] == "sub verified_claims" and row["national_id"] and row["verified_claims"]


def test_a_refresh_adds_one_release_and_the_next_adds_one_to_its_count(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client
    first = refresh_grant(client, rp_client, tokens["refresh_token"])
    assert first.status_code == 200
    (row,) = of_purpose(app, "refresh")
    assert row["count"] == 1 and row["claims"] == ledger(app)[0]["claims"]
    assert sorted(row["claims"].split()) == about_the_person(id_token_claims(client, first.get_json()["id_token"]))

    clock.advance(600)  # the relying party refreshes every ten minutes
    second = refresh_grant(client, rp_client, first.get_json()["refresh_token"])
    assert second.status_code == 200
    (folded,) = of_purpose(app, "refresh")
    assert folded["id"] == row["id"] and folded["count"] == 2
    assert folded["first_at"] == row["first_at"] and folded["last_at"] == row["last_at"] + dt.timedelta(seconds=600)
    assert len(ledger(app)) == 2  # the sign-in's and the refreshes'


def test_a_refresh_without_rotation_records_its_release_with_its_other_writes(app, client, issuer, user):
    """A FAPI 2.0 client's refresh token is used again rather than rotated: its new idle expiry, the audit row and
    the release are written together (one statement on PostgreSQL)."""
    from .high_assurance import fapi_login

    login = fapi_login(app, client, issuer, user)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": login.tokens["refresh_token"],
        **login.keys.auth(login.rp.client_id, issuer),
    }
    with statements_run(app) as log:
        response = client.post("/token", data=data, headers={"DPoP": login.dpop_key.proof("POST", issuer + "/token")})
    assert response.status_code == 200, response.get_json()
    writes = [kind for kind in log.statements if kind != "SELECT"]
    assert writes == (["WITH"] if log.dialect == "postgresql" else ["UPDATE", "INSERT", "INSERT"]), log.entries
    (row,) = of_purpose(app, "refresh")
    assert row["count"] == 1 and row["client_id"] == login.rp.client_id


def test_each_userinfo_answer_adds_one_release(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client
    for _ in range(3):
        response = userinfo(client, tokens["access_token"])
        assert response.status_code == 200
    (row,) = of_purpose(app, "userinfo")
    assert row["count"] == 3
    assert sorted(row["claims"].split()) == sorted(response.get_json())
    assert row["national_id"] and row["verified_claims"]


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_an_introspection_adds_one_release_of_the_subject(app, user, rp_client, which):
    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client
    answer = introspect(client, rp_client, tokens[which]).get_json()
    assert answer["active"] is True and "sub" in answer
    (row,) = of_purpose(app, "introspection")
    assert (row["claims"], row["count"], row["national_id"]) == ("sub", 1, False)
    assert row["session_id"] == session_of_grant(app, grant_id_of(client, tokens["access_token"]))
    assert introspect(client, rp_client, tokens[which]).get_json()["active"] is True
    assert of_purpose(app, "introspection")[0]["count"] == 2


def test_an_inactive_or_foreign_token_at_introspection_adds_none(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client
    other = create_test_client(app, name="Other")
    assert introspect(client, other, tokens["access_token"]).get_json() == {"active": False}
    assert introspect(client, rp_client, "not-a-token").get_json() == {"active": False}
    revoked = client.post(
        "/token/revoke", data={"token": tokens["refresh_token"]}, auth=(rp_client.client_id, rp_client.client_secret)
    )
    assert revoked.status_code == 200
    assert introspect(client, rp_client, tokens["access_token"]).get_json() == {"active": False}
    assert of_purpose(app, "introspection") == []


def test_a_client_credentials_token_releases_nothing_about_a_person(app):
    machine = create_test_client(app, name="Machine", grant_types=["client_credentials"], scope="")
    client = app.test_client()
    token = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(machine.client_id, machine.client_secret)
    ).get_json()["access_token"]
    assert introspect(client, machine, token).get_json()["active"] is True
    assert ledger(app) == []


def test_failed_token_requests_add_nothing(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client
    before = ledger(app)
    bad_code = exchange_code(client, rp_client, "not-a-code", "a" * 43)
    bad_refresh = refresh_grant(client, rp_client, "not-a-refresh-token")
    wrong_secret = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp_client.client_id, "wrong"),
    )
    for response in (bad_code, bad_refresh, wrong_secret):
        assert response.status_code in (400, 401) and "id_token" not in response.get_json()
    assert ledger(app) == before

    rotated = refresh_grant(client, rp_client, tokens["refresh_token"])
    assert rotated.status_code == 200
    after_one = ledger(app)
    replayed = refresh_grant(client, rp_client, tokens["refresh_token"])  # rotated already: a replay, refused
    assert replayed.status_code == 400
    assert ledger(app) == after_one


def test_a_code_presented_twice_records_one_release(app, user, rp_client):
    browser = browser_for(app, language="en")
    code, verifier, _ = get_code(browser, rp_client, user, scope=ALL_SCOPES)
    assert exchange_code(browser.client, rp_client, code, verifier).status_code == 200
    assert exchange_code(browser.client, rp_client, code, verifier).status_code == 400
    assert [(row["purpose"], row["count"]) for row in ledger(app)] == [("login", 1)]


def test_releases_at_the_same_moment_fold_into_one_row_counting_each(app, user, rp_client):
    """Eight userinfo calls in parallel, none before: each inserts the row or adds to it, in one statement, so
    exactly one row counts all eight."""
    tokens = signed_in(app, rp_client, user)
    statuses = in_parallel(8, lambda _: userinfo(app.test_client(), tokens["access_token"]).status_code)
    assert statuses == [200] * 8
    (row,) = of_purpose(app, "userinfo")
    assert row["count"] == 8


def test_claim_values_never_reach_the_ledger(app, rp_client):
    person = create_test_user(
        app, national_code="0499370899", mobile="+989351112233", given_name="Zahra", family_name="Karimi",
        birthdate=dt.date(1985, 9, 23),
    )  # fmt: skip
    with app.app_context():
        account = db.session.get(User, person.id)
        account.email, account.email_verified = "zahra.karimi@example.ir", True
        account.postal_address, account.postal_code = "Tehran, Azadi Street 7", "1345678901"
        commit()
        db.session.remove()
    rp = create_test_client(app, name="Everything", scope="openid profile phone national_id email address")
    tokens = signed_in(app, rp, person, scope="openid profile phone national_id email address")
    client = tokens["browser"].client
    released = userinfo(client, tokens["access_token"]).get_json()
    assert released["national_id"] == "0499370899" and released["email"] == "zahra.karimi@example.ir"
    refreshed = refresh_grant(client, rp, tokens["refresh_token"]).get_json()
    assert introspect(client, rp, refreshed["access_token"]).get_json()["active"] is True

    values = [
        "0499370899", "Zahra", "Karimi", "Zahra Karimi", "1985-09-23", "1985", "+989351112233", "09351112233",
        "9351112233", national_format("+989351112233"), "zahra.karimi@example.ir", "Tehran", "Azadi", "1345678901",
        released["sub"], to_persian_digits("0499370899"),
    ]  # fmt: skip
    rows = ledger(app)
    assert {row["purpose"] for row in rows} == {"login", "userinfo", "refresh", "introspection"}
    for row in rows:
        for column, cell in row.items():
            for value in values:
                assert value not in str(cell), f"{value!r} found in the ledger's column {column}: {cell!r}"


def test_a_release_that_cannot_be_written_is_not_made(app, user, rp_client, monkeypatch):
    """Userinfo and introspection write their release before they answer: when the database fails there, the
    client gets 503 and none of the claims."""
    from sqlalchemy.exc import OperationalError

    tokens = signed_in(app, rp_client, user)
    client = tokens["browser"].client

    def database_gone(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("INSERT INTO disclosures ...", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr("idp.oidc.disclosures.record_under_grant", database_gone)
    for response in (userinfo(client, tokens["access_token"]), introspect(client, rp_client, tokens["access_token"])):
        assert response.status_code == 503, response.get_data(as_text=True)
        body = response.get_json()
        assert "sub" not in body and "national_id" not in body and body.get("active") is not True
    monkeypatch.undo()
    assert of_purpose(app, "userinfo") == of_purpose(app, "introspection") == []
    assert userinfo(client, tokens["access_token"]).status_code == 200


# -- the page -----------------------------------------------------------------------------------------------------


def test_the_page_lists_releases_newest_first_named_by_app_with_the_national_id_marked(app, user):
    carmaker = create_test_client(app, name="Car Portal", scope=ALL_SCOPES)
    news = create_test_client(app, name="خبرنامه", scope="openid profile")
    tokens = signed_in(app, carmaker, user)
    browser = tokens["browser"]
    clock.advance(60)
    code_flow_tokens(browser, news, user, scope="openid profile")
    clock.advance(60)
    assert userinfo(browser.client, tokens["access_token"]).status_code == 200

    home = browser.client.get("/").get_data(as_text=True)
    assert 'href="/account/disclosures"' in home
    page = ledger_page(browser)
    assert [(row["app"], row["purpose"]) for row in page.rows] == [
        ("Car Portal", "When it asked for your details"),
        ("خبرنامه", "When you signed in to it"),
        ("Car Portal", "When you signed in to it"),
    ]
    assert all(row["bdi"] for row in page.rows)
    assert [row["marks"] for row in page.rows] == [
        ["national-id-mark", "verified-mark"],
        [],
        ["national-id-mark", "verified-mark"],
    ]
    times = [row["datetime"] for row in page.rows]
    assert times == sorted(times, reverse=True)
    assert "Your national code" in page.rows[0]["claims"]
    assert "Your first name" in page.rows[1]["claims"] and "Your national code" not in page.rows[1]["claims"]
    assert page.rows[1]["claims"][0] == "An identifier of you made for this app"


def test_a_folded_row_shows_its_count_and_first_time(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    browser = tokens["browser"]
    for _ in range(3):
        assert userinfo(browser.client, tokens["access_token"]).status_code == 200
        clock.advance(120)
    row = next(row for row in ledger_page(browser).rows if row["purpose"] == "When it asked for your details")
    assert re.search(r"3 times since \w+day \d{4}-\d\d-\d\d \d\d:\d\d", row["when"]), row["when"]


def test_the_persian_page_gives_the_jalali_time_with_the_weekday(app, user, rp_client):
    browser = browser_for(app, language="fa")
    code, verifier, _ = get_code(browser, rp_client, user, scope=ALL_SCOPES)
    assert exchange_code(browser.client, rp_client, code, verifier).status_code == 200
    (stored,) = ledger(app)
    local = stored["last_at"].replace(tzinfo=dt.UTC) + TEHRAN_OFFSET
    jalali = jdatetime.date.fromgregorian(date=local.date())
    weekday = ("دوشنبه", "سه‌شنبه", "چهارشنبه", "پنجشنبه", "جمعه", "شنبه", "یکشنبه")[local.weekday()]
    (row,) = ledger_page(browser).rows
    assert row["when"].startswith(weekday + " " + to_persian_digits(str(jalali.day))), row["when"]
    assert to_persian_digits(f"{jalali.year}، {local:%H:%M}") in row["when"]
    assert row["purpose"] == "هنگام ورود شما به آن"
    assert row["marks"] == ["national-id-mark", "verified-mark"]


def test_an_app_since_removed_is_named_so(app, user):
    gone = create_test_client(app, name="Old Portal", scope=ALL_SCOPES)
    tokens = signed_in(app, gone, user)
    with app.app_context():
        delete_client(get_client(gone.client_id, fresh=True))
        commit()
        db.session.remove()
    (row,) = ledger_page(tokens["browser"]).rows
    assert row["app"] == "a removed app"
    assert (
        json.loads(tokens["browser"].client.get("/account/disclosures.json").data)["disclosures"][0]["client_name"]
        is None
    )


def test_the_page_shows_only_the_persons_own_releases(app, user, rp_client):
    other = create_test_user(app, national_code="0499370899", mobile="+989351112233")
    signed_in(app, rp_client, other)
    tokens = signed_in(app, rp_client, user, scope="openid profile")
    page = ledger_page(tokens["browser"])
    assert len(page.rows) == 1 and page.rows[0]["marks"] == []
    download = json.loads(tokens["browser"].client.get("/account/disclosures.json").data)
    assert len(download["disclosures"]) == 1


def test_filters_by_app_and_by_period(app, user):
    first = create_test_client(app, name="First", scope=ALL_SCOPES)
    second = create_test_client(app, name="Second", scope=ALL_SCOPES)
    now = clock.now()
    write_rows(app, user.id, first.client_id, 1, now - dt.timedelta(days=400))
    write_rows(app, user.id, second.client_id, 1, now - dt.timedelta(days=100))
    write_rows(app, user.id, first.client_id, 1, now - dt.timedelta(days=10), purpose="login")
    browser = browser_for(app, language="en")
    browser.login(browser.get("/login"), user)

    def apps(query: str) -> list[str]:
        return [row["app"] for row in ledger_page(browser, query).rows]

    assert apps("") == ["First", "Second", "First"]
    assert apps("?period=30d") == ["First"]
    assert apps("?period=1y") == ["First", "Second"]
    assert apps(f"?client={second.client_id}") == ["Second"]
    assert apps(f"?client={first.client_id}&period=1y") == ["First"]
    assert apps(f"?client={first.client_id}&period=all") == ["First", "First"]

    page = browser.client.get("/account/disclosures?client=someone-else&period=forever")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert 'id="client-error"' in html and 'id="period-error"' in html
    assert len(LedgerPage(html).rows) == 3  # every line, as without a filter
    for kind in ("json", "csv"):
        refused = browser.client.get(f"/account/disclosures.{kind}?period=forever")
        assert refused.status_code == 400 and "Content-Disposition" not in refused.headers
        assert "Not a valid choice" in refused.get_data(as_text=True)


def test_pages_of_fifty_with_links_that_keep_the_filters(app, user, rp_client):
    other = create_test_client(app, name="Other")
    start = clock.now() - dt.timedelta(days=5)
    write_rows(app, user.id, rp_client.client_id, 120, start)
    write_rows(app, user.id, other.client_id, 3, start)
    browser = browser_for(app, language="en")
    browser.login(browser.get("/login"), user)
    query = f"?client={rp_client.client_id}&period=30d"

    first = ledger_page(browser, query)
    assert len(first.rows) == 50 and "page-newer" not in first.links
    assert first.rows[0]["datetime"] == (start + dt.timedelta(minutes=119)).isoformat()
    older = first.links["page-older"]
    assert f"client={rp_client.client_id}" in older and "period=30d" in older and "page=2" in older
    second = ledger_page(browser, older[len("/account/disclosures") :])
    assert len(second.rows) == 50 and second.rows[0]["datetime"] == (start + dt.timedelta(minutes=69)).isoformat()
    third = ledger_page(browser, second.links["page-older"][len("/account/disclosures") :])
    assert len(third.rows) == 20 and "page-older" not in third.links
    assert third.rows[-1]["datetime"] == start.isoformat()
    newer = third.links["page-newer"]
    assert "page=2" in newer and f"client={rp_client.client_id}" in newer and "period=30d" in newer

    assert len(ledger_page(browser, query + "&page=99").rows) == 20  # past the end: the last page
    assert browser.client.get("/account/disclosures?page=0").status_code == 400
    assert browser.client.get("/account/disclosures?page=abc").status_code == 400


def test_the_downloads_hold_the_pages_rows(app, user):
    carmaker = create_test_client(app, name="=Car Portal", scope=ALL_SCOPES)
    news = create_test_client(app, name="خبرنامه", scope="openid profile")
    tokens = signed_in(app, carmaker, user)
    browser = tokens["browser"]
    clock.advance(60)
    code_flow_tokens(browser, news, user, scope="openid profile")
    assert userinfo(browser.client, tokens["access_token"]).status_code == 200
    page = ledger_page(browser)

    download = browser.client.get(
        LedgerPage(browser.client.get("/account/disclosures").get_data(as_text=True)).links["download-json"]
    )
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    records = json.loads(download.data)["disclosures"]
    assert [(r["client_name"], r["purpose_label"], r["last_at"], r["claim_labels"]) for r in records] == [
        (row["app"], row["purpose"], row["datetime"], row["claims"]) for row in page.rows
    ]
    assert [r["national_id"] for r in records] == ["national-id-mark" in row["marks"] for row in page.rows]
    assert records[0]["claims"][:2] == ["sub", "name"] and "national_id" in records[0]["claims"]
    assert all(dt.datetime.fromisoformat(r["last_at"]).tzinfo is not None for r in records)

    download = browser.client.get("/account/disclosures.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    lines = list(csv.DictReader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(line["client_name"], line["last_at"], line["claims"].split()) for line in lines] == [
        (r["client_name"].replace("=", "'=", 1) if r["client_name"] else "", r["last_at"], r["claims"]) for r in records
    ]
    assert lines[0]["client_name"] == "'=Car Portal"  # never read as a formula

    filtered = json.loads(browser.client.get(f"/account/disclosures.json?client={news.client_id}").data)
    assert [r["client_name"] for r in filtered["disclosures"]] == ["خبرنامه"]
    assert filtered["filters"] == {"client_id": news.client_id, "period": "all"}


@pytest.mark.parametrize("path", ["/account/disclosures", "/account/disclosures.json", "/account/disclosures.csv"])
def test_the_ledger_needs_a_login(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302 and response.location.endswith("/login")


# -- the data export ------------------------------------------------------------------------------------------


def test_the_export_holds_every_section_and_no_secret(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    browser = tokens["browser"]
    assert userinfo(browser.client, tokens["access_token"]).status_code == 200
    seed = pyotp.random_base32()
    public_key = bytes(range(77))
    with app.app_context():
        account = db.session.get(User, user.id)
        assert totp.enable(account, seed, pyotp.TOTP(seed).now()) is not None
        commit()
        add_passkey(
            user_id=user.id, credential_id="Y3JlZGVudGlhbC1pZC1vZi10ZXN0", public_key=public_key, sign_count=0,
            name="My phone", backup_eligible=True, backed_up=True, transports=["internal"], aaguid=None,
        )  # fmt: skip
        commit()
        account = db.session.get(User, user.id)
        password_hash, seed_encrypted = account.password_hash, account.totp_secret_encrypted
        db.session.remove()

    response = browser.client.get("/account/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    export = json.loads(body)
    assert export["profile"]["national_code"] == user.national_code
    assert export["profile"]["mobile"] == user.mobile and export["profile"]["authenticator_app_since"]
    assert len(export["sessions"]) == 1 and export["sessions"][0]["ended_at"] is None
    assert [c["client_name"] for c in export["consents"]] == ["Test Portal"]
    assert [p["name"] for p in export["passkeys"]] == ["My phone"] and set(export["passkeys"][0]) == {
        "name", "created_at", "last_used_at",
    }  # fmt: skip
    events = {e["event"] for e in export["security_events"]}
    assert {"login.succeeded", "consent.granted", "token.issued", "account.exported"} <= events
    issued = next(e for e in export["security_events"] if e["event"] == "token.issued")
    assert issued["description"] == "Test Portal was given access to your account"
    assert [(d["purpose"], d["count"]) for d in export["disclosures"]] == [("userinfo", 1), ("login", 1)]

    import base64

    secrets = [
        password_hash, "argon2", seed, seed_encrypted, "Y3JlZGVudGlhbC1pZC1vZi10ZXN0", public_key.hex(),
        base64.b64encode(public_key).decode(), base64.urlsafe_b64encode(public_key).decode().rstrip("="),
        tokens["access_token"], tokens["refresh_token"], tokens["id_token"], rp_client.client_secret,
        user.password,
    ]  # fmt: skip
    for secret in secrets:
        assert secret not in body, f"the export holds {secret[:12]}…"
    for section in ("password_hash", "totp_secret", "public_key", "credential_id", "recovery"):
        assert section not in body

    activity = browser.client.get("/account/activity", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "You downloaded all your data" in activity


def test_the_export_needs_a_login(app):
    response = app.test_client().get("/account/export")
    assert response.status_code == 302 and response.location.endswith("/login")


# -- the admin commands, retention and pruning -------------------------------------------------------------------


def test_the_admin_command_lists_a_persons_disclosures(app, user, rp_client):
    tokens = signed_in(app, rp_client, user)
    assert userinfo(tokens["browser"].client, tokens["access_token"]).status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "disclosures", "--user", to_persian_digits(user.national_code), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    download = json.loads(tokens["browser"].client.get("/account/disclosures.json").data)["disclosures"]
    assert listed == [
        {key: value for key, value in record.items() if key not in {"claim_labels", "purpose_label"}}
        for record in download
    ]
    text = runner.invoke(args=["audit", "disclosures", "--user", user.national_code])
    assert text.exit_code == 0
    assert text.output.count("Test Portal") == 2 and "NATIONAL-ID" in text.output and "userinfo" in text.output

    unknown = runner.invoke(args=["audit", "disclosures", "--user", "0499370899"])
    assert unknown.exit_code != 0 and "no account" in unknown.output
    invalid = runner.invoke(args=["audit", "disclosures", "--user", "12345"])
    assert invalid.exit_code != 0 and "--user" in invalid.output


def test_prune_deletes_rows_past_the_retention(app_with):
    app = app_with(privacy={"ledger_retention": 30 * DAY})
    person = create_test_user(app)
    portal = create_test_client(app, name="Portal")
    now = clock.now()
    write_rows(app, person.id, portal.client_id, 2, now - dt.timedelta(days=31))
    write_rows(app, person.id, portal.client_id, 1, now - dt.timedelta(days=29), purpose="login")
    result = app.test_cli_runner().invoke(args=["audit", "prune", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == 2
    assert [row["purpose"] for row in ledger(app)] == ["login"]
    events = app.test_cli_runner().invoke(args=["audit", "list", "--event", "disclosures.pruned", "--json"])
    assert json.loads(events.output)[0]["detail"]["deleted"] == 2

    clock.advance(2 * DAY)  # the last release of the remaining row is now 31 days old
    assert "deleted 1 disclosure ledger row" in app.test_cli_runner().invoke(args=["audit", "prune"]).output
    assert ledger(app) == []


def test_a_row_still_in_use_is_kept_whatever_its_first_release(app_with):
    """Retention counts from a row's last release: a folded row that an app still adds to stays."""
    app = app_with(privacy={"ledger_retention": DAY})
    person = create_test_user(app)
    portal = create_test_client(app, name="Portal", scope=ALL_SCOPES)
    tokens = signed_in(app, portal, person)
    client = tokens["browser"].client
    clock.advance(12 * 3600)
    first = refresh_grant(client, portal, tokens["refresh_token"])
    clock.advance(18 * 3600)
    second = refresh_grant(client, portal, first.get_json()["refresh_token"])
    assert second.status_code == 200
    clock.advance(10 * 3600)  # the sign-in 40 hours ago, the first refresh 28, the last 10
    assert app.test_cli_runner().invoke(args=["audit", "prune"]).exit_code == 0
    assert [(row["purpose"], row["count"]) for row in ledger(app)] == [("refresh", 2)]


def serve_start(app: Flask, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `idp serve` prints before it hands over to gunicorn (stopped there)."""

    def no_server(*args: Any) -> None:
        raise OSError("not in tests")

    monkeypatch.setattr("idp.cli.serve.os.execve", no_server)
    result = app.test_cli_runner().invoke(args=["serve", "--workers", "1"])
    assert "gunicorn could not be started: not in tests" in result.output, result.output
    return result.output


def test_serve_prunes_when_it_starts_at_most_once_a_day(app_with, monkeypatch):
    app = app_with(privacy={"ledger_retention": 30 * DAY})
    person = create_test_user(app)
    portal = create_test_client(app, name="Portal")
    write_rows(app, person.id, portal.client_id, 3, clock.now() - dt.timedelta(days=40))
    assert "pruned the disclosure ledger: 3 row(s)" in serve_start(app, monkeypatch)
    assert ledger(app) == []

    write_rows(app, person.id, portal.client_id, 1, clock.now() - dt.timedelta(days=40))
    clock.advance(DAY - 60)
    assert "pruned" not in serve_start(app, monkeypatch)  # a day has not passed: not again
    assert len(ledger(app)) == 1
    clock.advance(60)
    assert "pruned the disclosure ledger: 1 row(s)" in serve_start(app, monkeypatch)
    assert ledger(app) == []


def test_of_instances_starting_together_one_prunes(app):
    from idp.cli.audit import prune_ledger_if_due

    def start(_: int) -> bool:
        with app.app_context():
            try:
                return prune_ledger_if_due() is not None
            finally:
                db.session.remove()

    assert sorted(in_parallel(4, start)) == [False, False, False, True]


def test_the_retention_is_two_years_unless_configured(tmp_path):
    assert load_config(environ={}).privacy.ledger_retention == 730 * DAY
    environ = {"IDP_PRIVACY_LEDGER_RETENTION": str(90 * DAY)}
    assert load_config(environ=environ).privacy.ledger_retention == 90 * DAY
    for bad in ("3600", "0", "-1"):
        with pytest.raises(ConfigError, match=r"privacy\.ledger_retention.*at least one day"):
            load_config(environ={"IDP_PRIVACY_LEDGER_RETENTION": bad})
    with pytest.raises(ConfigError, match=r"privacy\.ledger_retention.*whole number"):
        load_config(environ={"IDP_PRIVACY_LEDGER_RETENTION": "2 years"})
