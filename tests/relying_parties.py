"""Running the example relying parties (clients/) against the provider, over real HTTP, in tests.

``relying_party`` starts one of them on a free port, registered at the provider like `make demo` does; the
provider itself is the ``live_server`` fixture. ``PersonBrowser`` is a requests session that follows
redirects across the provider and the sites, the way a person's browser would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from clients.rp_kit.high_assurance import generate_keys
from clients.rp_kit.settings import RpSettings

from .conftest import free_port
from .helpers import ClientInfo, UserInfo, create_test_client, find_form

#: What each example site is registered for (as `make demo` registers them).
SCOPES = {
    "carmaker": "openid profile phone national_id address",
    "device_registry": "openid profile phone national_id",
}
#: The sites `make demo` registers under the FAPI 2.0 profile, with a key pair of their own.
FAPI2_SITES = {"carmaker"}


@dataclass
class RunningSite:
    name: str
    app: Flask
    base_url: str
    client: ClientInfo
    settings: RpSettings


def start_site(
    idp_app: Flask, name: str, factory: Callable[[RpSettings], Flask], tmp_path: Any
) -> tuple[RunningSite, Any]:
    """Register ``name`` at the provider and serve it; returns the site and its server (to shut down)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    keys_file = tmp_path / f"{name}-keys.json"
    high_assurance = {}
    if name in FAPI2_SITES:
        jwks = generate_keys(keys_file)
        high_assurance = {"profile": "fapi2", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks}
    client = create_test_client(
        idp_app,
        name={"carmaker": "سامانه فروش خودرو", "device_registry": "سامانه همتا"}.get(name, name),
        redirect_uris=[base_url + "/auth/callback"],
        post_logout_redirect_uris=[base_url + "/auth/logged-out"],
        scope=SCOPES[name],
        backchannel_logout_uri=base_url + "/auth/backchannel-logout",
        **high_assurance,
    )
    settings = RpSettings(
        issuer=idp_app.extensions["idp"].issuer,
        client_id=client.client_id,
        client_secret=client.client_secret or "",
        base_url=base_url,
        database_url=f"sqlite:///{tmp_path / (name + '.sqlite3')}",
        secret_key=f"{name}-test-secret",
        keys_file=str(keys_file) if high_assurance else "",
    )
    app = factory(settings)
    app.config["TESTING"] = True
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return RunningSite(name, app, base_url, client, settings), server


@pytest.fixture
def relying_party(app: Flask, live_server: str, tmp_path: Any) -> Iterator[Callable[..., RunningSite]]:
    """``relying_party("carmaker", create_app)`` starts that site against the live provider."""
    servers = []

    def start(name: str, factory: Callable[[RpSettings], Flask]) -> RunningSite:
        site, server = start_site(app, name, factory, tmp_path)
        servers.append(server)
        return site

    yield start
    for server in servers:
        server.shutdown()


class PersonBrowser:
    """A person's browser: cookies per host, follows every redirect, fills the provider's forms."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.session = requests.Session()
        self.session.headers["Accept-Language"] = "fa"

    def get(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=15)

    def submit(self, page: requests.Response, data: dict[str, str], **find: str) -> requests.Response:
        form = find_form(page.text, **find)
        return self.session.post(urljoin(page.url, form.action), data={**form.fields, **data}, timeout=15)

    def log_in_at_provider(self, page: requests.Response, user: UserInfo) -> requests.Response:
        """On the provider's login page: national code and password, then allow on the consent page."""
        assert page.url.startswith(self.issuer), page.url
        page = self.submit(
            page, {"national_code": user.national_code, "password": user.password}, field_name="password"
        )
        return self.allow(page)

    def allow(self, page: requests.Response) -> requests.Response:
        if page.url.startswith(self.issuer) and 'name="decision"' in page.text:
            page = self.submit(page, {"decision": "allow"}, action_contains="/consent")
        return page


def page_errors(page: requests.Response) -> list[str]:
    """The field errors a page shows (class="error")."""
    return [re.sub(r"\s+", " ", e).strip() for e in re.findall(r'class="error"[^>]*>(.*?)</p>', page.text, re.S)]


def assert_site_icon(base_url: str) -> None:
    """The site's landing page links an SVG icon that is served, and /favicon.ico leads there (no 404 either way)."""
    page = requests.get(base_url + "/", timeout=15)
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text)
    assert link, page.text[:1000]
    icon = requests.get(urljoin(base_url, link.group(1)), timeout=15)
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")
    assert icon.text.lstrip().startswith("<svg")
    unprompted = requests.get(base_url + "/favicon.ico", timeout=15, allow_redirects=False)
    assert unprompted.status_code == 301 and unprompted.headers["Location"].endswith(link.group(1))
