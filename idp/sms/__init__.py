"""Sending text messages: one small interface, three backends (outbox file, generic webhook, Kavenegar).

A message that carries a one-time code names its ``purpose`` and ``code``: the outbox records them (tests
and developers read codes from it); gateways get the text. Nothing here logs a code.
"""

from __future__ import annotations

from ..config import Config
from .base import SmsSender, SmsUnavailable
from .gateways import HttpWebhookSender, KavenegarSender
from .outbox import OutboxSender

__all__ = ["SmsSender", "SmsUnavailable", "sender_from_config"]


def sender_from_config(config: Config) -> SmsSender:
    settings = config.sms
    if settings.backend == "http":
        return HttpWebhookSender(settings.http_url, settings.http_token, timeout=settings.timeout)
    if settings.backend == "kavenegar":
        return KavenegarSender(
            settings.kavenegar_url, settings.kavenegar_api_key, settings.kavenegar_template, timeout=settings.timeout
        )
    return OutboxSender(config.var_file(settings.outbox_path, "sms-outbox.jsonl"))
