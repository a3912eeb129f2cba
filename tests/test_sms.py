"""Text-message backends (idp/sms): the outbox file, the generic webhook and Kavenegar, each against a fake
gateway started in the test, and the configuration checks of the Kavenegar backend."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from idp.config import ConfigError, load_config
from idp.sms import SmsUnavailable, sender_from_config
from idp.sms.gateways import HttpWebhookSender, KavenegarSender
from idp.sms.outbox import OutboxSender

from .helpers import english_browser
from .test_registry import fake_servers, json_response, unused_port

CODE = "493817"
TEXT = f"Hoviyat registration code: {CODE}\nDo not give this code to anyone."
API_KEY = "4A7B2C9D8E1F-kavenegar-secret-key"
TOKEN = "webhook-secret-token-5c1f"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
KAVENEGAR_OK = {"return": {"status": 200, "message": "تایید شد"}, "entries": [{"messageid": 8792343}]}


@pytest.fixture
def fake_server():
    with fake_servers() as start:
        yield start


class LogCapture(logging.Handler):
    """Every record logged anywhere while the test runs (pytest's caplog is off under -p no:logging)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        lines = []
        for record in self.records:
            lines.append(record.getMessage())
            lines.append(repr(record.args))
            if record.exc_info:
                lines.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(lines)

    def provider_text(self) -> str:
        """What the provider's own loggers wrote (at any level)."""
        return "\n".join(r.getMessage() + repr(r.args) for r in self.records if r.name.startswith("idp"))


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    idp_logger = logging.getLogger("idp")
    old_root, old_idp = root.level, idp_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    idp_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root)
        idp_logger.setLevel(old_idp)


# -- outbox ---------------------------------------------------------------------------------------------


