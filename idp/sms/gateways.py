"""Real gateways: a generic webhook and Kavenegar's OTP "verify lookup" API.

Errors are logged with the gateway's status or the exception's class, never with the text or the code.
"""

from __future__ import annotations

import contextlib
import logging

import requests

from .base import SmsUnavailable

log = logging.getLogger(__name__)


class HttpWebhookSender:
    """POSTs ``{"to", "text", "purpose"}`` as JSON; any 2xx answer counts as sent."""

    def __init__(self, url: str, token: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, to: str, text: str, *, purpose: str, code: str | None = None) -> None:
        try:
            response = self.session.post(
                self.url, json={"to": to, "text": text, "purpose": purpose}, timeout=self.timeout
            )
        except requests.RequestException as error:
            log.warning("SMS webhook failed for a %s message: %s", purpose, error.__class__.__name__)
            raise SmsUnavailable("the SMS gateway did not answer") from None
        if not 200 <= response.status_code < 300:
            log.warning("SMS webhook refused a %s message: HTTP %s", purpose, response.status_code)
            raise SmsUnavailable(f"the SMS gateway refused the message (HTTP {response.status_code})")


class KavenegarSender:
    """Kavenegar's verify lookup: ``GET {url}/v1/{api_key}/verify/lookup.json?receptor=&token=&template=``.

    The template, defined in the Kavenegar panel, holds the wording; ``token`` is the code. Messages without a
    code (notices) go through the plain ``sms/send.json`` call.
    """

    def __init__(self, url: str, api_key: str, template: str, *, timeout: float) -> None:
        self.base = f"{url.rstrip('/')}/v1/{api_key}"
        self.template = template
        self.timeout = timeout
        self.session = requests.Session()

    def send(self, to: str, text: str, *, purpose: str, code: str | None = None) -> None:
        receptor = "0" + to.removeprefix("+98") if to.startswith("+98") else to
        if code is not None:
            url = f"{self.base}/verify/lookup.json"
            params = {"receptor": receptor, "token": code, "template": self.template}
        else:
            url = f"{self.base}/sms/send.json"
            params = {"receptor": receptor, "message": text}
        try:
            response = self.session.post(url, data=params, timeout=self.timeout)
        except requests.RequestException as error:
            log.warning("Kavenegar failed for a %s message: %s", purpose, error.__class__.__name__)
            raise SmsUnavailable("the SMS gateway did not answer") from None
        status = None
        with contextlib.suppress(ValueError, AttributeError):
            status = response.json().get("return", {}).get("status")
        if response.status_code != 200 or status != 200:
            log.warning("Kavenegar refused a %s message: HTTP %s, status %s", purpose, response.status_code, status)
            raise SmsUnavailable(f"the SMS gateway refused the message (status {status or response.status_code})")
