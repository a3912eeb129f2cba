"""The running provider's shared parts, reachable from any request or CLI command of the app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .config import Config
from .keys import KeyRing
from .mail import MailSender
from .registry import IdentityRegistry
from .sms import SmsSender
from .store.kv import KeyValueStore


@dataclass(frozen=True)
class Provider:
    config: Config
    store: KeyValueStore
    keys: KeyRing
    registry: IdentityRegistry
    sms: SmsSender
    mail: MailSender

    @property
    def issuer(self) -> str:
        return self.config.server.issuer

    def url(self, path: str) -> str:
        """An absolute URL under the issuer (endpoints are advertised this way in discovery)."""
        return self.config.server.issuer + path


def current_provider() -> Provider:
    return current_app.extensions["idp"]
