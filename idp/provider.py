"""The running provider's shared parts, reachable from any request or CLI command of the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import current_app

from .config import Config
from .keys import KeyRing
from .mail import MailSender
from .registry import IdentityRegistry
from .sms import SmsSender
from .store.kv import KeyValueStore

if TYPE_CHECKING:
    from .oidc.client_keys import ClientKeys
    from .ops.address_limits import AddressLimits


@dataclass(frozen=True, eq=False)
class Provider:
    config: Config
    store: KeyValueStore
    keys: KeyRing
    registry: IdentityRegistry
    sms: SmsSender
    mail: MailSender
    #: Clients read recently, by client_id: (monotonic expiry, detached Client). See store.clients.get_client.
    client_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.config.server.issuer

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The discovery document; it depends only on the configuration, so it is built once."""
        from .oidc.endpoints.discovery import provider_metadata

        return provider_metadata(self)

    @cached_property
    def address_limits(self) -> AddressLimits:
        """This worker's per-address counts of the protocol endpoints' limits (see idp.ops.address_limits)."""
        from .ops.address_limits import AddressLimits

        return AddressLimits(self.store)

    @cached_property
    def client_keys(self) -> ClientKeys:
        """This process's copies of clients' published public keys (see idp.oidc.client_keys)."""
        from .oidc.client_keys import ClientKeys

        return ClientKeys()

    def url(self, path: str) -> str:
        """An absolute URL under the issuer (endpoints are advertised this way in discovery)."""
        return self.config.server.issuer + path


def current_provider() -> Provider:
    return current_app.extensions["idp"]
