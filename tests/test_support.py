"""The support page (/support): contact details from the configuration and a message form, logged in or
not; admins read the messages with ``idp support list``."""

from __future__ import annotations

import itertools
import json
import random
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from idp.extensions import db
from idp.store.models import AuditEvent, SupportMessage

from .helpers import Browser, UserInfo, field_error, find_form

EN = {"Accept-Language": "en"}
MESSAGE = {
    "name": "Sara Mohammadi",
    "contact": "sara@example.com",
    "subject": "Cannot log in",
    "body": "My code never arrives.\nPlease help.",
}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "title"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "title"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(" ".join(data.split()))


_addresses = itertools.count(random.randrange(1 << 20))


@pytest.fixture(autouse=True)
def client_address() -> str:
    """A client IP address of this test alone.

    The page allows 10 messages an hour per address. On Redis, Flask-Limiter's counters outlive each test
    (conftest only empties the store's own key prefix), so with every test client at 127.0.0.1 the tests of a
    run would share one budget.
    """
    global CLIENT_ADDRESS
    n = next(_addresses) % (1 << 24)
    CLIENT_ADDRESS = f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
    return CLIENT_ADDRESS


CLIENT_ADDRESS = "127.0.0.1"


def new_client(app: Flask) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = CLIENT_ADDRESS
    return client


def texts(response: Any) -> list[str]:
    parser = _Text()
    parser.feed(response.get_data(as_text=True))
    return parser.text


