"""Sending text messages: one small interface, three backends (outbox file, generic webhook, Kavenegar).

A message that carries a one-time code names its ``purpose`` and ``code``: the outbox records them (tests
and developers read codes from it); gateways get the text. Nothing here logs a code.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Config


class SmsUnavailable(RuntimeError):
    """The gateway failed or timed out; the user should try again in a moment."""


class SmsSender(Protocol):
    def send(self, to: str, text: str, *, purpose: str, code: str | None = None) -> None:
        """Send ``text`` to the E.164 number ``to``; raise :class:`SmsUnavailable` when it cannot be sent."""


def sender_from_config(config: Config) -> SmsSender:
    from .gateways import HttpWebhookSender, KavenegarSender
    from .outbox import OutboxSender

    settings = config.sms
    if settings.backend == "http":
        return HttpWebhookSender(settings.http_url, settings.http_token, timeout=settings.timeout)
    if settings.backend == "kavenegar":
        return KavenegarSender(
            settings.kavenegar_url, settings.kavenegar_api_key, settings.kavenegar_template, timeout=settings.timeout
        )
    return OutboxSender(config.var_file(settings.outbox_path, "sms-outbox.jsonl"))