def read_lines(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_outbox_writes_one_json_object_per_line(tmp_path):
    path = tmp_path / "var" / "sms-outbox.jsonl"  # the folder does not exist yet
    sender = OutboxSender(path)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    sender.send("+989121234567", TEXT, purpose="register", code=CODE)

    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("\n") and raw.count("\n") == 1
    [record] = read_lines(path)
    assert record["to"] == "+989121234567"
    assert record["text"] == TEXT
    assert record["code"] == CODE
    assert record["purpose"] == "register"
    assert ISO_Z.match(record["at"]), record["at"]
    at = dt.datetime.strptime(record["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before - dt.timedelta(seconds=1) <= at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def test_outbox_appends(tmp_path):
    path = tmp_path / "sms-outbox.jsonl"
    earlier = {"to": "+989351112233", "text": "x", "code": "111111", "purpose": "login", "at": "2026-01-01T00:00:00Z"}
    path.write_text(json.dumps(earlier) + "\n", encoding="utf-8")

    OutboxSender(path).send("+989121234567", TEXT, purpose="register", code=CODE)
    OutboxSender(path).send("+989121234567", "کد ورود: 222222", purpose="login", code="222222")

    records = read_lines(path)
    assert records[0] == earlier
    assert [(r["purpose"], r["code"]) for r in records[1:]] == [("register", CODE), ("login", "222222")]
    assert records[2]["text"] == "کد ورود: 222222"


def test_outbox_keeps_lines_whole_under_concurrent_sends(tmp_path):
    path = tmp_path / "sms-outbox.jsonl"
    sender = OutboxSender(path)
    threads, per_thread = 12, 25
    padding = "ی" * 3000  # long lines: a torn write would show
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def send_many(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                code = f"{worker:02d}{i:04d}"
                sender.send(f"+98912{worker:07d}", f"{code} {padding}", purpose="login", code=code)
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=send_many, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert not errors
    records = read_lines(path)  # every line is a whole JSON object
    assert len(records) == threads * per_thread
    assert {r["code"] for r in records} == {f"{w:02d}{i:04d}" for w in range(threads) for i in range(per_thread)}
    assert all(r["text"] == f"{r['code']} {padding}" for r in records)


def test_outbox_that_cannot_be_written_is_unavailable(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(SmsUnavailable):
        OutboxSender(blocker / "sms-outbox.jsonl").send("+989121234567", TEXT, purpose="register", code=CODE)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Files are created under the umask most systems have (022: readable by all), not a stricter one."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outbox_is_created_readable_by_its_owner_only(tmp_path, usual_umask):
    path = tmp_path / "var" / "sms-outbox.jsonl"
    OutboxSender(path).send("+989121234567", TEXT, purpose="register", code=CODE)
    assert mode_of(path) == 0o600


def test_an_outbox_others_may_read_is_tightened(tmp_path):
    path = tmp_path / "sms-outbox.jsonl"
    path.write_text("", encoding="utf-8")
    path.chmod(0o644)
    sender = OutboxSender(path)  # at start-up
    assert mode_of(path) == 0o600
    path.chmod(0o664)  # loosened while the provider runs
    sender.send("+989121234567", TEXT, purpose="register", code=CODE)
    assert mode_of(path) == 0o600
    assert read_lines(path)[0]["code"] == CODE


@pytest.mark.parametrize("before", ["missing", "open to others"])
def test_codes_texted_by_the_provider_land_in_a_private_outbox(app, user, usual_umask, before):
    config = app.extensions["idp"].config
    outbox = config.var_file(config.sms.outbox_path, "sms-outbox.jsonl")
    if before == "open to others":
        outbox.write_text("", encoding="utf-8")
        outbox.chmod(0o644)
    browser = english_browser(app)
    page = browser.submit(browser.get("/login/sms"), {"national_code": user.national_code}, field_name="national_code")
    assert page.request.path == "/login/sms/verify"
    assert read_lines(outbox)[-1]["purpose"] == "login"
    assert mode_of(outbox) == 0o600


# -- generic webhook --------------------------------------------------------------------------------------


def test_webhook_posts_json_with_bearer_token(fake_server):
    server = fake_server(lambda request: json_response({"ok": True}))
    sender = HttpWebhookSender(server.url + "/send", TOKEN, timeout=2)

    sender.send("+989121234567", TEXT, purpose="register", code=CODE)

    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/send"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert seen.json() == {"to": "+989121234567", "text": TEXT, "purpose": "register"}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_any_2xx_counts_as_sent(fake_server, status):
    server = fake_server(lambda request: Response("", status=status))
    HttpWebhookSender(server.url, TOKEN, timeout=2).send("+989121234567", TEXT, purpose="login", code=CODE)
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_webhook_non_2xx_is_unavailable(fake_server, logs, status):
    server = fake_server(lambda request: Response("no", status=status))
    with pytest.raises(SmsUnavailable) as raised:
        HttpWebhookSender(server.url, TOKEN, timeout=2).send("+989121234567", TEXT, purpose="register", code=CODE)
    assert CODE not in str(raised.value)
    assert CODE not in logs.text()
    assert TOKEN not in logs.text()
    assert str(status) in logs.provider_text()  # the failure is logged, with the gateway's status


@pytest.mark.slow
def test_webhook_timeout_is_unavailable(fake_server, logs):
    def slow(request: Request) -> Response:
        time.sleep(1.6)
        return Response("", status=200)

    server = fake_server(slow)
    started = time.monotonic()
    with pytest.raises(SmsUnavailable):
        HttpWebhookSender(server.url, TOKEN, timeout=1).send("+989121234567", TEXT, purpose="register", code=CODE)
    assert time.monotonic() - started < 1.5
    assert CODE not in logs.text()
    assert logs.provider_text()


def test_webhook_connection_refused_is_unavailable(logs):
    sender = HttpWebhookSender(f"http://127.0.0.1:{unused_port()}/send", TOKEN, timeout=1)
    with pytest.raises(SmsUnavailable) as raised:
        sender.send("+989121234567", TEXT, purpose="register", code=CODE)
    assert CODE not in str(raised.value)
    assert CODE not in logs.text()
    assert TOKEN not in logs.text()


def test_webhook_success_logs_no_code(fake_server, logs):
    server = fake_server(lambda request: Response("", status=200))
    HttpWebhookSender(server.url, TOKEN, timeout=2).send("+989121234567", TEXT, purpose="register", code=CODE)
    assert CODE not in logs.text()


# -- Kavenegar ------------------------------------------------------------------------------------------


def kavenegar(server_url: str, template: str = "hoviyat-otp", timeout: float = 2) -> KavenegarSender:
    return KavenegarSender(server_url, API_KEY, template, timeout=timeout)


def test_kavenegar_code_goes_through_verify_lookup(fake_server, logs):
    server = fake_server(lambda request: json_response(KAVENEGAR_OK))

    kavenegar(server.url + "/").send("+989121234567", TEXT, purpose="register", code=CODE)

    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == f"/v1/{API_KEY}/verify/lookup.json"
    params = {**seen.args, **seen.form}
    assert params == {"receptor": "09121234567", "token": CODE, "template": "hoviyat-otp"}
    assert CODE not in logs.text()
    assert API_KEY not in logs.text()


def test_kavenegar_message_without_code_goes_through_sms_send(fake_server):
    server = fake_server(lambda request: json_response(KAVENEGAR_OK))
    notice = "شماره موبایل حساب هویت شما تغییر کرد."

    kavenegar(server.url).send("+989351112233", notice, purpose="change_mobile")

    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == f"/v1/{API_KEY}/sms/send.json"
    params = {**seen.args, **seen.form}
    assert params == {"receptor": "09351112233", "message": notice}


@pytest.mark.parametrize(
    "answer",
    [
        json_response({"return": {"status": 418, "message": "اعتبار کافی نیست"}, "entries": None}),
        json_response({"return": {"status": 411, "message": "receptor invalid"}, "entries": None}),
        json_response({"return": {"status": 401, "message": "bad key"}}, 401),
        json_response({"return": {"status": 200}}, 500),
        json_response({"entries": []}),
        json_response([1, 2]),
        Response("<html>bad gateway</html>", status=502, mimetype="text/html"),
        Response("<html>ok?</html>", status=200, mimetype="text/html"),
    ],
    ids=["418", "411", "http-401", "http-500", "no-return", "list", "html-502", "html-200"],
)
def test_kavenegar_refusal_is_unavailable(fake_server, logs, answer):
    server = fake_server(lambda request: answer)
    with pytest.raises(SmsUnavailable) as raised:
        kavenegar(server.url).send("+989121234567", TEXT, purpose="login", code=CODE)
    for secret in (CODE, API_KEY):
        assert secret not in str(raised.value)
        assert secret not in logs.text()
    assert logs.provider_text()  # the refusal is logged


def test_kavenegar_connection_refused_is_unavailable(logs):
    with pytest.raises(SmsUnavailable) as raised:
        kavenegar(f"http://127.0.0.1:{unused_port()}", timeout=1).send(
            "+989121234567", TEXT, purpose="login", code=CODE
        )
    for secret in (CODE, API_KEY):
        assert secret not in str(raised.value)
        assert secret not in logs.text()


@pytest.mark.slow
def test_kavenegar_timeout_is_unavailable(fake_server, logs):
    def slow(request: Request) -> Response:
        time.sleep(1.6)
        return json_response(KAVENEGAR_OK)

    server = fake_server(slow)
    with pytest.raises(SmsUnavailable):
        kavenegar(server.url, timeout=1).send("+989121234567", TEXT, purpose="login", code=CODE)
    for secret in (CODE, API_KEY):
        assert secret not in logs.text()


# -- configuration --------------------------------------------------------------------------------------


@pytest.fixture
def no_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # load_config reads ./config.toml by default


def test_kavenegar_base_url_comes_from_config(no_config_file, fake_server):
    server = fake_server(lambda request: json_response(KAVENEGAR_OK))
    config = load_config(
        environ={},
        overrides={
            "sms": {
                "backend": "kavenegar",
                "kavenegar_api_key": API_KEY,
                "kavenegar_template": "verify-code",
                "kavenegar_url": server.url,
            }
        },
    )
    sender_from_config(config).send("+989121234567", TEXT, purpose="login", code=CODE)
    [seen] = server.seen
    assert seen.path == f"/v1/{API_KEY}/verify/lookup.json"
    assert {**seen.args, **seen.form}["template"] == "verify-code"


def test_webhook_settings_come_from_config(no_config_file, fake_server):
    server = fake_server(lambda request: Response("", status=204))
    config = load_config(
        environ={}, overrides={"sms": {"backend": "http", "http_url": server.url + "/hook", "http_token": TOKEN}}
    )
    sender_from_config(config).send("+989121234567", TEXT, purpose="login", code=CODE)
    [seen] = server.seen
    assert (seen.path, seen.headers["Authorization"]) == ("/hook", f"Bearer {TOKEN}")


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "sms.kavenegar_api_key"),
        ({"kavenegar_template": "verify-code"}, "sms.kavenegar_api_key"),
        ({"kavenegar_api_key": API_KEY}, "sms.kavenegar_template"),
        ({"kavenegar_api_key": API_KEY, "kavenegar_template": ""}, "sms.kavenegar_template"),
    ],
)
def test_kavenegar_without_key_or_template_is_a_config_error(no_config_file, settings, key):
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"sms": {"backend": "kavenegar", **settings}})
    assert raised.value.key == key
    assert key in str(raised.value)


def test_kavenegar_settings_from_environment(no_config_file):
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"IDP_SMS_BACKEND": "kavenegar", "IDP_SMS_KAVENEGAR_API_KEY": API_KEY})
    assert raised.value.key == "sms.kavenegar_template"
    assert API_KEY not in str(raised.value)


def test_unknown_sms_backend_is_a_config_error(no_config_file):
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"sms": {"backend": "pigeon"}})
    assert raised.value.key == "sms.backend"
