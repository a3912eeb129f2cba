"""``idp users``: seeding identity-verified accounts from the command line."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from idp.extensions import db
from idp.store.models import User

from .helpers import Browser, UserInfo, valid_national_code

CODE = "0012345679"
PASSWORD = "a long enough passphrase"


def create_args(**changes: str) -> list[str]:
    values = {
        "--national-code": CODE,
        "--mobile": "09121234567",
        "--birthdate": "1990-03-21",
        "--given-name": "Sara",
        "--family-name": "Ahmadi",
        "--password": PASSWORD,
    }
    values.update(changes)
    args = ["users", "create"]
    for option, value in values.items():
        args += [option, value]
    return args


def create_user(runner: Any, **changes: str) -> dict[str, Any]:
    result = runner.invoke(args=[*create_args(**changes), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored_user(app: Any, national_code: str = CODE) -> User | None:
    with app.app_context():
        row = db.session.scalar(select(User).where(User.national_code == national_code))
        if row is not None:
            db.session.expunge(row)
        return row


def user_count(app: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_create_prints_id_and_the_user_can_log_in(app, client, runner, issuer):
    data = create_user(runner)
    assert data["id"]
    assert data["national_code"] == CODE
    assert data["mobile"] == "+989121234567"
    assert data["birthdate"] == "1990-03-21"
    assert data["identity_verified_at"]
    row = stored_user(app)
    assert row is not None and row.id == data["id"]
    assert row.given_name == "Sara" and row.family_name == "Ahmadi"
    assert row.birthdate == dt.date(1990, 3, 21)

    browser = Browser(client, issuer)
    page = browser.get("/login")
    assert page.status_code == 200
    home = browser.login(page, UserInfo(data["id"], CODE, PASSWORD))
    assert home.status_code == 200
    assert b'name="password"' not in home.data
    assert client.get("/").status_code == 200  # the account page, not a redirect to /login


def test_password_is_stored_as_argon2id(app, runner):
    create_user(runner)
    row = stored_user(app)
    assert row.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in row.password_hash


@pytest.mark.parametrize(
    "mobile",
    [
        "09121234567",
        "9121234567",
        "+98 912 123 4567",
        "+989121234567",
        "00989121234567",
        "989121234567",
        "0912-123-4567",
        "۰۹۱۲۱۲۳۴۵۶۷",
        "٠٩١٢١٢٣٤٥٦٧",
    ],
)
def test_mobile_is_stored_in_e164(app, runner, mobile):
    data = create_user(runner, **{"--mobile": mobile})
    assert data["mobile"] == "+989121234567"
    assert stored_user(app).mobile == "+989121234567"


@pytest.mark.parametrize("code", ["۰۰۱۲۳۴۵۶۷۹", "٠٠١٢٣٤٥٦٧٩", "001-234567-9"])
def test_national_code_in_other_digits_is_normalised(app, runner, code):
    data = create_user(runner, **{"--national-code": code})
    assert data["national_code"] == CODE
    assert stored_user(app) is not None


def _tomorrow() -> str:
    return (dt.date.today() + dt.timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        pytest.param({"--national-code": "0012345678"}, "--national-code", id="check-digit"),
        pytest.param({"--national-code": "1111111111"}, "--national-code", id="same-digits"),
        pytest.param({"--national-code": "001234567"}, "--national-code", id="nine-digits"),
        pytest.param({"--national-code": "00123456790"}, "--national-code", id="eleven-digits"),
        pytest.param({"--national-code": "00123456x9"}, "--national-code", id="letter"),
        pytest.param({"--mobile": "08121234567"}, "--mobile", id="landline"),
        pytest.param({"--mobile": "0912123456"}, "--mobile", id="short-mobile"),
        pytest.param({"--mobile": "091212345678"}, "--mobile", id="long-mobile"),
        pytest.param({"--mobile": "+1 912 123 4567"}, "--mobile", id="foreign"),
        pytest.param({"--birthdate": _tomorrow()}, "--birthdate", id="future"),
        pytest.param({"--birthdate": "1990-02-30"}, "--birthdate", id="no-such-day"),
        pytest.param({"--birthdate": "21/03/1990"}, "--birthdate", id="not-iso"),
        pytest.param({"--birthdate": "yesterday"}, "--birthdate", id="not-a-date"),
        pytest.param({"--password": "short"}, "--password", id="short-password"),
        pytest.param({"--password": CODE}, "--password", id="password-is-national-code"),
        pytest.param({"--password": "09121234567"}, "--password", id="password-is-mobile"),
        pytest.param({"--given-name": "  "}, "--given-name", id="blank-given-name"),
    ],
)
def test_create_errors_name_the_option(app, runner, changes, option):
    result = runner.invoke(args=create_args(**changes))
    assert result.exit_code != 0
    assert option in result.output, result.output
    assert user_count(app) == 0


def test_duplicate_national_code_is_refused(app, runner):
    first = create_user(runner)
    result = runner.invoke(args=create_args(**{"--national-code": "۰۰۱۲۳۴۵۶۷۹", "--mobile": "09351234567"}))
    assert result.exit_code != 0
    assert CODE in result.output
    assert user_count(app) == 1
    assert stored_user(app).id == first["id"]
    assert stored_user(app).mobile == "+989121234567"


def test_two_different_people(app, runner):
    create_user(runner)
    other = valid_national_code("123456789")
    create_user(runner, **{"--national-code": other})
    assert user_count(app) == 2


def test_create_is_audited_without_password(runner):
    data = create_user(runner)
    result = runner.invoke(args=["audit", "list", "--json"])
    assert result.exit_code == 0
    events = json.loads(result.stdout)
    assert any(e["event"] == "user.created" and e["user_id"] == data["id"] for e in events)
    assert PASSWORD not in result.stdout


def test_show(runner):
    data = create_user(runner)
    result = runner.invoke(args=["users", "show", CODE, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == data["id"]
    assert shown["mobile"] == "+989121234567"
    assert "password" not in result.stdout and "argon2" not in result.stdout

    text = runner.invoke(args=["users", "show", "۰۰۱۲۳۴۵۶۷۹"])
    assert text.exit_code == 0
    assert data["id"] in text.output and "Sara" in text.output
    assert "argon2" not in text.output


def test_show_unknown_or_invalid(runner):
    unknown = runner.invoke(args=["users", "show", valid_national_code("123456789")])
    assert unknown.exit_code != 0
    invalid = runner.invoke(args=["users", "show", "0012345678"])
    assert invalid.exit_code != 0
