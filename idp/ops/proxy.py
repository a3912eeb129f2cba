"""``X-Forwarded-*`` believed only from configured reverse proxies (``server.trusted_proxies``).

Werkzeug's ``ProxyFix`` trusts a fixed number of hops from anyone; here the headers count only when the peer
itself is a trusted proxy, and the client's address is the right-most ``X-Forwarded-For`` entry that is not
one: anything a client writes into the header before that is ignored, so nobody can choose the address that
rate limits and the audit log see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "192.0.2.1:443"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class TrustedProxies:
    """WSGI middleware applying the forwarded headers of trusted proxies to the environ."""

    def __init__(self, app: Callable[..., Any], networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def is_trusted(self, value: str | None) -> bool:
        address = _address(value or "")
        return address is not None and any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.networks and self.is_trusted(environ.get("REMOTE_ADDR")):
            environ["idp.trusted_proxy"] = True
            hops = [h.strip() for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
            client = None
            for hop in reversed(hops):
                if _address(hop) is None:
                    break  # garbage: stop believing anything further left
                client = hop
                if not self.is_trusted(hop):
                    break
            if client is not None:
                environ["REMOTE_ADDR"] = str(_address(client))
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[-1].strip()
            if host:
                environ["HTTP_HOST"] = host
        return self.app(environ, start_response)