def messages(app: Flask) -> list[SupportMessage]:
    with app.app_context():
        rows = list(db.session.scalars(select(SupportMessage).order_by(SupportMessage.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def send(client: Any, **changes: str) -> Any:
    page = client.get("/support", headers=EN)
    assert page.status_code == 200
    form = find_form(page.get_data(as_text=True), field_name="subject")
    return client.post("/support", data={**form.fields, **MESSAGE, **changes}, headers=EN)


def log_in(app: Flask, user: UserInfo) -> Any:
    client = new_client(app)
    browser = Browser(client, app.extensions["idp"].issuer)
    page = browser.login(browser.get("/login"), user)
    assert page.request.path == "/", page.request.path
    return client


# -- contact details -------------------------------------------------------------------------------------


def test_contact_details_from_the_configuration_are_shown(app_with):
    application = app_with(support={"phone": "021-41606", "email": "help@example.ir", "hours": "Sat-Wed 8-16"})
    client = new_client(application)
    page = client.get("/support", headers=EN)
    assert page.status_code == 200
    text = " ".join(texts(page))
    assert "021-41606" in text
    assert "help@example.ir" in text
    assert "Sat-Wed 8-16" in text
    assert 'href="mailto:help@example.ir"' in page.get_data(as_text=True)


def test_contact_phone_is_in_persian_digits_in_persian(app_with):
    application = app_with(support={"phone": "021-41606", "email": "help@example.ir"})
    text = " ".join(texts(new_client(application).get("/support")))
    assert "۰۲۱-۴۱۶۰۶" in text
    assert "021-41606" not in text
    assert "help@example.ir" in text


def test_empty_contact_details_are_hidden(app):
    page = new_client(app).get("/support", headers=EN)
    assert page.status_code == 200
    found = texts(page)
    assert "Phone" not in found and "Email" not in found and "Hours" not in found and "Address" not in found
    assert "mailto:" not in page.get_data(as_text=True)
    # The message form is there all the same.
    assert find_form(page.get_data(as_text=True), field_name="subject")
    assert 'name="body"' in page.get_data(as_text=True)


# -- the message form ------------------------------------------------------------------------------------


def test_a_logged_out_visitor_can_send_a_message(app):
    client = new_client(app)
    response = send(client)
    assert response.status_code == 303
    assert urlsplit(response.location).path == "/support"
    [message] = messages(app)
    assert message.user_id is None
    assert (message.name, message.contact, message.subject, message.body) == (
        MESSAGE["name"],
        MESSAGE["contact"],
        MESSAGE["subject"],
        MESSAGE["body"],
    )
    confirmation = client.get("/support", headers=EN)
    assert "Your message was sent" in " ".join(texts(confirmation))


def test_a_logged_in_user_gets_the_name_prefilled_and_the_message_is_theirs(app, user):
    client = log_in(app, user)
    page = client.get("/support", headers=EN)
    form = find_form(page.get_data(as_text=True), field_name="subject")
    assert form.fields["name"] == "علی رضایی"
    assert form.fields["contact"] in {"09121234567", "+989121234567"}
    response = client.post("/support", data={**form.fields, "subject": "Address", "body": "How do I add one?"})
    assert response.status_code == 303
    [message] = messages(app)
    assert message.user_id == user.id
    assert message.name == "علی رضایی"
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "support.message")).all()
        assert [e.user_id for e in events] == [user.id]
        assert "How do I add one?" not in json.dumps([e.detail for e in events], ensure_ascii=False)


def test_fields_are_trimmed(app):
    send(new_client(app), name="  Sara  ", subject="  Hello ")
    [message] = messages(app)
    assert message.name == "Sara" and message.subject == "Hello"


@pytest.mark.parametrize("field", ["name", "contact", "subject", "body"])
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_fields_are_field_errors(app, field, value):
    response = send(new_client(app), **{field: value})
    assert response.status_code == 200
    assert field_error(response, field, raw=True), response.get_data(as_text=True)[:3000]
    for other in {"name", "contact", "subject", "body"} - {field}:
        assert field_error(response, other, raw=True) is None
    assert messages(app) == []


def test_a_too_long_message_is_a_field_error(app):
    response = send(new_client(app), body="x" * 5001)
    assert response.status_code == 200
    assert field_error(response, "body", raw=True)
    assert messages(app) == []


def test_a_normal_user_does_not_hit_the_rate_limit(app):
    client = new_client(app)
    assert send(client, subject="").status_code == 200  # a mistake, corrected
    for number in range(4):
        response = send(client, subject=f"Question {number}")
        assert response.status_code == 303, (number, response.status_code)
    assert [m.subject for m in messages(app)] == [f"Question {n}" for n in range(4)]


def test_a_flood_of_messages_is_limited(app):
    client = new_client(app)
    statuses = [send(client, subject=f"Spam {n}").status_code for n in range(12)]
    assert statuses[:10] == [303] * 10
    assert statuses[10:] == [429, 429]
    assert len(messages(app)) == 10


def test_posting_without_csrf_is_refused(app):
    response = new_client(app).post("/support", data=MESSAGE)
    assert response.status_code == 400
    assert messages(app) == []


# -- idp support list --------------------------------------------------------------------------------------


def test_support_list_json_shows_the_messages(app, runner, user):
    send(new_client(app), subject="First")
    send(log_in(app, user), subject="Second", body="Второй / دوم")
    result = runner.invoke(args=["support", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["subject"] for row in rows] == ["Second", "First"]  # most recent first
    newest, oldest = rows
    assert newest["user_id"] == user.id and oldest["user_id"] is None
    assert newest["body"] == "Второй / دوم"
    assert oldest["name"] == MESSAGE["name"] and oldest["contact"] == MESSAGE["contact"]
    assert oldest["body"] == MESSAGE["body"]
    assert newest["id"] != oldest["id"] and newest["at"]


def test_support_list_limit(app, runner):
    for subject in ("One", "Two", "Three"):
        send(new_client(app), subject=subject)
    result = runner.invoke(args=["support", "list", "--json", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert [row["subject"] for row in json.loads(result.output)] == ["Three", "Two"]


def test_support_list_text_output(app, runner):
    send(new_client(app))
    result = runner.invoke(args=["support", "list"])
    assert result.exit_code == 0, result.output
    for value in MESSAGE.values():
        for line in value.splitlines():
            assert line in result.output


def test_support_list_when_there_are_no_messages(app, runner):
    result = runner.invoke(args=["support", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    result = runner.invoke(args=["support", "list"])
    assert result.exit_code == 0 and result.output.strip()
