"""Sending email (verification codes for an email address): an outbox file for development and tests, or
SMTP. Nothing here logs a code."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from .config import Config
from .private_files import open_private_for_append, tighten_if_present

log = logging.getLogger(__name__)


class MailUnavailable(RuntimeError):
    """The mail server failed or timed out."""


class MailSender(Protocol):
    def send(self, to: str, subject: str, text: str, *, purpose: str, code: str | None = None) -> None: ...


class OutboxMailSender:
    """One JSON object per line: ``{"to", "subject", "text", "code", "purpose", "at"}``, in a file only the
    provider's user may read (it holds codes): created 0600, tightened at start-up and at each message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            tighten_if_present(self.path)
        except OSError as error:
            log.warning("mail outbox %s cannot be made private (mode 0600): %s", self.path, error.strerror)

    def send(self, to: str, subject: str, text: str, *, purpose: str, code: str | None = None) -> None:
        record = {
            "to": to,
            "subject": subject,
            "text": text,
            "code": code,
            "purpose": purpose,
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        try:
            with open_private_for_append(self.path) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as error:
            raise MailUnavailable(f"mail outbox {self.path} cannot be written: {error.strerror}") from None


class SmtpMailSender:
    def __init__(self, config: Config) -> None:
        self.settings = config.mail

    def send(self, to: str, subject: str, text: str, *, purpose: str, code: str | None = None) -> None:
        settings = self.settings
        message = EmailMessage()
        message["From"] = settings.from_address
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            log.warning("mail for %s failed: %s", purpose, error.__class__.__name__)
            raise MailUnavailable("the mail server did not accept the message") from None


def mail_sender_from_config(config: Config) -> MailSender:
    if config.mail.backend == "smtp":
        return SmtpMailSender(config)
    return OutboxMailSender(config.var_file(config.mail.outbox_path, "mail-outbox.jsonl"))
