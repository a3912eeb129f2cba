"""The running provider's shared parts, reachable from any request or CLI command of the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from .config import Config
from .identity_registry import IdentityRegistry
from .keys import KeyRing
from .mail import MailSender
from .oidc.client_keys import ClientKeys
from .rate_limits import RateLimits
from .sms import SmsSender
from .store.kv import KeyValueStore


@dataclass(frozen=True, eq=False)
class Provider:
    config: Config
    store: KeyValueStore
    keys: KeyRing
    registry: IdentityRegistry
    sms: SmsSender
    mail: MailSender
    rate_limits: RateLimits
    #: Clients read recently, by client_id: (monotonic expiry, detached Client). See store.clients.get_client.
    client_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    #: This process's copies of clients' published public keys (see idp.oidc.client_keys).
    client_keys: ClientKeys = field(default_factory=ClientKeys)

    @property
    def issuer(self) -> str:
        return self.config.server.issuer

    def url(self, path: str) -> str:
        """An absolute URL under the issuer (endpoints are advertised this way in discovery)."""
        return self.config.server.issuer + path


def current_provider() -> Provider:
    return current_app.extensions["idp"]
